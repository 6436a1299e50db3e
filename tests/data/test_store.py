"""The datasets table under moto: one item per content, lineage of runs, faults translated."""

import pytest

from functions.data.store import DatasetStore
from functions.errors import NotFound, RetryableError
from tests.conftest import failing_with


@pytest.fixture
def store(pipeline_aws):
    return DatasetStore(pipeline_aws.tables["datasets"])


def put(store, run_id, dataset_id="a" * 64):
    return store.put_dataset("churn", dataset_id, bucket="b", key="datasets/churn/f.csv", version_id="v1", rows=3,
                             columns={"x": "float64"}, profile={"rows": 3, "columns": {}}, run_id=run_id)


def test_the_same_content_twice_is_one_version_used_by_both_runs(store):
    assert put(store, "run-1") is True
    assert put(store, "run-2") is False
    (dataset,) = store.list_datasets("churn")
    assert dataset["runs"] == ["run-1", "run-2"]
    assert dataset["rows"] == 3 and isinstance(dataset["rows"], int)
    assert dataset["profile"] == {"rows": 3, "columns": {}}


def test_get_dataset(store):
    put(store, "run-1")
    assert store.get_dataset("churn", "a" * 64)["columns"] == {"x": "float64"}
    with pytest.raises(NotFound):
        store.get_dataset("churn", "b" * 64)


def test_throttling_is_retryable(store, monkeypatch):
    monkeypatch.setattr(store.table, "put_item", failing_with("ThrottlingException"))
    with pytest.raises(RetryableError):
        put(store, "run-1")
