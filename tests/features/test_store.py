"""The online store: one contract, run against the in-memory twin and the DynamoDB adapter (moto),
then what only the adapter does (items with a TTL, BatchGetItem batches and unprocessed keys)."""

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from functions.errors import InvalidInput, MlopsError, RetryableError
from functions.features.dynamo import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    WRITE_ATTEMPTS,
    WRITERS,
    DynamoOnlineStore,
    backoff_s,
)
from functions.features.store import MAX_ENTITY_BYTES, OnlineStore, entity_key, latest_rows
from tests.conftest import failing_with
from tests.fakes import MemoryOnlineStore, lost_reply, throttled
from tests.storage.moto_aws import fail_once, lose_reply_once, moto_table


@pytest.fixture(params=["memory", "dynamo"])
def online(request) -> Iterator[OnlineStore]:
    if request.param == "memory":
        yield MemoryOnlineStore()
    else:
        with moto_table("features") as table:
            yield DynamoOnlineStore(table)


def put(online: OnlineStore, rows: dict, model: str = "churn", ttl_days: int = 30) -> int:
    return online.put_latest(model, rows, dataset_id="d1", ttl_days=ttl_days)


def test_each_entity_keeps_its_latest_features(online):
    assert put(online, {"a": {"x": 1.0, "plan": "basic"}, "b": {"x": 2.0, "plan": "premium"}}) == 2
    assert put(online, {"a": {"x": 3.0, "plan": "standard"}}) == 1  # a later run overwrites
    assert online.get_latest("churn", "a") == {"x": 3.0, "plan": "standard"}
    assert online.get_latest("churn", "b") == {"x": 2.0, "plan": "premium"}
    assert online.get_latest("churn", "nobody") is None


def test_models_do_not_share_entities(online):
    put(online, {"a": {"x": 1.0}}, model="churn")
    put(online, {"a": {"x": 9.0}}, model="upsell")
    assert online.get_latest("churn", "a") == {"x": 1.0} and online.get_latest("upsell", "a") == {"x": 9.0}
    assert online.get_many("other", ["a"]) == {}


def test_nan_and_numpy_values_are_stored_as_json(online):
    put(online, {"a": {"x": np.nan, "n": np.int64(3), "f": np.float32(0.5), "plan": "basic"}})
    assert online.get_latest("churn", "a") == {"x": None, "n": 3, "f": 0.5, "plan": "basic"}


def test_an_entity_id_is_read_by_its_canonical_key(online):
    put(online, {"7": {"x": 3.0}})
    assert online.get_latest("churn", 7.0) == {"x": 3.0} and online.get_latest("churn", np.int64(7)) == {"x": 3.0}
    assert online.get_many("churn", [7, 7.0, "7"]) == {"7": {"x": 3.0}}
    for unusable in (None, float("nan"), "", "x" * (MAX_ENTITY_BYTES + 1)):
        with pytest.raises(InvalidInput, match="entity id is missing or too long"):
            online.get_latest("churn", unusable)


def test_get_many_reads_more_than_one_batch_and_skips_the_unknown(online):
    put(online, {f"c{i:03d}": {"x": float(i), "plan": "basic"} for i in range(150)}, ttl_days=1)
    found = online.get_many("churn", [f"c{i:03d}" for i in range(150)] + ["missing", None])
    assert len(found) == 150 and found["c149"] == {"x": 149.0, "plan": "basic"}
    assert online.get_many("churn", []) == {}


def test_expired_features_are_not_served(online):
    # DynamoDB deletes expired items lazily (within days): reads skip them before that.
    put(online, {"old": {"x": 1.0}}, ttl_days=-1)
    put(online, {"new": {"x": 2.0}}, ttl_days=1)
    assert online.get_latest("churn", "old") is None
    assert online.get_many("churn", ["old", "new"]) == {"new": {"x": 2.0}}


def test_a_throttled_read_is_retryable(online, monkeypatch):
    put(online, {"a": {"x": 1.0}})
    if isinstance(online, MemoryOnlineStore):
        online.faults.inject("get_latest", throttled())
        online.faults.inject("get_many", throttled())
    else:
        assert isinstance(online, DynamoOnlineStore)
        fail_once(monkeypatch, online.table, "get_item", "ProvisionedThroughputExceededException", "GetItem")
        fail_once(monkeypatch, online.table.meta.client, "batch_get_item", "ThrottlingException", "BatchGetItem")
    with pytest.raises(RetryableError):
        online.get_latest("churn", "a")
    with pytest.raises(RetryableError):
        online.get_many("churn", ["a"])
    assert online.get_many("churn", ["a"]) == {"a": {"x": 1.0}}


def test_a_write_whose_reply_is_lost_is_repeated_safely(online, monkeypatch):
    if isinstance(online, MemoryOnlineStore):
        online.faults.inject("put_latest", lost_reply(), after=True)
    else:
        assert isinstance(online, DynamoOnlineStore)
        lose_reply_once(monkeypatch, online.client, "batch_write_item")
    rows = {"a": {"x": 1.0}, "b": {"x": 2.0}}
    with pytest.raises(RetryableError):
        put(online, rows)
    assert put(online, rows) == 2  # overwrites: the same items, once each
    assert online.get_many("churn", ["a", "b"]) == rows


