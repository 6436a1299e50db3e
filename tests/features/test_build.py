"""Building a run's features with in-memory stores: the model input offline (from the run's parsed upload),
then, once the model is registered, each entity's latest row online."""

import pandas as pd
import pytest

from functions.errors import DatasetInvalid, IntegrityError, NotFound, RetryableError
from functions.features import build as features_build
from functions.features.build import build_run_features, model_frame, publish_run_features
from functions.pipeline.state import DatasetResult, FeaturesResult
from functions.shared.tabular import frame_bytes
from functions.storage.objects import sha256
from tests.fakes import lost_reply, throttled


def parsed(stores, spec, rows: pd.DataFrame, run_id: str = "run-1") -> DatasetResult:
    """The run's upload as RegisterDataset leaves it: its Parquet copy, and the result naming it."""
    key = f"datasets/{spec.name}/train.csv"
    frame_key = f"runs/{spec.name}/{run_id}/dataset.parquet"
    digest = stores.objects.put_bytes(frame_key, frame_bytes(rows, "train.csv"))
    return DatasetResult(dataset_id="d" * 64, key=key, version_id="v1", bytes=1, spec=spec, rows=len(rows),
                         readable=True, frame_key=frame_key, frame_sha256=digest)


def build(stores, spec, rows: pd.DataFrame, run_id: str = "run-1") -> FeaturesResult:
    return build_run_features(stores.objects, spec=spec, run_id=run_id, dataset=parsed(stores, spec, rows, run_id))


def publish(stores, spec, features: FeaturesResult):
    return publish_run_features(stores.objects, stores.online, spec=spec, features=features, dataset_id="d" * 64,
                                ttl_days=30)


def test_writes_the_model_input_then_publishes_each_entitys_latest_row(stores, churn_spec, churn_rows):
    rows = pd.concat([churn_rows, churn_rows.tail(1).assign(tenure_months=99.0)])  # a newer row of one customer

    result = build(stores, churn_spec, rows)

    assert result.features_key == "runs/churn/run-1/features.parquet"
    assert result.rows == len(rows) and result.entities == len(churn_rows)
    assert result.features_sha256 == sha256(stores.objects.get_bytes(result.features_key))
    frame = stores.objects.get_frame(result.features_key)
    assert list(frame.columns) == churn_spec.feature_names + ["churned", "customer_id"]
    assert stores.online.rows == {}  # nothing online before the model is registered

    assert publish(stores, churn_spec, result).entities == len(churn_rows)
    latest = stores.online.get_latest("churn", churn_rows["customer_id"].iloc[-1])
    assert latest is not None and latest["tenure_months"] == 99.0 and set(latest) == set(churn_spec.feature_names)


def test_features_are_built_from_the_parsed_copy_never_the_upload(stores, churn_spec, churn_rows):
    build(stores, churn_spec, churn_rows)
    assert [op for op in stores.objects.faults.calls if op == "get_bytes"] == ["get_bytes"]  # the Parquet copy
    assert not stores.objects.keys("datasets/")


def test_a_tampered_parsed_copy_is_refused(stores, churn_spec, churn_rows):
    dataset = parsed(stores, churn_spec, churn_rows)
    stores.objects.put(dataset.frame_key or "", frame_bytes(churn_rows.head(30), "train.csv"))
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        build_run_features(stores.objects, spec=churn_spec, run_id="run-1", dataset=dataset)


def test_a_state_from_before_the_parsed_copy_reads_the_upload(stores, churn_spec, churn_rows):
    key = "datasets/churn/train.csv"
    version_id = stores.objects.put(key, churn_rows.to_csv(index=False).encode())
    dataset = DatasetResult(dataset_id="d" * 64, key=key, version_id=version_id, bytes=1, spec=churn_spec,
                            readable=True)
    result = build_run_features(stores.objects, spec=churn_spec, run_id="run-1", dataset=dataset)
    assert result.rows == len(churn_rows)


def test_without_an_entity_id_nothing_goes_online(stores, churn_spec, churn_rows):
    spec = churn_spec.model_copy(update={"entity_id": None})
    result = build(stores, spec, churn_rows)
    assert result.entities == 0 and publish(stores, spec, result).entities == 0 and stores.online.rows == {}
    assert "customer_id" not in stores.objects.get_frame(result.features_key).columns


def test_the_model_frame_holds_features_target_and_entity_keys(churn_spec):
    rows = pd.DataFrame({"customer_id": [7.0, 8.0], "tenure_months": ["3", None], "monthly_charges": [1, 2],
                         "support_calls": [0, 1], "plan": [2.0, None], "churned": [0, 1], "extra": ["x", "y"]},
                        index=[10, 20])
    frame = model_frame(rows, churn_spec)
    assert list(frame.columns) == churn_spec.feature_names + ["churned", "customer_id"]
    assert frame["customer_id"].tolist() == ["7", "8"] and list(frame.index) == [0, 1]
    assert frame["tenure_months"].tolist()[0] == 3.0 and frame["plan"].tolist() == ["2", "__missing__"]


