"""The online store (DynamoDB under moto) and the offline Parquet frames, with injected faults."""

import time

import numpy as np
import pandas as pd
import pytest

from functions.errors import InvalidInput, RetryableError
from functions.features.store import OnlineStore, read_frame, write_frame
from tests.conftest import failing_with


@pytest.fixture
def online(pipeline_aws):
    return OnlineStore(pipeline_aws.tables["features"])


def frame(rows):
    return pd.DataFrame(rows, columns=["id", "x", "plan"])


def test_the_last_row_of_each_entity_is_the_latest(online):
    written = online.put_latest(
        "churn", frame([["a", 1.0, "basic"], ["b", 2.0, "premium"], ["a", 3.0, "standard"]]), "id", ["x", "plan"],
        dataset_id="d1", ttl_days=30,
    )
    assert written == 2
    assert online.get_latest("churn", "a") == {"x": 3.0, "plan": "standard"}
    assert online.get_latest("churn", "b") == {"x": 2.0, "plan": "premium"}
    assert online.get_latest("churn", "nobody") is None


def test_items_carry_a_ttl_and_their_dataset(online, pipeline_aws):
    online.put_latest("churn", frame([["a", np.nan, "basic"]]), "id", ["x", "plan"], dataset_id="d1", ttl_days=2)
    item = pipeline_aws.tables["features"].get_item(Key={"pk": "churn#a", "sk": "LATEST"})["Item"]
    assert item["dataset_id"] == "d1"
    assert abs(int(item["expires_at"]) - (time.time() + 2 * 86_400)) < 120
    assert online.get_latest("churn", "a") == {"x": None, "plan": "basic"}  # NaN is stored as null


def test_expired_items_are_not_served_before_dynamodb_deletes_them(online, pipeline_aws):
    pipeline_aws.tables["features"].put_item(Item={
        "pk": "churn#old", "sk": "LATEST", "entity": "old", "features": '{"x": 1.0}', "expires_at": int(time.time()) - 5,
    })
    assert online.get_latest("churn", "old") is None
    assert online.get_many("churn", ["old"]) == {}


def test_get_many_reads_more_than_one_batch(online):
    rows = [[f"c{i:03d}", float(i), "basic"] for i in range(150)]
    online.put_latest("churn", frame(rows), "id", ["x", "plan"], dataset_id="d1", ttl_days=1)
    found = online.get_many("churn", [f"c{i:03d}" for i in range(150)] + ["missing", None])
    assert len(found) == 150
    assert found["c149"] == {"x": 149.0, "plan": "basic"}


def test_entities_that_cannot_be_keys_are_skipped(online):
    written = online.put_latest(
        "churn", frame([[None, 1.0, "basic"], ["x" * 5000, 2.0, "basic"], [7.0, 3.0, "basic"]]), "id", ["x", "plan"],
        dataset_id="d1", ttl_days=1,
    )
    assert written == 1
    assert online.get_latest("churn", 7) == {"x": 3.0, "plan": "basic"}  # 7.0 and 7 are the same entity
    with pytest.raises(InvalidInput):
        online.get_latest("churn", None)


def test_unprocessed_keys_are_retried(online, monkeypatch):
    online.put_latest("churn", frame([["a", 1.0, "basic"]]), "id", ["x", "plan"], dataset_id="d1", ttl_days=1)
    client = online.table.meta.client
    real = client.batch_get_item
    calls = []

    def flaky(RequestItems):
        calls.append(RequestItems)
        if len(calls) == 1:  # DynamoDB returned nothing and asks to come back
            return {"Responses": {}, "UnprocessedKeys": RequestItems}
        return real(RequestItems=RequestItems)

    monkeypatch.setattr(client, "batch_get_item", flaky)
    monkeypatch.setattr("functions.features.store.time.sleep", lambda s: None)
    assert online.get_many("churn", ["a"]) == {"a": {"x": 1.0, "plan": "basic"}}
    assert len(calls) == 2


def test_keys_left_unprocessed_for_good_are_retryable(online, monkeypatch):
    client = online.table.meta.client
    monkeypatch.setattr(client, "batch_get_item", lambda RequestItems: {"Responses": {}, "UnprocessedKeys": RequestItems})
    monkeypatch.setattr("functions.features.store.time.sleep", lambda s: None)
    with pytest.raises(RetryableError):
        online.get_many("churn", ["a"])


def test_throttling_on_read_is_retryable(online, monkeypatch):
    monkeypatch.setattr(online.table, "get_item", failing_with("ProvisionedThroughputExceededException", "GetItem"))
    with pytest.raises(RetryableError):
        online.get_latest("churn", "a")


def test_offline_frames_round_trip_with_their_hash(pipeline_aws):
    data = pd.DataFrame({"x": [1.0, np.nan], "plan": ["a", "__missing__"], "y": [0, 1]})
    digest = write_frame(pipeline_aws.s3, pipeline_aws.bucket, "runs/m/r/features.parquet", data)
    head = pipeline_aws.s3.head_object(Bucket=pipeline_aws.bucket, Key="runs/m/r/features.parquet")
    assert head["Metadata"]["sha256"] == digest and len(digest) == 64
    back = read_frame(pipeline_aws.s3, pipeline_aws.bucket, "runs/m/r/features.parquet")
    assert back["y"].tolist() == [0, 1] and np.isnan(back["x"].iloc[1]) and back["plan"].tolist() == ["a", "__missing__"]
