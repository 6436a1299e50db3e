"""The features steps as Lambda handlers under moto: BuildFeatures writes the model input on S3 from the run's
parsed upload, PublishFeatures (after the registration) the latest values in DynamoDB.

What the steps decide is tested on the domain functions with in-memory stores (test_build.py).
"""

import time

import pandas as pd

from functions.features.dynamo import DynamoOnlineStore
from functions.features.handler import build_features, publish_features
from functions.pipeline.state import DatasetResult
from functions.settings import settings
from functions.shared.tabular import frame_bytes
from functions.storage.s3 import S3ObjectStore


def test_the_steps_write_the_model_input_then_the_online_store(pipeline_aws, churn_spec, churn_rows,
                                                                lambda_context):
    rows = pd.concat([churn_rows, churn_rows.tail(1).assign(tenure_months=99.0)])  # a newer row of one customer
    objects = S3ObjectStore(pipeline_aws.s3, pipeline_aws.bucket)
    frame_key = "runs/churn/run-1/dataset.parquet"
    digest = objects.put_bytes(frame_key, frame_bytes(rows, "train.csv"))
    key = "datasets/churn/train.csv"
    dataset = DatasetResult(dataset_id="d" * 64, key=key, version_id="v1", bytes=1, spec=churn_spec,
                            readable=True, frame_key=frame_key, frame_sha256=digest)
    state = {"run_id": "run-1", "model": "churn", "bucket": pipeline_aws.bucket, "key": key,
             "version_id": "v1", "dataset": dataset.model_dump(mode="json")}

    result = build_features(state, lambda_context)

    assert result["features_key"] == "runs/churn/run-1/features.parquet"
    assert result["rows"] == len(rows) and result["entities"] == len(churn_rows)
    frame = objects.get_frame(result["features_key"])
    assert list(frame.columns) == churn_spec.feature_names + ["churned", "customer_id"]
    table = pipeline_aws.tables["features"]
    assert table.scan()["Count"] == 0  # nothing online before the model is registered

    assert publish_features({**state, "features": result}, lambda_context) == {"entities": len(churn_rows)}

    customer = churn_rows["customer_id"].iloc[-1]
    latest = DynamoOnlineStore(table).get_latest("churn", customer)
    assert latest is not None and latest["tenure_months"] == 99.0 and set(latest) == set(churn_spec.feature_names)
    item = table.get_item(Key={"pk": f"churn#{customer}", "sk": "LATEST"})["Item"]
    assert item["dataset_id"] == "d" * 64
    assert abs(int(item["expires_at"]) - (time.time() + settings().feature_ttl_days * 86_400)) < 120
    assert table.scan(Select="COUNT")["Count"] == len(churn_rows)
