"""Starting a run per upload (training.start) with the in-memory registry and executions."""

import pytest

from functions.errors import RetryableError
from functions.training.start import model_of_key, run_id_for, start_run
from tests.fakes import lost_reply, throttled

BUCKET = "mlops-test-data"


def start(stores, key: str = "datasets/churn/train.csv", version_id: str | None = "v-1") -> dict:
    return start_run(stores.registry, stores.executions, bucket=BUCKET, key=key, version_id=version_id,
                     code_version="test-1")


def test_an_upload_records_a_run_and_starts_its_execution_once(stores):
    run_id = run_id_for("churn", BUCKET, "datasets/churn/train.csv", "v-1")
    assert start(stores) == {"started": True, "recorded": True, "run_id": run_id, "model": "churn"}
    run = stores.registry.get_run("churn", run_id)
    assert run.status == "RUNNING" and run.version_id == "v-1" and run.code_version == "test-1"
    assert run.key == "datasets/churn/train.csv" and run.bucket == BUCKET
    assert stores.executions.started == {run_id: {"run_id": run_id, "model": "churn", "bucket": BUCKET,
                                                  "key": "datasets/churn/train.csv", "version_id": "v-1"}}
    duplicate = start(stores)  # EventBridge delivers at least once
    assert duplicate == {"started": False, "recorded": False, "run_id": run_id, "model": "churn"}
    assert len(stores.executions.started) == 1 and len(stores.registry.list_runs("churn")) == 1


def test_the_run_id_names_one_object_version():
    run_id = run_id_for("churn", BUCKET, "datasets/churn/a.csv", "v-1")
    assert run_id == run_id_for("churn", BUCKET, "datasets/churn/a.csv", "v-1")
    assert run_id.startswith("churn-") and len(run_id) == len("churn-") + 16
    assert len({run_id, run_id_for("churn", BUCKET, "datasets/churn/a.csv", "v-2"),
                run_id_for("churn", BUCKET, "datasets/churn/b.csv", "v-1"),
                run_id_for("churn", BUCKET, "datasets/churn/a.csv", None)}) == 4


@pytest.mark.parametrize("key", ["datasets/churn/", "datasets/file.csv", "other/churn/x.csv",
                                 "datasets/Not_A_Model/x.csv", "datasets/churn/sub/x.csv"])
def test_keys_outside_datasets_model_file_are_ignored(stores, key):
    assert model_of_key(key) is None
    result = start(stores, key)
    assert result["started"] is False and "not under datasets/<model>/<file>" in result["reason"]
    assert stores.executions.started == {} and stores.registry.runs == {}


def test_the_model_is_the_folder_under_datasets():
    assert model_of_key("datasets/churn-v2/train.parquet") == "churn-v2"


def test_a_throttled_run_record_starts_nothing_and_the_retry_starts_it(stores):
    stores.registry.faults.inject("start_run", throttled())
    with pytest.raises(RetryableError):
        start(stores)
    assert stores.executions.started == {} and stores.registry.runs == {}
    assert start(stores)["started"] is True and len(stores.executions.started) == 1


def test_a_throttled_execution_start_is_retried_and_starts_one_execution(stores):
    stores.executions.faults.inject("start", throttled())
    with pytest.raises(RetryableError):
        start(stores)
    retried = start(stores)  # the run is recorded already; its execution is not
    assert retried["recorded"] is False and retried["started"] is True
    assert len(stores.executions.started) == 1


def test_an_execution_start_whose_reply_was_lost_is_not_started_twice(stores):
    stores.executions.faults.inject("start", lost_reply(), after=True)
    with pytest.raises(RetryableError):
        start(stores)
    assert start(stores)["started"] is False and len(stores.executions.started) == 1
