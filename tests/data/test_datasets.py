"""Registering an upload as a dataset version (in-memory stores), and a profile that fits its item."""

import json

import pandas as pd
import pytest

from functions.data import datasets
from functions.data.datasets import register_dataset
from functions.data.profile import profile_frame
from functions.errors import DatasetInvalid, RetryableError, UnknownModel
from functions.records import Run
from functions.storage.objects import sha256
from tests.fakes import lost_reply, throttled


def start(stores, model: str, name: str, data: bytes, run_id: str) -> dict:
    """Upload `data` and record its run, as the upload trigger does; the arguments of register_dataset."""
    key = f"datasets/{model}/{name}"
    version_id = stores.objects.put(key, data)
    stores.registry.start_run(Run(model=model, run_id=run_id, bucket=stores.objects.bucket, key=key,
                                  version_id=version_id, code_version="test-1"))
    return {"model": model, "key": key, "version_id": version_id, "run_id": run_id}


def register(stores, upload: dict):
    return register_dataset(stores.objects, stores.datasets, stores.registry, code_version="test-1", **upload)


def test_an_unknown_model_fails_with_the_way_to_create_it(stores, churn_rows):
    upload = start(stores, "nobody", "data.csv", churn_rows.to_csv(index=False).encode(), "r1")
    with pytest.raises(UnknownModel) as caught:
        register(stores, upload)
    assert caught.value.message == (
        "no model spec named 'nobody' is registered; create it with `mlops models create nobody --spec FILE`"
    )
    assert stores.datasets.datasets == {} and stores.registry.get_run("nobody", "r1").dataset_id is None


def test_registers_exactly_the_uploaded_version_once_per_content(stores, churn_spec, churn_rows):
    stores.registry.put_spec(churn_spec)
    first = churn_rows.to_csv(index=False).encode()
    upload = start(stores, "churn", "train.csv", first, "run-1")
    stores.objects.put("datasets/churn/train.csv", b"overwritten,later\n1,2\n")  # a newer version of the key

    result = register(stores, upload)

    assert result.dataset_id == sha256(first) and result.rows == len(churn_rows) and result.bytes == len(first)
    assert result.columns["plan"] in {"str", "object"} and result.spec == churn_spec
    assert result.readable is True and result.new is True and result.version_id == upload["version_id"]
    again = register(stores, start(stores, "churn", "copy.csv", first, "run-2"))
    assert again.dataset_id == result.dataset_id and again.new is False
    (dataset,) = stores.datasets.list_datasets("churn")
    assert dataset.runs == {"run-1", "run-2"} and dataset.version_id == upload["version_id"]
    assert dataset.bucket == stores.objects.bucket and dataset.key == "datasets/churn/train.csv"
    assert len(dataset.profile["columns"]["tenure_months"]["quantiles"]) == 101
    assert stores.registry.get_run("churn", "run-1").dataset_id == result.dataset_id


def test_an_unreadable_upload_is_not_a_dataset_version(stores, churn_spec):
    stores.registry.put_spec(churn_spec)
    result = register(stores, start(stores, "churn", "bad.csv", b'a,"b\n', "r1"))
    assert result.readable is False and result.rows == 0 and result.new is None
    assert stores.datasets.list_datasets("churn") == []
    assert stores.registry.get_run("churn", "r1").dataset_id == sha256(b'a,"b\n')  # the run says what it got


def test_a_retry_after_a_lost_reply_records_the_version_once(stores, churn_spec, churn_rows):
    stores.registry.put_spec(churn_spec)
    upload = start(stores, "churn", "train.csv", churn_rows.to_csv(index=False).encode(), "run-1")
    stores.datasets.faults.inject("put_dataset", lost_reply(), after=True)
    with pytest.raises(RetryableError):
        register(stores, upload)
    retried = register(stores, upload)  # the state machine retries the step
    (dataset,) = stores.datasets.list_datasets("churn")
    assert dataset.dataset_id == retried.dataset_id and dataset.runs == {"run-1"}
    assert retried.new is False


def test_a_throttled_read_is_retryable_and_records_nothing(stores, churn_spec, churn_rows):
    stores.registry.put_spec(churn_spec)
    upload = start(stores, "churn", "train.csv", churn_rows.to_csv(index=False).encode(), "run-1")
    stores.objects.faults.inject("get_bytes", throttled())
    with pytest.raises(RetryableError):
        register(stores, upload)
    assert stores.datasets.list_datasets("churn") == []
    assert register(stores, upload).new is True