def test_a_retry_after_a_lost_reply_writes_the_same_features(stores, churn_spec, churn_rows):
    dataset = parsed(stores, churn_spec, churn_rows)
    stores.objects.faults.inject("put_bytes", lost_reply(), after=True)
    with pytest.raises(RetryableError):
        build_run_features(stores.objects, spec=churn_spec, run_id="run-1", dataset=dataset)
    retried = build_run_features(stores.objects, spec=churn_spec, run_id="run-1", dataset=dataset)
    assert stores.objects.keys("runs/") == [dataset.frame_key, retried.features_key]
    assert retried.features_sha256 == sha256(stores.objects.get_bytes(retried.features_key))


def test_a_throttled_online_write_is_retryable_and_writing_again_is_safe(stores, churn_spec, churn_rows):
    features = build(stores, churn_spec, churn_rows)
    stores.online.faults.inject("put_latest", throttled())
    with pytest.raises(RetryableError):
        publish(stores, churn_spec, features)
    assert publish(stores, churn_spec, features).entities == len(churn_rows) == len(stores.online.rows)


def test_entities_are_published_in_chunks_each_latest_once(stores, churn_spec, churn_rows, monkeypatch):
    monkeypatch.setattr(features_build, "PUBLISH_CHUNK", 64)
    rows = pd.concat([churn_rows, churn_rows.head(3).assign(tenure_months=77.0)])  # newer rows, at the end
    features = build(stores, churn_spec, rows)
    calls = []
    put_latest = stores.online.put_latest

    def spied(model, chunk, **kwargs):
        calls.append(len(chunk))
        return put_latest(model, chunk, **kwargs)

    monkeypatch.setattr(stores.online, "put_latest", spied)
    assert publish(stores, churn_spec, features).entities == len(churn_rows)
    assert calls == [64, 64, 64, 8]
    first = churn_rows["customer_id"].iloc[0]
    assert stores.online.get_latest("churn", first)["tenure_months"] == 77.0


def test_a_vanished_parsed_copy_is_not_found(stores, churn_spec, churn_rows):
    dataset = parsed(stores, churn_spec, churn_rows)
    del stores.objects.versions[dataset.frame_key or ""]
    with pytest.raises(NotFound):
        build_run_features(stores.objects, spec=churn_spec, run_id="run-1", dataset=dataset)


def test_an_entity_whose_features_would_not_fit_an_online_item_fails_before_anything_is_written(stores, churn_spec,
                                                                                                churn_rows):
    from functions.features.store import MAX_ONLINE_ROW_BYTES
    from functions.shared.limits import MAX_CATEGORY_LENGTH
    from functions.spec import ModelSpec

    wide = MAX_ONLINE_ROW_BYTES // (4 * MAX_CATEGORY_LENGTH) + 50  # features of the longest 4-byte-character values
    spec = ModelSpec.model_validate({**churn_spec.model_dump(), "features": [
        {"name": f"c{i}", "type": "categorical"} for i in range(wide)]})
    rows = churn_rows.head(30).assign(**{f"c{i}": "\U0001f600" * MAX_CATEGORY_LENGTH for i in range(wide)})
    rows.loc[rows.index[1:], "c0"] = "short"
    with pytest.raises(DatasetInvalid, match=f"more than {MAX_ONLINE_ROW_BYTES} bytes, what an online item holds"):
        build(stores, spec, rows)
    assert stores.online.rows == {} and not stores.objects.keys("runs/churn/run-1/features")


def test_wide_rows_that_fit_are_measured_one_by_one_and_pass(stores, churn_spec):
    from functions.features.store import MAX_ONLINE_ROW_BYTES
    from functions.shared.limits import MAX_CATEGORY_LENGTH
    from functions.spec import ModelSpec

    # The columns' longest values could make a row too large (the bound), but no single row is.
    wide = MAX_ONLINE_ROW_BYTES // (4 * MAX_CATEGORY_LENGTH) + 50
    spec = ModelSpec.model_validate({**churn_spec.model_dump(), "features": [
        {"name": f"c{i}", "type": "categorical"} for i in range(wide)]})
    rows = pd.DataFrame({"customer_id": [f"e{i}" for i in range(wide)], "churned": [i % 2 for i in range(wide)],
                         **{f"c{i}": ["s"] * wide for i in range(wide)}})
    for i in range(wide):
        rows.loc[i, f"c{i}"] = "\U0001f600" * MAX_CATEGORY_LENGTH  # each row has one long value
    assert build(stores, spec, rows).entities == wide
