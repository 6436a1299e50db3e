"""End to end on the local cloud: upload -> pipeline -> champion -> HTTP predictions -> drift.

Every call here is a real AWS API call (boto3 against the local endpoint) or a real HTTP
request to the local REST API.
"""

import hashlib
import json

import pytest

from tests.conftest import CHURN_FEATURES
from tests.e2e.conftest import MODEL, csv_bytes, upload_and_wait, wait_for_capture

pytestmark = pytest.mark.e2e


@pytest.fixture
def trained(trained_model):
    return trained_model


def champion(api) -> dict:
    response = api("GET", f"/v1/models/{MODEL}")
    assert response.status_code == 200, response.text
    return response.json()["champion"]


def registry_items(aws, outputs) -> list[dict]:
    return aws("dynamodb").query(
        TableName=outputs["RegistryTableName"],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"MODEL#{MODEL}"}},
    )["Items"]


def test_upload_trains_registers_and_promotes_a_champion(trained, api, aws, local_cloud):
    best = champion(api)
    assert best["version"] == 1
    assert 0.5 < best["metrics"]["roc_auc"] <= 1.0
    assert set(best["metrics"]) >= {"accuracy", "precision", "recall", "f1", "roc_auc"}
    keys = aws("s3").list_objects_v2(Bucket=local_cloud["DataBucketName"], Prefix=f"models/{MODEL}/v1/")
    assert {o["Key"].rsplit("/", 1)[-1] for o in keys["Contents"]} >= {"model.skops"}


def test_predictions_over_http_carry_the_model_version(trained, api):
    instances = [
        {"tenure_months": 2.0, "monthly_charges": 120.0, "support_calls": 6, "plan": "basic"},
        {"tenure_months": 60.0, "monthly_charges": 30.0, "support_calls": 0, "plan": "premium"},
    ]
    response = api("POST", f"/v1/models/{MODEL}/predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 1 and len(body["predictions"]) == 2
    # The short-tenure, high-charge, many-calls customer is the likelier to leave.
    assert body["probabilities"][0][1] > body["probabilities"][1][1]


def test_a_customer_named_by_id_is_scored_on_the_features_the_pipeline_published(trained, api, aws, local_cloud):
    from cli.demo_data import churn_frame

    rows = churn_frame(rows=300, seed=7)  # the training upload (csv_bytes(300)), published to the online store
    row = rows.dropna(subset=CHURN_FEATURES).iloc[5]
    given = {name: (value.item() if hasattr(value, "item") else value) for name, value in row[CHURN_FEATURES].items()}
    response = api("POST", f"/v1/models/{MODEL}/predict", json={"instances": [{"customer_id": row["customer_id"]},
                                                                              given]})
    assert response.status_code == 200, response.text
    by_id, by_features = response.json()["probabilities"]
    assert by_id == pytest.approx(by_features)
    unknown = api("POST", f"/v1/models/{MODEL}/predict", json={"instances": [{"customer_id": "c7-unknown"}]})
    assert unknown.status_code == 422 and "no features in the online store" in unknown.json()["error"]["message"]


def test_the_same_upload_twice_is_one_dataset_version_and_one_training(trained, aws, local_cloud, _training):
    versions_before = [i for i in registry_items(aws, local_cloud) if i["sk"]["S"].startswith("VERSION#")]
    again = upload_and_wait(aws, local_cloud, f"datasets/{MODEL}/train-copy.csv", csv_bytes(300))
    assert again["status"] == "SUCCEEDED"
    # The same data, spec and code trained v1 in the first run: this run matches it and trains nothing.
    run = aws("dynamodb").get_item(
        TableName=local_cloud["RegistryTableName"],
        Key={"pk": {"S": f"MODEL#{MODEL}"}, "sk": {"S": f"RUN#{again['run_id']}"}},
    )["Item"]
    assert run["status"]["S"] == "SUCCEEDED" and run["duplicate_of"]["S"] == _training["run_id"]
    assert run["model_version"]["N"] == "1"
    states = [e["stateEnteredEventDetails"]["name"] for e in aws("stepfunctions").get_execution_history(
        executionArn=again["executionArn"], maxResults=1000)["events"] if "stateEnteredEventDetails" in e]
    assert states == ["RegisterDataset", "AlreadyTrained", "RecordSuccess", "RunSucceeded"]
    versions_after = [i for i in registry_items(aws, local_cloud) if i["sk"]["S"].startswith("VERSION#")]
    assert versions_after == versions_before
    content_id = hashlib.sha256(csv_bytes(300)).hexdigest()
    datasets = aws("dynamodb").query(
        TableName=local_cloud["DatasetsTableName"],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"MODEL#{MODEL}"}},
    )["Items"]
    same_content = [item for item in datasets if item["sk"]["S"] == f"DATASET#{content_id}"]
    assert len(same_content) == 1
    # Both runs (the first upload's and this one) are recorded on the one dataset version.
    runs = set(same_content[0]["runs"]["SS"])
    assert again["run_id"] in runs and len(runs) >= 2