# --- choosing each entity's latest row (pure)


def test_the_last_row_of_each_entity_is_the_latest():
    frame = pd.DataFrame([["a", 1.0, "basic"], ["b", 2.0, "premium"], ["a", 3.0, "standard"]],
                         columns=["id", "x", "plan"])
    assert latest_rows(frame, "id", ["x", "plan"]) == {"a": {"x": 3.0, "plan": "standard"},
                                                       "b": {"x": 2.0, "plan": "premium"}}


def test_entities_that_cannot_be_keys_are_skipped():
    frame = pd.DataFrame({"id": [None, "x" * 5000, 7.0, np.nan], "x": [1.0, 2.0, 3.0, 4.0]})
    assert latest_rows(frame, "id", ["x"]) == {"7": {"x": 3.0}}  # 7.0 and 7 are the same entity


@pytest.mark.parametrize("value, key", [
    ("c-1", "c-1"), (7, "7"), (7.0, "7"), (7.5, "7.5"), (np.int64(7), "7"), (np.float64(7.0), "7"),
    (None, None), (float("nan"), None), (pd.NA, None), ("", None), ("é" * 600, None),
])
def test_entity_keys_are_canonical_strings(value, key):
    assert entity_key(value) == key


# --- what only the DynamoDB adapter does


@pytest.fixture
def dynamo_online() -> Iterator[DynamoOnlineStore]:
    with moto_table("features") as table:
        yield DynamoOnlineStore(table)


def test_items_carry_a_ttl_and_their_dataset(dynamo_online):
    dynamo_online.put_latest("churn", {"a": {"x": np.nan, "plan": "basic"}}, dataset_id="d1", ttl_days=2)
    item = dynamo_online.table.get_item(Key={"pk": "churn#a", "sk": "LATEST"})["Item"]
    assert item["dataset_id"] == "d1" and item["entity"] == "a" and item["model"] == "churn"
    assert item["features"] == '{"x":null,"plan":"basic"}'  # compact: DynamoDB counts every byte
    assert abs(int(item["expires_at"]) - (time.time() + 2 * 86_400)) < 120


def test_get_many_asks_in_batches_of_one_hundred(dynamo_online, monkeypatch):
    client = dynamo_online.table.meta.client
    batch_get_item = client.batch_get_item
    batches = []

    def spied(RequestItems):
        batches.append(len(RequestItems["features"]["Keys"]))
        return batch_get_item(RequestItems=RequestItems)

    monkeypatch.setattr(client, "batch_get_item", spied)
    assert dynamo_online.get_many("churn", [f"c{i:03d}" for i in range(150)] + ["c000"]) == {}
    assert batches == [100, 50]  # each key asked once


def test_unprocessed_keys_are_retried(dynamo_online, monkeypatch):
    dynamo_online.put_latest("churn", {"a": {"x": 1.0, "plan": "basic"}}, dataset_id="d1", ttl_days=1)
    client = dynamo_online.table.meta.client
    real = client.batch_get_item
    calls = []

    def flaky(RequestItems):
        calls.append(RequestItems)
        if len(calls) == 1:  # DynamoDB returned nothing and asks to come back
            return {"Responses": {}, "UnprocessedKeys": RequestItems}
        return real(RequestItems=RequestItems)

    monkeypatch.setattr(client, "batch_get_item", flaky)
    monkeypatch.setattr("functions.features.dynamo.time.sleep", lambda s: None)
    assert dynamo_online.get_many("churn", ["a"]) == {"a": {"x": 1.0, "plan": "basic"}}
    assert len(calls) == 2


def test_keys_left_unprocessed_for_good_are_retryable(dynamo_online, monkeypatch):
    client = dynamo_online.table.meta.client
    monkeypatch.setattr(client, "batch_get_item",
                        lambda RequestItems: {"Responses": {}, "UnprocessedKeys": RequestItems})
    monkeypatch.setattr("functions.features.dynamo.time.sleep", lambda s: None)
    with pytest.raises(RetryableError):
        dynamo_online.get_many("churn", ["a"])


def test_a_throttled_batch_write_is_retryable(dynamo_online, monkeypatch):
    monkeypatch.setattr(dynamo_online.client, "batch_write_item",
                        failing_with("ProvisionedThroughputExceededException", "BatchWriteItem"))
    with pytest.raises(RetryableError, match="1 of 1 entities were not written"):
        dynamo_online.put_latest("churn", {"a": {"x": 1.0}}, dataset_id="d1", ttl_days=1)


def test_a_refused_batch_write_is_not_retryable(dynamo_online, monkeypatch):
    monkeypatch.setattr(dynamo_online.client, "batch_write_item", failing_with("AccessDeniedException",
                                                                               "BatchWriteItem"))
    with pytest.raises(MlopsError, match="storage error") as raised:
        dynamo_online.put_latest("churn", {f"e{i}": {"x": 1.0} for i in range(60)}, dataset_id="d1", ttl_days=1)
    assert not isinstance(raised.value, RetryableError)


