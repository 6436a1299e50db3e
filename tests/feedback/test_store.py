"""The feedback table's adapter under moto: written once, all or nothing, read back by arrival."""

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from functions.errors import Conflict, RetryableError
from functions.feedback.dynamo import RECEIVED_INDEX, DynamoFeedbackStore
from functions.feedback.store import StoredLabel
from tests.conftest import failing_with

NOW = datetime(2026, 3, 4, 12, tzinfo=UTC)


@pytest.fixture
def store():
    with mock_aws():
        table = boto3.resource("dynamodb").create_table(
            TableName="feedback",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "received_at")],
            GlobalSecondaryIndexes=[{"IndexName": RECEIVED_INDEX, "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                                   {"AttributeName": "received_at", "KeyType": "RANGE"}]}],
            BillingMode="PAY_PER_REQUEST")
        yield DynamoFeedbackStore(table)


def label(request_id: str, value, index: int = 0, at: datetime = NOW, model: str = "churn") -> StoredLabel:
    return StoredLabel(model=model, request_id=request_id, index=index, label=value,
                       received_at=at.isoformat(timespec="microseconds"))


def test_labels_keep_their_exact_type_and_are_read_by_arrival(store):
    assert store.put_labels([label("r-1", True), label("r-1", 1, index=1), label("r-2", "1"),
                             label("r-3", 2.5, at=NOW - timedelta(days=2)), label("r-1", "x", model="other")]) == [
        "stored"] * 5
    since = {(x.request_id, x.index): x.label for x in store.labels_since("churn", NOW - timedelta(hours=1))}
    assert since == {("r-1", 0): True, ("r-1", 1): 1, ("r-2", 0): "1"}
    assert type(since[("r-1", 0)]) is bool and type(since[("r-1", 1)]) is int


def test_the_same_label_again_is_unchanged_another_one_a_conflict_and_nothing_is_half_written(store):
    store.put_labels([label("r-1", "yes")])
    assert store.put_labels([label("r-1", "yes"), label("r-2", "no")]) == ["unchanged", "stored"]
    with pytest.raises(Conflict, match="'r-1' row 0"):
        store.put_labels([label("r-3", "no"), label("r-1", "no")])
    assert {x.request_id for x in store.labels_since("churn", NOW - timedelta(hours=1))} == {"r-1", "r-2"}
    assert store.put_label(label("r-1", "yes")) == "unchanged"
    with pytest.raises(Conflict):
        store.put_label(label("r-1", "no"))
    assert store.put_label(label("r-4", "no")) == "stored"


def test_a_condition_lost_to_a_concurrent_writer_is_a_conflict(store, monkeypatch):
    # Another request stores r-1 after this one read the rows (it saw none of them) and before its transaction.
    monkeypatch.setattr(store, "_existing", lambda labels: {})
    store.table.put_item(Item={"pk": "MODEL#churn", "sk": "LABEL#r-1#0", "model": "churn", "request_id": "r-1",
                               "row": 0, "label": '"no"', "received_at": "2026"})
    with pytest.raises(Conflict, match="meanwhile"):
        store.put_labels([label("r-2", "yes"), label("r-1", "yes")])
    assert [x.request_id for x in store.labels_since("churn", datetime(2000, 1, 1, tzinfo=UTC))] == ["r-1"]


def test_throttling_is_retryable(store, monkeypatch):
    monkeypatch.setattr(store.table.meta.client, "batch_get_item",
                        failing_with("ProvisionedThroughputExceededException", "BatchGetItem"))
    with pytest.raises(RetryableError):
        store.put_labels([label("r-1", "yes")])
