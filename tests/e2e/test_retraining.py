"""The loop on the local cloud: a served model's inputs shift, the drift check announces it (Model Drift Detected,
received on an SQS queue that a plain boto3 client subscribed to the default bus), the retraining rule starts a
retrain (the latest dataset plus the labelled feedback, with retrain: true, audited with the event), the pipeline
trains and gates it, and a second drift event within the cooldown starts nothing."""

import io
import json
import time

import pandas as pd
import pytest

from tests.conftest import CHURN_FEATURES
from tests.e2e.conftest import SPEC, csv_bytes, event_queue, register_spec, upload_and_wait, wait_for, wait_for_capture

pytestmark = pytest.mark.e2e
MODEL = "retrain-e2e"
OUTCOMES = ("retrain started", "no retrain")  # what the retrain function logs once it has decided


@pytest.fixture
def monitoring_queue(aws):
    return event_queue(aws, "retrain-e2e", {"source": ["mlops.monitoring"], "detail": {"model": [MODEL]}})


def registry_item(aws, outputs, sk: str) -> dict | None:
    return aws("dynamodb").get_item(TableName=outputs["RegistryTableName"],
                                    Key={"pk": {"S": f"MODEL#{MODEL}"}, "sk": {"S": sk}}).get("Item")


def wait_for_retrain(aws, outputs, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = registry_item(aws, outputs, "RETRAIN")
        if item and "run_id" in item:
            return item
        time.sleep(0.2)
    failed = aws("sqs").receive_message(QueueUrl=outputs["FailedEventsQueueUrl"], MaxNumberOfMessages=10,
                                        MessageAttributeNames=["All"], AttributeNames=["All"]).get("Messages", [])
    pytest.fail(f"no retrain was started; the retrain function logged {retrain_log(aws)[-20:]}; "
                f"failed events: {[m['Body'][:2000] for m in failed]}")


def retrain_log(aws) -> list[str]:
    """What the retrain function printed (its log group, as Lambda writes it)."""
    logs = aws("logs")
    groups = [g["logGroupName"] for page in logs.get_paginator("describe_log_groups").paginate()
              for g in page["logGroups"] if "RetrainFunction" in g["logGroupName"]]
    return [line["message"] for group in groups for line in logs.filter_log_events(logGroupName=group)["events"]]


def handled(aws, event_id: str, timeout: float = 30) -> dict:
    """What the retrain function logged for the event, once it has (its log group, as Lambda writes it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in retrain_log(aws):
            logged = json.loads(line) if line.startswith("{") else {}
            if logged.get("correlation_id") == event_id and logged.get("message") in OUTCOMES:
                return logged
        time.sleep(0.2)
    pytest.fail(f"the retrain function did not handle event {event_id} in {timeout} s")


def check_drift(aws, outputs) -> dict:
    invoked = aws("lambda").invoke(FunctionName=outputs["DriftFunctionName"], Payload=json.dumps({"model": MODEL}))
    assert "FunctionError" not in invoked, invoked["Payload"].read()
    (report,) = json.loads(invoked["Payload"].read())["reports"]
    return report


def test_shifted_inputs_are_announced_and_retrain_once_within_the_cooldown(local_cloud, aws, api, monitoring_queue):
    from cli.demo_data import churn_frame

    register_spec(aws, local_cloud, MODEL, {**SPEC, "monitoring": {"retrain": True}})  # the session's are off
    assert upload_and_wait(aws, local_cloud, f"datasets/{MODEL}/train.csv", csv_bytes(200))["status"] == "SUCCEEDED"
    shifted = churn_frame(rows=120, seed=5, shift=1.0)[CHURN_FEATURES].to_dict("records")
    response = api("POST", f"/v1/models/{MODEL}/predict", json={"instances": shifted})
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    wait_for_capture(aws, local_cloud, MODEL, request_id)
    # Labels for three of the served rows: the retrain adds them, with their captured features, to its rows.
    labelled = api("POST", f"/v1/models/{MODEL}/feedback", json={"labels": [
        {"request_id": request_id, "index": index, "label": index % 2} for index in (0, 7, 119)]})
    assert labelled.status_code == 200 and labelled.json()["stored"] == 3, labelled.text

    report = check_drift(aws, local_cloud)
    assert report["drifted"] is True and report["event"] == "Model Drift Detected" and report["event_sent"] is True
    (event,) = monitoring_queue(1)
    assert event["source"] == "mlops.monitoring" and event["detail-type"] == "Model Drift Detected"
    assert event["detail"]["model"] == MODEL and event["detail"]["version"] == 1
    assert event["detail"]["report_key"] == report["report_key"] and "tenure_months" in event["detail"]["drifted"]
    # The model's alarms were put by the check, under the stack's prefix, notifying the alarm topic.
    alarms = [a for page in aws("cloudwatch").get_paginator("describe_alarms").paginate() for a in page["MetricAlarms"]]
    mine = {a["AlarmName"].rsplit("-", 1)[-1]: a for a in alarms if f"-model-{MODEL}-" in a["AlarmName"]}
    assert set(mine) >= {"drift", "latency", "errors"}
    assert mine["drift"]["AlarmActions"] == [local_cloud["AlarmTopicArn"]]

    retrain = wait_for_retrain(aws, local_cloud)
    run_id, key = retrain["run_id"]["S"], retrain["dataset_key"]["S"]
    assert retrain["event_id"]["S"] == event["id"] and key.startswith(f"datasets/{MODEL}/retrain-")
    head = aws("s3").head_object(Bucket=local_cloud["DataBucketName"], Key=key)
    assert head["Metadata"]["retrain"] == "true" and key.endswith(".parquet")
    body = aws("s3").get_object(Bucket=local_cloud["DataBucketName"], Key=key)["Body"].read()
    rows = pd.read_parquet(io.BytesIO(body))
    added = rows[rows["customer_id"].str.startswith("feedback:")]
    assert len(rows) == 203 and list(added["customer_id"]) == [f"feedback:{request_id}:{i}" for i in (0, 7, 119)]
    assert list(added["churned"]) == [0, 1, 1]
    assert added[CHURN_FEATURES].to_dict("records") == [shifted[i] for i in (0, 7, 119)]
    arn = local_cloud["StateMachineArn"].replace(":stateMachine:", ":execution:") + f":{run_id}"
    ended = wait_for(aws, {"run_id": run_id, "executionArn": arn})
    assert ended["status"] == "SUCCEEDED"
    run = registry_item(aws, local_cloud, f"RUN#{run_id}")
    # v1's data and the labelled rows, retrained (retrain: true), registered as v2 and gated against the champion.
    assert run["retrain"]["BOOL"] is True and "duplicate_of" not in run and run["model_version"]["N"] == "2"
    assert "promotion_reason" in run
    audit = aws("dynamodb").query(
        TableName=local_cloud["RegistryTableName"], KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
        ExpressionAttributeValues={":pk": {"S": f"MODEL#{MODEL}"}, ":a": {"S": "AUDIT#"}})["Items"]
    (entry,) = [i for i in audit if i["action"]["S"] == "retrain"]
    assert json.loads(entry["cause"]["S"])["id"] == event["id"] and entry["dataset_key"]["S"] == key

    # Still drifted: a second event, within the cooldown, starts nothing.
    again = check_drift(aws, local_cloud)
    assert again["event_sent"] is True
    first, second = monitoring_queue(2)
    assert first == event and second["id"] != event["id"]
    skipped = handled(aws, second["id"])
    assert skipped["started"] is False and "within the cooldown" in skipped["reason"], skipped
    assert registry_item(aws, local_cloud, "RETRAIN")["event_id"]["S"] == event["id"]
    audit = aws("dynamodb").query(
        TableName=local_cloud["RegistryTableName"], KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
        ExpressionAttributeValues={":pk": {"S": f"MODEL#{MODEL}"}, ":a": {"S": "AUDIT#"}})["Items"]
    assert len([i for i in audit if i["action"]["S"] == "retrain"]) == 1


def test_an_event_the_retrain_function_fails_on_reaches_the_dead_letter_queue_after_lambdas_retries(local_cloud, aws):
    # Anyone allowed PutEvents may send source mlops.monitoring: an event for a model without a spec fails
    # (UnknownModel), is retried twice (1 s and 2 s apart locally) and its invocation record is the failed event.
    detail = {"model": "retrain-e2e-nobody", "version": 1, "drifted": ["tenure_months"], "report_key": "reports/x"}
    (sent,) = aws("events").put_events(Entries=[{"Source": "mlops.monitoring", "DetailType": "Model Drift Detected",
                                                 "Detail": json.dumps(detail)}])["Entries"]
    sqs, deadline = aws("sqs"), time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=local_cloud["FailedEventsQueueUrl"], MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", []):
            record = json.loads(message["Body"])
            if record.get("requestPayload", {}).get("id") == sent["EventId"]:
                sqs.delete_message(QueueUrl=local_cloud["FailedEventsQueueUrl"], ReceiptHandle=message["ReceiptHandle"])
                assert record["requestContext"]["condition"] == "RetriesExhausted"
                assert record["requestContext"]["approximateInvokeCount"] == 3
                assert "RetrainFunction" in record["requestContext"]["functionArn"]
                assert record["responseContext"]["functionError"] == "Unhandled"
                assert record["responsePayload"]["errorType"] == "UnknownModel", record["responsePayload"]
                assert record["requestPayload"]["detail"] == detail
                return
    pytest.fail(f"event {sent['EventId']} did not reach the dead-letter queue")
