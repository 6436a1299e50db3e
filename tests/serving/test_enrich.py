"""Online-store enrichment: an instance naming its entity (customer_id) gets the features it leaves out."""

import json

import pytest

from functions.errors import RetryableError
from functions.serving import handler
from tests.fakes import MemoryOnlineStore
from tests.serving.helpers import INSTANCE, PREDICT


@pytest.fixture
def online(api, churn_champion, monkeypatch) -> MemoryOnlineStore:
    store = MemoryOnlineStore()
    store.put_latest("churn", {"c-1": INSTANCE, "42": {**INSTANCE, "plan": "premium", "support_calls": None}},
                     dataset_id="d", ttl_days=1)
    store.faults.calls.clear()  # a test counts the handler's reads
    monkeypatch.setattr(handler, "online_store", lambda: store)
    return store


def predicted(api, instances: list) -> tuple[int, dict]:
    status, body, _ = api.call("POST", PREDICT, {"instances": instances})
    return status, body


def test_an_instance_naming_its_entity_is_scored_on_the_stored_features(api, online, capsys):
    status, body = predicted(api, [{"customer_id": "c-1"}, INSTANCE])
    assert status == 200, body
    assert body["predictions"][0] == body["predictions"][1]
    assert body["probabilities"][0] == body["probabilities"][1]
    assert online.faults.calls == ["get_many"]  # one read for the request
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"inputs"' in line]
    assert record["inputs"][0] == INSTANCE  # what the model scored is what is captured


def test_given_values_win_and_an_integer_id_is_its_canonical_key(api, online):
    status, body = predicted(api, [{"customer_id": 42, "support_calls": 2},
                                   {**INSTANCE, "plan": "premium"}])
    assert status == 200, body
    assert body["probabilities"][0] == body["probabilities"][1]


def test_an_instance_with_every_feature_reads_nothing(api, online):
    status, _ = predicted(api, [{**INSTANCE, "customer_id": "unknown"}])
    assert status == 200 and online.faults.calls == []


@pytest.mark.parametrize(("entity", "problem"), [
    ("nobody", "names entity 'nobody', which has no features in the online store"),
    (4.5, "must be an entity id"),
    (True, "must be an entity id"),
    ({"id": 1}, "must be an entity id"),
    ("", "must be an entity id"),
    ("x" * 2000, "must be an entity id"),
])
def test_unknown_or_malformed_entities_are_a_422_naming_the_instance(api, online, entity, problem):
    status, body = predicted(api, [INSTANCE, {"customer_id": entity}])
    assert status == 422, body
    assert body["error"]["code"] == "RequestInvalid" and "instance 1: field 'customer_id' " + problem in \
        body["error"]["message"]


def test_a_feature_the_store_holds_no_value_for_is_named_missing(api, online):
    status, body = predicted(api, [{"customer_id": 42}])
    assert status == 422 and "instance 0: field 'support_calls' is missing" in body["error"]["message"]


def test_a_busy_store_is_a_503_to_retry(api, online):
    online.faults.inject("get_many", RetryableError("reading the online features: storage is busy, try again"))
    status, body = predicted(api, [{"customer_id": "c-1"}])
    assert status == 503 and body["error"]["code"] == "RetryableError" and "try again" in body["error"]["message"]


def test_a_model_without_an_entity_id_keeps_refusing_unknown_fields(api, online, stores):
    spec = stores.registry.get_spec("churn")
    stores.registry.put_spec(spec.model_copy(update={"entity_id": None}))
    status, body = predicted(api, [{**INSTANCE, "customer_id": "c-1"}])
    assert status == 422 and "field 'customer_id' is not a feature of this model" in body["error"]["message"]
