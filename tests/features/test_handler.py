"""The build_features step under moto: offline frame on S3, latest values online."""

import pandas as pd

from functions.features.handler import build_features
from functions.features.store import OnlineStore, read_frame
from functions.registry.store import registry_store
from tests.training.helpers import upload_state


def test_build_features_writes_the_model_input_and_the_online_store(pipeline_aws, churn_spec, churn_rows, lambda_context):
    registry_store().put_spec(churn_spec)
    rows = pd.concat([churn_rows, churn_rows.tail(1).assign(tenure_months=99.0)])  # a newer row of one customer
    state = upload_state(pipeline_aws, "churn", "train.csv", rows.to_csv(index=False).encode())
    state["dataset"] = {"dataset_id": "d" * 64, "spec": churn_spec.model_dump(mode="json")}

    result = build_features(state, lambda_context)

    assert result["features_key"] == f"runs/churn/{state['run_id']}/features.parquet"
    assert result["rows"] == len(rows) and result["entities"] == len(churn_rows)
    frame = read_frame(pipeline_aws.s3, pipeline_aws.bucket, result["features_key"])
    assert list(frame.columns) == churn_spec.feature_names + ["churned", "customer_id"]
    latest = OnlineStore(pipeline_aws.tables["features"]).get_latest("churn", churn_rows["customer_id"].iloc[-1])
    assert latest["tenure_months"] == 99.0 and set(latest) == set(churn_spec.feature_names)


def test_without_an_entity_id_nothing_goes_online(pipeline_aws, churn_spec, churn_rows, lambda_context):
    spec = churn_spec.model_copy(update={"entity_id": None})
    registry_store().put_spec(spec)
    state = upload_state(pipeline_aws, "churn", "train.csv", churn_rows.to_csv(index=False).encode())
    state["dataset"] = {"dataset_id": "d" * 64, "spec": spec.model_dump(mode="json")}

    result = build_features(state, lambda_context)

    assert result["entities"] == 0
    assert pipeline_aws.tables["features"].scan()["Count"] == 0
