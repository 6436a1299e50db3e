"""The datasets' store: one contract, run against the in-memory twin and the DynamoDB adapter (moto).

One record per content (model + sha256); recording it again only adds the run to its lineage.
"""

from collections.abc import Iterator

import pytest

from functions.data.dynamo import DynamoDatasetStore
from functions.data.store import DatasetStore
from functions.errors import NotFound, RetryableError
from functions.records import DatasetVersion
from tests.fakes import MemoryDatasetStore, lost_reply, throttled
from tests.storage.moto_aws import fail_once, lose_reply_once, moto_table

A, B = "a" * 64, "b" * 64
PROFILE = {"rows": 3, "columns": {"x": {"kind": "numeric", "missing": 0, "mean": 1.5, "std": None,
                                        "quantiles": [1, 1.5, 2]}}}


@pytest.fixture(params=["memory", "dynamo"])
def store(request) -> Iterator[DatasetStore]:
    if request.param == "memory":
        yield MemoryDatasetStore()
    else:
        with moto_table("datasets") as table:
            yield DynamoDatasetStore(table)


def dataset(run_id: str = "run-1", dataset_id: str = A, model: str = "churn", **fields) -> DatasetVersion:
    values = {"bucket": "b", "key": "datasets/churn/f.csv", "version_id": "v1", "rows": 3,
              "columns": {"x": "float64"}, "profile": PROFILE, "runs": {run_id}, **fields}
    return DatasetVersion(model=model, dataset_id=dataset_id, **values)


def test_a_dataset_reads_back_as_it_was_recorded(store):
    recorded = dataset(profile={**PROFILE, "gap": float("nan")}, version_id=None)
    assert store.put_dataset(recorded) is True
    back = store.get_dataset("churn", A)
    assert back == recorded.model_copy(update={"profile": {**PROFILE, "gap": None}})  # JSON has no NaN
    assert type(back.rows) is int and type(back.profile["rows"]) is int and back.version_id is None


def test_the_same_content_twice_is_one_version_used_by_both_runs(store):
    assert store.put_dataset(dataset("run-1")) is True
    assert store.put_dataset(dataset("run-2", key="datasets/churn/copy.csv", version_id="v9")) is False
    (known,) = store.list_datasets("churn")
    assert known.runs == {"run-1", "run-2"}
    assert known.key == "datasets/churn/f.csv" and known.version_id == "v1"  # the first upload's
    assert known.rows == 3 and known.profile == PROFILE


def test_recording_a_run_again_lists_it_once(store):
    store.put_dataset(dataset("run-1"))
    assert store.put_dataset(dataset("run-1")) is False
    assert store.get_dataset("churn", A).runs == {"run-1"}


def test_a_dataset_recorded_without_a_run_has_no_lineage_yet(store):
    assert store.put_dataset(dataset(runs=set())) is True
    assert store.put_dataset(dataset(runs=set())) is False
    assert store.get_dataset("churn", A).runs == set()


def test_an_unknown_dataset_is_not_found(store):
    store.put_dataset(dataset())
    with pytest.raises(NotFound, match="model 'churn' has no dataset bbbbbbbbbbbb"):
        store.get_dataset("churn", B)
    with pytest.raises(NotFound):
        store.get_dataset("other", A)


def test_datasets_are_listed_oldest_first_per_model(store):
    store.put_dataset(dataset("r2", B, created_at="2026-01-02T00:00:00+00:00"))
    store.put_dataset(dataset("r1", A, created_at="2026-01-01T00:00:00+00:00"))
    store.put_dataset(dataset("r3", "c" * 64, model="other"))
    assert [d.dataset_id for d in store.list_datasets("churn")] == [A, B]
    assert store.list_datasets("nobody") == []


def test_a_throttled_write_records_nothing_and_can_be_retried(store, monkeypatch):
    if isinstance(store, MemoryDatasetStore):
        store.faults.inject("put_dataset", throttled())
    else:
        assert isinstance(store, DynamoDatasetStore)
        fail_once(monkeypatch, store.table, "put_item", "ThrottlingException", "PutItem")
    with pytest.raises(RetryableError):
        store.put_dataset(dataset())
    assert store.list_datasets("churn") == []
    assert store.put_dataset(dataset()) is True


def test_a_write_whose_reply_is_lost_is_found_done_on_retry(store, monkeypatch):
    if isinstance(store, MemoryDatasetStore):
        store.faults.inject("put_dataset", lost_reply(), after=True)
    else:
        assert isinstance(store, DynamoDatasetStore)
        lose_reply_once(monkeypatch, store.table, "put_item")
    with pytest.raises(RetryableError):
        store.put_dataset(dataset("run-1"))
    assert store.put_dataset(dataset("run-1")) is False  # the retry finds it recorded
    (known,) = store.list_datasets("churn")
    assert known.runs == {"run-1"}


# --- what only the DynamoDB adapter does


@pytest.fixture
def dynamo_store() -> Iterator[DynamoDatasetStore]:
    with moto_table("datasets") as table:
        yield DynamoDatasetStore(table)


def test_one_item_per_model_and_content_with_the_profile_as_json(dynamo_store):
    dynamo_store.put_dataset(dataset())
    item = dynamo_store.table.get_item(Key={"pk": "MODEL#churn", "sk": f"DATASET#{A}"})["Item"]
    assert isinstance(item["profile"], str) and item["runs"] == {"run-1"}


def test_a_throttled_lineage_update_is_retryable(dynamo_store, monkeypatch):
    dynamo_store.put_dataset(dataset("run-1"))
    fail_once(monkeypatch, dynamo_store.table, "update_item", "ProvisionedThroughputExceededException", "UpdateItem")
    with pytest.raises(RetryableError):
        dynamo_store.put_dataset(dataset("run-2"))
    assert dynamo_store.put_dataset(dataset("run-2")) is False
    assert dynamo_store.get_dataset("churn", A).runs == {"run-1", "run-2"}


def test_a_run_identity_is_claimed_once_and_taken_over_only_from_its_holder(store):
    assert store.identified_run("churn", "k1") is None
    assert store.claim_identity("churn", "k1", "run-1", expected=None) is True
    assert store.claim_identity("churn", "k1", "run-2", expected=None) is False  # run-1 claimed it first
    assert store.claim_identity("churn", "k1", "run-1", expected=None) is True  # run-1's retried claim
    assert store.identified_run("churn", "k1") == "run-1"
    assert store.claim_identity("churn", "k1", "run-3", expected="run-9") is False
    assert store.claim_identity("churn", "k1", "run-3", expected="run-1") is True  # run-1 failed: run-3 trains
    assert store.identified_run("churn", "k1") == "run-3" and store.identified_run("other", "k1") is None
    store.put_dataset(dataset("run-1"))
    assert [d.dataset_id for d in store.list_datasets("churn")] == [A]  # identities are not dataset versions
