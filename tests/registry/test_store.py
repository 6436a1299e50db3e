"""The registry table under moto: specs, runs, versions, aliases with audit, injected faults."""

import math
from decimal import Decimal

import pytest

from functions.errors import Conflict, MlopsError, NotFound, RetryableError, UnknownModel
from functions.registry.store import RegistryStore, registry_store
from tests.conftest import client_error


@pytest.fixture
def store(pipeline_aws):
    return RegistryStore(pipeline_aws.tables["registry"])


def test_specs_round_trip_and_update_in_place(store, churn_spec):
    store.put_spec(churn_spec)
    first = store.table.get_item(Key={"pk": "MODEL#churn", "sk": "SPEC"})["Item"]
    changed = churn_spec.model_copy(update={"metric": "f1"})
    store.put_spec(changed)
    item = store.table.get_item(Key={"pk": "MODEL#churn", "sk": "SPEC"})["Item"]
    assert store.get_spec("churn") == changed
    assert item["created_at"] == first["created_at"] and item["updated_at"] >= first["updated_at"]
    store.put_spec(churn_spec.model_copy(update={"name": "another"}))
    assert [s.name for s in store.list_specs()] == ["another", "churn"]


def test_an_unknown_model_says_how_to_create_it(store):
    with pytest.raises(UnknownModel, match=r"no model spec named 'x' is registered; create it with `mlops models create x"):
        store.get_spec("x")


def test_a_corrupt_stored_spec_is_a_clear_error(store):
    store.table.put_item(Item={"pk": "MODEL#broken", "sk": "SPEC", "spec": "{not json"})
    with pytest.raises(MlopsError, match="stored spec of model 'broken' is unreadable"):
        store.get_spec("broken")


def test_runs_are_recorded_once_and_listed_newest_first(store):
    assert store.start_run("m", "r1", bucket="b", key="k1", version_id="v", code_version="c") is True
    assert store.start_run("m", "r1", bucket="b", key="other", version_id="v", code_version="c") is False
    store.start_run("m", "r2", bucket="b", key="k2", version_id=None, code_version="c")
    store.update_run("m", "r1", status="SUCCEEDED", metrics={"roc_auc": 0.75, "odd": float("nan")}, model_version=3)
    run = store.get_run("m", "r1")
    assert run["key"] == "k1" and run["status"] == "SUCCEEDED"
    assert run["metrics"] == {"roc_auc": 0.75, "odd": None} and run["model_version"] == 3
    assert [r["run_id"] for r in store.list_runs("m")] == ["r2", "r1"]
    assert [r["run_id"] for r in store.list_runs("m", limit=1)] == ["r2"]
    with pytest.raises(NotFound):
        store.get_run("m", "r9")


def test_versions_are_numbered_and_written_once(store):
    assert [store.next_version("m") for _ in range(3)] == [1, 2, 3]
    store.put_version("m", 1, {"run_id": "r1", "metrics": {"rmse": 1.5}, "signature": [{"name": "x", "type": "numeric"}],
                               "artifacts": {"skops_key": "k", "skops_trusted_types": ["numpy.dtype"]},
                               "packages": {"numpy": "2"}, "score": 0.1})
    with pytest.raises(Conflict):
        store.put_version("m", 1, {"run_id": "r2"})
    version = store.get_version("m", 1)
    assert version["version"] == 1 and version["status"] == "registered" and version["metrics"] == {"rmse": 1.5}
    assert version["signature"] == [{"name": "x", "type": "numeric"}] and version["artifacts"]["skops_key"] == "k"
    assert not any(isinstance(v, Decimal) for v in version.values())
    assert isinstance(version["score"], float) and math.isclose(version["score"], 0.1)
    store.put_version("m", 10, {"run_id": "r10"})
    assert [v["version"] for v in store.list_versions("m")] == [1, 10]  # zero-padded sort keys sort numerically
    with pytest.raises(NotFound):
        store.get_version("m", 7)


def test_a_run_gets_one_version_number_however_often_it_asks(store):
    first = store.version_for_run("m", "run-a")
    assert store.version_for_run("m", "run-a") == first
    assert store.version_for_run("m", "run-b") == first + 1
    assert store.list_versions("m") == [], "reserving a number registers nothing"


def test_aliases_move_conditionally_and_leave_an_audit_trail(store):
    assert store.get_alias("m") is None
    store.set_alias("m", "champion", 1, expected=None, reason="first")
    with pytest.raises(Conflict):
        store.set_alias("m", "champion", 2, expected=None, reason="lost race")
    with pytest.raises(Conflict):
        store.set_alias("m", "champion", 2, expected=5, reason="stale view")
    store.set_alias("m", "champion", 2, expected=1, reason="better")
    store.set_alias("m", "challenger", 3, expected=None, reason="not better")
    assert store.get_alias("m") == 2 and store.get_alias("m", "challenger") == 3
    trail = store.audit_trail("m")
    assert [(a["alias"], a["version"], a["from_version"], a["reason"]) for a in trail] == [
        ("champion", 1, None, "first"), ("champion", 2, 1, "better"), ("challenger", 3, None, "not better")]
    with pytest.raises(ValueError):
        store.get_alias("m", "latest")


def test_a_busy_transaction_is_retryable(store, monkeypatch):
    def cancelled(**kwargs):
        raise client_error("TransactionCanceledException", "TransactWriteItems",
                           CancellationReasons=[{"Code": "None"}, {"Code": "TransactionConflict"}])

    monkeypatch.setattr(store.table.meta.client, "transact_write_items", cancelled)
    with pytest.raises(RetryableError):
        store.set_alias("m", "champion", 1, expected=None, reason="x")
    assert store.audit_trail("m") == []


@pytest.mark.parametrize("code, error", [("ProvisionedThroughputExceededException", RetryableError),
                                         ("AccessDeniedException", MlopsError),
                                         ("ConditionalCheckFailedException", Conflict)])
def test_storage_errors_become_domain_errors(store, monkeypatch, code, error, churn_spec):
    def failing(**kwargs):
        raise client_error(code, "UpdateItem")

    monkeypatch.setattr(store.table, "update_item", failing)
    with pytest.raises(error) as caught:
        store.put_spec(churn_spec)
    assert type(caught.value) is error  # AccessDenied is not retryable, nor a conflict
    assert "injected" not in caught.value.message  # never AWS's own text


def test_registry_store_uses_the_configured_table(pipeline_aws, monkeypatch):
    assert registry_store().table.name == "registry"
    monkeypatch.setenv("REGISTRY_TABLE", "other")
    assert registry_store().table.name == "other"  # settings are read per call, never at import
