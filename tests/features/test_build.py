"""Building a run's features with in-memory stores: the model input offline, each entity's latest row online."""

import pandas as pd
import pytest

from functions.errors import NotFound, RetryableError
from functions.features.build import build_run_features, model_frame
from functions.storage.objects import sha256
from tests.fakes import lost_reply, throttled


def build(stores, spec, rows: pd.DataFrame, run_id: str = "run-1"):
    key = f"datasets/{spec.name}/train.csv"
    version_id = stores.objects.put(key, rows.to_csv(index=False).encode())
    return build_run_features(stores.objects, stores.online, spec=spec, key=key, version_id=version_id,
                              run_id=run_id, dataset_id="d" * 64, ttl_days=30)


def test_writes_the_model_input_and_each_entitys_latest_row(stores, churn_spec, churn_rows):
    rows = pd.concat([churn_rows, churn_rows.tail(1).assign(tenure_months=99.0)])  # a newer row of one customer

    result = build(stores, churn_spec, rows)

    assert result.features_key == "runs/churn/run-1/features.parquet"
    assert result.rows == len(rows) and result.entities == len(churn_rows)
    assert result.features_sha256 == sha256(stores.objects.get_bytes(result.features_key))
    frame = stores.objects.get_frame(result.features_key)
    assert list(frame.columns) == churn_spec.feature_names + ["churned", "customer_id"]
    latest = stores.online.get_latest("churn", churn_rows["customer_id"].iloc[-1])
    assert latest is not None and latest["tenure_months"] == 99.0 and set(latest) == set(churn_spec.feature_names)


def test_without_an_entity_id_nothing_goes_online(stores, churn_spec, churn_rows):
    spec = churn_spec.model_copy(update={"entity_id": None})
    result = build(stores, spec, churn_rows)
    assert result.entities == 0 and stores.online.rows == {}
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
    stores.objects.faults.inject("put_bytes", lost_reply(), after=True)
    with pytest.raises(RetryableError):
        build(stores, churn_spec, churn_rows)
    retried = build(stores, churn_spec, churn_rows)  # the state machine retries the step
    assert stores.objects.keys("runs/") == [retried.features_key]
    assert retried.features_sha256 == sha256(stores.objects.get_bytes(retried.features_key))
    assert len(stores.online.rows) == retried.entities == len(churn_rows)


def test_a_throttled_online_write_is_retryable(stores, churn_spec, churn_rows):
    stores.online.faults.inject("put_latest", throttled())
    with pytest.raises(RetryableError):
        build(stores, churn_spec, churn_rows)
    assert build(stores, churn_spec, churn_rows).entities == len(churn_rows)


def test_a_vanished_upload_is_not_found(stores, churn_spec):
    with pytest.raises(NotFound, match="no longer exists"):
        build_run_features(stores.objects, stores.online, spec=churn_spec, key="datasets/churn/gone.csv",
                           version_id="v1", run_id="run-1", dataset_id="d" * 64, ttl_days=30)


def test_an_entity_whose_features_would_not_fit_an_online_item_fails_before_anything_is_written(stores, churn_spec,
                                                                                                churn_rows):
    from functions.errors import DatasetInvalid
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
    assert stores.online.rows == {}