def test_drift_check_reads_captured_requests_and_stores_a_report(drift_model, api, aws, local_cloud):
    from cli.demo_data import churn_frame

    shifted = churn_frame(rows=120, seed=5, shift=1.0)[CHURN_FEATURES].to_dict("records")
    response = api("POST", f"/v1/models/{drift_model}/predict", json={"instances": shifted})
    assert response.status_code == 200, response.text
    wait_for_capture(aws, local_cloud, drift_model, response.json()["request_id"])  # Firehose delivers in batches
    invoked = aws("lambda").invoke(
        FunctionName=local_cloud["DriftFunctionName"], Payload=json.dumps({"model": drift_model}).encode()
    )
    assert "FunctionError" not in invoked, invoked["Payload"].read()
    (report,) = json.loads(invoked["Payload"].read())["reports"]
    assert report["samples"] >= 120 and report["drifted"] is True
    stored = aws("s3").get_object(Bucket=local_cloud["DataBucketName"], Key=report["report_key"])
    assert json.loads(stored["Body"].read())["features"]["tenure_months"]["drifted"] is True


@pytest.mark.parametrize(
    "name, body, reason",
    [
        ("malformed", b"tenure_months,plan\n\"unterminated,basic\n1,2,3,4,5\n", "dataset"),
        ("wrong-columns", b"a,b,c\n1,2,3\n4,5,6\n", "churned"),
        ("empty", b"", "empty"),
    ],
)
def test_a_bad_dataset_fails_its_run_with_a_reason_and_keeps_the_champion(trained, api, aws, local_cloud, name, body,
                                                                          reason):
    before_champion = champion(api)
    versions_before = [i for i in registry_items(aws, local_cloud) if i["sk"]["S"].startswith("VERSION#")]
    execution = upload_and_wait(aws, local_cloud, f"datasets/{MODEL}/{name}.csv", body)
    assert execution["status"] == "FAILED"
    run = aws("dynamodb").get_item(
        TableName=local_cloud["RegistryTableName"],
        Key={"pk": {"S": f"MODEL#{MODEL}"}, "sk": {"S": f"RUN#{execution['run_id']}"}},
    )["Item"]
    assert run["status"]["S"] == "FAILED"
    assert reason in run["failure_reason"]["S"].lower()
    assert "Traceback" not in run["failure_reason"]["S"]
    assert champion(api) == before_champion
    versions_after = [i for i in registry_items(aws, local_cloud) if i["sk"]["S"].startswith("VERSION#")]
    assert versions_after == versions_before


def test_upload_for_an_unknown_model_fails_its_run_clearly(local_cloud, aws):
    execution = upload_and_wait(aws, local_cloud, "datasets/nobody/data.csv", csv_bytes(50))
    assert execution["status"] == "FAILED"
    run = aws("dynamodb").get_item(
        TableName=local_cloud["RegistryTableName"],
        Key={"pk": {"S": "MODEL#nobody"}, "sk": {"S": f"RUN#{execution['run_id']}"}},
    )["Item"]
    assert "no model spec named 'nobody'" in run["failure_reason"]["S"]


def test_column_names_with_spaces_dots_parentheses_and_unicode_train_and_predict_over_http(local_cloud, aws, api):
    from tests.e2e.conftest import SPEC, register_spec

    names = {"tenure_months": "tenure (months)", "monthly_charges": "monthly.charges $",
             "support_calls": "Destek çağrıları", "plan": "план тарифа", "churned": "churned?",
             "customer_id": "客户 id"}
    spec = {**SPEC, "target": names["churned"], "entity_id": names["customer_id"],
            "features": [{**f, "name": names[f["name"]]} for f in SPEC["features"]]}
    register_spec(aws, local_cloud, "named-e2e", spec)
    from cli.demo_data import churn_frame

    body = churn_frame(rows=200, seed=5).rename(columns=names).to_csv(index=False).encode()
    execution = upload_and_wait(aws, local_cloud, "datasets/named-e2e/named columns.csv", body)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    described = api("GET", "/v1/models/named-e2e").json()
    assert [f["name"] for f in described["signature"]] == [names[f] for f in CHURN_FEATURES]
    instance = {"tenure (months)": 3, "monthly.charges $": 95.5, "Destek çağrıları": 4, "план тарифа": "basic"}
    response = api("POST", "/v1/models/named-e2e/predict", json={"instances": [instance]})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1 and len(response.json()["probabilities"][0]) == 2
    wrong = api("POST", "/v1/models/named-e2e/predict", json={"instances": [{**instance, "plan": "basic"}]})
    assert wrong.status_code == 422 and "'plan'" in wrong.json()["error"]["message"]