def test_a_wide_table_gets_a_coarser_profile_or_a_clear_error(monkeypatch):
    frame = pd.DataFrame({f"c{i}": range(50) for i in range(20)})
    full = datasets.profile_for_storage(frame)
    assert len(full["columns"]["c0"]["quantiles"]) == 101
    monkeypatch.setattr(datasets, "MAX_PROFILE_BYTES", 12_000)
    assert len(datasets.profile_for_storage(frame)["columns"]["c0"]["quantiles"]) == 21
    monkeypatch.setattr(datasets, "MAX_PROFILE_BYTES", 100)
    with pytest.raises(DatasetInvalid, match="too many columns"):
        datasets.profile_for_storage(frame)


def test_the_column_map_counts_against_the_item_budget(monkeypatch):
    # Long column names: the profile alone fits the budget, profile and column map do not
    # (DynamoDB would refuse the 400 KB item with an opaque storage error).
    frame = pd.DataFrame({f"n{i:04d}" + "x" * 995: ["a"] for i in range(30)})
    monkeypatch.setattr(datasets, "MAX_PROFILE_BYTES", len(json.dumps(profile_frame(frame))) + 100)
    with pytest.raises(DatasetInvalid, match="too many columns"):
        datasets.profile_for_storage(frame)


# --- a run's identity: the same content, spec and code version are not trained twice ------------


def succeed(stores, run_id: str, version: int = 1) -> None:
    stores.registry.update_run("churn", run_id, status="SUCCEEDED", model_version=version)


def test_an_identical_run_after_one_that_succeeded_names_it_and_trains_nothing(stores, churn_spec, churn_rows):
    stores.registry.put_spec(churn_spec)
    data = churn_rows.to_csv(index=False).encode()
    first = register(stores, start(stores, "churn", "train.csv", data, "run-1"))
    assert first.duplicate_of is None and first.run_key and first.retrain is False
    assert stores.registry.get_run("churn", "run-1").run_key == first.run_key
    while_running = register(stores, start(stores, "churn", "again.csv", data, "run-2"))
    assert while_running.duplicate_of is None  # run-1 may still fail: both train
    succeed(stores, "run-1", version=3)

    same = register(stores, start(stores, "churn", "copy.csv", data, "run-3"))  # another key, same bytes

    assert same.run_key == first.run_key and same.duplicate_of == "run-1" and same.duplicate_version == 3
    assert register(stores, start(stores, "churn", "train.csv", data, "run-4")).duplicate_of == "run-1"


def test_another_spec_another_code_version_or_a_retrain_trains_again(stores, churn_spec, churn_rows):
    stores.registry.put_spec(churn_spec)
    data = churn_rows.to_csv(index=False).encode()
    first = register(stores, start(stores, "churn", "train.csv", data, "run-1"))
    succeed(stores, "run-1")
    described = churn_spec.model_copy(update={"description": "the same model, better described"})
    stores.registry.put_spec(described)
    assert register(stores, start(stores, "churn", "b.csv", data, "run-2")).duplicate_of == "run-1"
    stores.registry.put_spec(churn_spec.model_copy(update={"holdout_fraction": 0.3}))
    other_spec = register(stores, start(stores, "churn", "c.csv", data, "run-3"))
    assert other_spec.duplicate_of is None and other_spec.run_key != first.run_key
    stores.registry.put_spec(churn_spec)
    upload = start(stores, "churn", "d.csv", data, "run-4")
    other_code = register_dataset(stores.objects, stores.datasets, stores.registry, code_version="test-2", **upload)
    assert other_code.duplicate_of is None and other_code.run_key != first.run_key
    key = "datasets/churn/e.csv"
    version_id = stores.objects.put(key, data, {"retrain": "true"})  # `mlops data push --retrain`
    stores.registry.start_run(Run(model="churn", run_id="run-5", bucket=stores.objects.bucket, key=key,
                                  version_id=version_id, code_version="test-1"))
    retrain = register(stores, {"model": "churn", "key": key, "version_id": version_id, "run_id": "run-5"})
    assert retrain.retrain is True and retrain.duplicate_of is None and retrain.run_key == first.run_key
    assert stores.registry.get_run("churn", "run-5").retrain is True