# --- the writer: batches of 25, several in flight, unprocessed items sent again


def rows_of(count: int) -> dict[str, dict]:
    return {f"e{i:05d}": {"x": float(i), "plan": "basic"} for i in range(count)}


def test_writes_go_in_batches_of_twenty_five_each_item_once(dynamo_online, monkeypatch):
    sent: list[list[str]] = []
    lock = threading.Lock()
    real = dynamo_online.client.batch_write_item

    def spied(RequestItems):
        with lock:
            sent.append([r["PutRequest"]["Item"]["entity"]["S"] for r in RequestItems["features"]])
        return real(RequestItems=RequestItems)

    monkeypatch.setattr(dynamo_online.client, "batch_write_item", spied)
    rows = rows_of(260)
    assert dynamo_online.put_latest("churn", rows, dataset_id="d1", ttl_days=1) == 260
    assert sorted(len(batch) for batch in sent) == [10] + [25] * 10
    assert sorted(entity for batch in sent for entity in batch) == sorted(rows)
    assert dynamo_online.get_many("churn", list(rows)) == rows


def test_batches_are_written_in_parallel():
    # Every writer must be inside a request at once for the barrier to open: sent one at a time, it times out.
    barrier = threading.Barrier(WRITERS, timeout=10)
    entered: list[int] = []

    class Client:
        def batch_write_item(self, RequestItems):
            entered.append(len(RequestItems["features"]))
            if len(entered) <= WRITERS:
                barrier.wait()
            return {"UnprocessedItems": {}}

    table = SimpleNamespace(name="features")
    store = DynamoOnlineStore(table, client=Client())  # type: ignore[arg-type]
    assert store.put_latest("churn", rows_of(25 * WRITERS * 3), dataset_id="d1", ttl_days=1) == 25 * WRITERS * 3
    assert len(entered) == WRITERS * 3 and not barrier.broken


def unprocessed_through_botocore(client, drop: int, times: int) -> list[int]:
    """The next `times` BatchWriteItem calls reach DynamoDB (moto) without their last `drop` items, which the
    answer names as UnprocessedItems, as DynamoDB does when it is busy. Returns how many each call left."""
    left: list[int] = []
    lock = threading.Lock()

    def hold_back(params, context, **kwargs):
        with lock:
            if len(left) >= times:
                return
            (table, requests), = params["RequestItems"].items()
            kept, held = requests[:max(0, len(requests) - drop)], requests[max(0, len(requests) - drop):]
            left.append(len(held))
        params["RequestItems"] = {table: kept} if kept else {}
        context["held"] = (table, held)
        if not kept:  # nothing to send: DynamoDB answers that none was processed
            context["empty"] = True

    def answer(parsed, context, **kwargs):
        if "held" in context:
            table, held = context["held"]
            parsed["UnprocessedItems"] = {table: held} if held else {}

    def skip_empty(params, context, **kwargs):
        if context.get("empty"):
            from botocore.awsrequest import AWSResponse

            return AWSResponse(params["url"], 200, {}, None), {"UnprocessedItems": {}}
        return None

    client.meta.events.register("provide-client-params.dynamodb.BatchWriteItem", hold_back)
    client.meta.events.register_first("before-call.dynamodb.BatchWriteItem", skip_empty)
    client.meta.events.register("after-call.dynamodb.BatchWriteItem", answer)
    return left


def test_unprocessed_items_are_sent_again_after_a_jittered_backoff(dynamo_online, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr("functions.features.dynamo.time.sleep", waits.append)
    left = unprocessed_through_botocore(dynamo_online.client, drop=10, times=6)
    rows = rows_of(100)

    assert dynamo_online.put_latest("churn", rows, dataset_id="d1", ttl_days=1) == 100

    assert left == [10] * 6 and len(waits) == 6
    assert all(0 <= wait <= BACKOFF_CAP_S for wait in waits)
    assert dynamo_online.get_many("churn", list(rows)) == rows  # every item written, the held-back ones too


def test_the_backoff_grows_exponentially_with_full_jitter(monkeypatch):
    monkeypatch.setattr("functions.features.dynamo.random.uniform", lambda low, high: high)
    assert [backoff_s(attempt) for attempt in range(8)] == [
        min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) for attempt in range(8)]
    monkeypatch.setattr("functions.features.dynamo.random.uniform", lambda low, high: low)
    assert backoff_s(5) == 0


def test_items_left_unprocessed_for_good_fail_retryably_naming_how_many(dynamo_online, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr("functions.features.dynamo.time.sleep", waits.append)
    unprocessed_through_botocore(dynamo_online.client, drop=25, times=1_000)  # nothing ever processed
    with pytest.raises(RetryableError, match="60 of 60 entities were not written"):
        dynamo_online.put_latest("churn", rows_of(60), dataset_id="d1", ttl_days=1)
    # A batch is sent WRITE_ATTEMPTS times at most, with a backoff between sends; once one gives up, the
    # others stop sending.
    assert WRITE_ATTEMPTS - 1 <= len(waits) <= 3 * (WRITE_ATTEMPTS - 1)
