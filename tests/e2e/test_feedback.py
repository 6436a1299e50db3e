"""End to end on the local cloud: predict, send the labels (API and a file), run the check, read the model's
quality in its report."""

import json
import time

import pytest

from tests.e2e.conftest import MODEL, wait_for_capture

pytestmark = pytest.mark.e2e

ROWS = [{"tenure_months": float(m), "monthly_charges": 20.0 + 2 * m, "support_calls": m % 5,
         "plan": ("basic", "standard", "premium")[m % 3]} for m in range(40)]


def classes_of(aws, outputs, version: int) -> list:
    item = aws("dynamodb").get_item(TableName=outputs["RegistryTableName"],
                                    Key={"pk": {"S": f"MODEL#{MODEL}"}, "sk": {"S": f"VERSION#{version:06d}"}})
    return json.loads(item["Item"]["classes"]["S"])


def test_labels_join_captured_predictions_and_the_check_reports_quality(trained_model, api, aws, local_cloud):
    predicted = api("POST", f"/v1/models/{MODEL}/predict", json={"instances": ROWS})
    assert predicted.status_code == 200, predicted.text
    answer = predicted.json()
    request_id, predictions = answer["request_id"], answer["predictions"]
    classes = classes_of(aws, local_cloud, answer["version"])
    assert len(classes) == 2
    # 30 rows labelled as predicted, 10 the other way: accuracy 0.75.
    labels = [{"request_id": request_id, "index": i,
               "label": p if i < 30 else next(c for c in classes if c != p)} for i, p in enumerate(predictions)]
    feedback = f"/v1/models/{MODEL}/feedback"
    sent = api("POST", feedback, json={"labels": labels})
    assert sent.status_code == 200 and sent.json() == {"model": MODEL, "received": 40, "stored": 40, "unchanged": 0}
    assert api("POST", feedback, json={"labels": labels[:3]}).json()["unchanged"] == 3  # idempotent
    conflict = api("POST", feedback, json={**labels[0], "label": next(c for c in classes if c != labels[0]["label"])})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "Conflict"
    wrong = api("POST", feedback, json={"request_id": request_id, "label": "not-a-class"})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "RequestInvalid"
    assert api("POST", feedback, json={"request_id": "e2e-ghost", "label": classes[0]}).status_code == 200
    assert api("POST", feedback, key=False, json=labels[0]).status_code == 403

    # A file of labels: an S3 notification stores it and writes its result.
    s3, bucket = aws("s3"), local_cloud["DataBucketName"]
    s3.put_object(Bucket=bucket, Key=f"feedback/{MODEL}/late.csv",
                  Body=f"request_id,label\ne2e-file-ghost,{classes[1]}\n".encode())
    deadline, result = time.monotonic() + 60, None
    while result is None and time.monotonic() < deadline:
        try:
            result = json.loads(s3.get_object(Bucket=bucket, Key=f"feedback-results/{MODEL}/late.csv.json")["Body"]
                                .read())
        except s3.exceptions.NoSuchKey:
            time.sleep(0.3)
    assert result is not None and (result["status"], result["stored"]) == ("stored", 1), result

    wait_for_capture(aws, local_cloud, MODEL, request_id)  # Firehose delivers in batches
    invoked = aws("lambda").invoke(FunctionName=local_cloud["DriftFunctionName"],
                                   Payload=json.dumps({"model": MODEL}).encode())
    assert "FunctionError" not in invoked, invoked["Payload"].read()
    (summary,) = json.loads(invoked["Payload"].read())["reports"]
    report = json.loads(s3.get_object(Bucket=bucket, Key=summary["report_key"])["Body"].read())
    quality = report["quality"]
    assert quality["task"] == "classification" and quality["labelled"] == 40, quality
    assert quality["accuracy"] == pytest.approx(0.75)
    assert quality["unmatched"] >= 2 and quality["by_version"][str(answer["version"])]["labelled"] == 40
    assert quality["f1"] is not None