def test_a_failed_run_gives_its_identity_to_the_next_identical_run(stores, churn_spec, churn_rows):
    stores.registry.put_spec(churn_spec)
    data = churn_rows.to_csv(index=False).encode()
    register(stores, start(stores, "churn", "train.csv", data, "run-1"))
    stores.registry.update_run("churn", "run-1", status="FAILED")
    assert register(stores, start(stores, "churn", "again.csv", data, "run-2")).duplicate_of is None
    succeed(stores, "run-2")
    assert register(stores, start(stores, "churn", "third.csv", data, "run-3")).duplicate_of == "run-2"
    retried = register(stores, {"model": "churn", "key": "datasets/churn/again.csv", "run_id": "run-2",
                                "version_id": stores.objects.versions["datasets/churn/again.csv"][0][0]})
    assert retried.duplicate_of is None  # a retried step of the run that holds the identity


# --- the upload parsed once: the run's typed Parquet copy


def test_the_parsed_upload_is_kept_as_the_runs_typed_parquet_copy(stores, churn_spec, churn_rows):
    from functions.shared.tabular import read_frame

    stores.registry.put_spec(churn_spec)
    rows = churn_rows.assign(plan=churn_rows["plan"].where(churn_rows.index % 7 > 0))  # text with gaps
    result = register(stores, start(stores, "churn", "train.csv", rows.to_csv(index=False).encode(), "run-1"))

    assert result.frame_key == "runs/churn/run-1/dataset.parquet" and result.unreadable is None
    assert result.frame_sha256 == sha256(stores.objects.get_bytes(result.frame_key))
    frame = read_frame(stores.objects, result.frame_key, result.frame_sha256)
    parsed = pd.read_csv(pd.io.common.BytesIO(rows.to_csv(index=False).encode()))
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == result.columns
    pd.testing.assert_frame_equal(frame, parsed)  # the same types and values as the parse


def test_an_unreadable_upload_keeps_its_reason_for_validation_and_no_copy(stores, churn_spec):
    stores.registry.put_spec(churn_spec)
    result = register(stores, start(stores, "churn", "bad.csv", b'a,b\n1,"2\n', "run-1"))
    assert result.readable is False and result.frame_key is None and stores.objects.keys("runs/") == []
    assert result.unreadable is not None and "not a readable CSV file" in result.unreadable


def test_a_run_identical_to_one_that_succeeded_keeps_no_copy(stores, churn_spec, churn_rows):
    stores.registry.put_spec(churn_spec)
    data = churn_rows.to_csv(index=False).encode()
    first = register(stores, start(stores, "churn", "a.csv", data, "run-1"))
    stores.registry.update_run("churn", "run-1", status="SUCCEEDED", model_version=1)
    again = register(stores, start(stores, "churn", "b.csv", data, "run-2"))
    assert again.duplicate_of == "run-1" and again.frame_key is None
    assert stores.objects.keys("runs/") == [first.frame_key]


def test_a_column_parquet_cannot_hold_is_named(churn_rows):
    from functions.shared.tabular import frame_bytes

    mixed = churn_rows.assign(plan=[1 if i % 2 else "basic" for i in range(len(churn_rows))])
    with pytest.raises(DatasetInvalid, match="the dataset 'x.csv' has column 'plan' whose values mix types"):
        frame_bytes(mixed, "x.csv")


def test_a_whole_run_reads_the_upload_once_and_its_copy_once_per_step(stores, churn_champion, churn_rows):
    from tests.training.helpers import run_in_memory

    reads: list[str] = []
    get_bytes = stores.objects.get_bytes

    def traced(key, **kwargs):
        reads.append(key)
        return get_bytes(key, **kwargs)

    stores.objects.get_bytes = traced  # type: ignore[method-assign]
    state, error = run_in_memory(stores, "churn", "fresh.csv", churn_rows.to_csv(index=False).encode())

    assert error is None and state.run is not None and state.run.status == "SUCCEEDED"
    assert reads.count("datasets/churn/fresh.csv") == 1  # RegisterDataset: parsed there, once
    dataset = state.dataset
    assert dataset is not None and dataset.frame_key is not None
    assert reads.count(dataset.frame_key) == 2  # ValidateDataset and BuildFeatures read the typed copy
    features = state.features
    assert features is not None and reads.count(features.features_key) == 2  # Train and PublishFeatures
