"""The build_features step as a Lambda handler under moto: the model input on S3, the latest values in DynamoDB.

What the step decides is tested on the domain function with in-memory stores (test_build.py).
"""

import time

import pandas as pd

from functions.features.dynamo import DynamoOnlineStore
from functions.features.handler import build_features
from functions.pipeline.state import DatasetResult
from functions.settings import settings
from functions.storage.s3 import S3ObjectStore


def test_the_step_writes_the_model_input_and_the_online_store(pipeline_aws, churn_spec, churn_rows, lambda_context):
    rows = pd.concat([churn_rows, churn_rows.tail(1).assign(tenure_months=99.0)])  # a newer row of one customer
    data = rows.to_csv(index=False).encode()
    key = "datasets/churn/train.csv"
    version_id = pipeline_aws.upload(key, data)
    dataset = DatasetResult(dataset_id="d" * 64, key=key, version_id=version_id, bytes=len(data), spec=churn_spec,
                            readable=True)
    state = {"run_id": "run-1", "model": "churn", "bucket": pipeline_aws.bucket, "key": key,
             "version_id": version_id, "dataset": dataset.model_dump(mode="json")}

    result = build_features(state, lambda_context)

    assert result["features_key"] == "runs/churn/run-1/features.parquet"
    assert result["rows"] == len(rows) and result["entities"] == len(churn_rows)
    frame = S3ObjectStore(pipeline_aws.s3, pipeline_aws.bucket).get_frame(result["features_key"])
    assert list(frame.columns) == churn_spec.feature_names + ["churned", "customer_id"]
    table = pipeline_aws.tables["features"]
    customer = churn_rows["customer_id"].iloc[-1]
    latest = DynamoOnlineStore(table).get_latest("churn", customer)
    assert latest is not None and latest["tenure_months"] == 99.0 and set(latest) == set(churn_spec.feature_names)
    item = table.get_item(Key={"pk": f"churn#{customer}", "sk": "LATEST"})["Item"]
    assert item["dataset_id"] == "d" * 64
    assert abs(int(item["expires_at"]) - (time.time() + settings().feature_ttl_days * 86_400)) < 120

