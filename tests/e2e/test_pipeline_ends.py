"""End to end on the local cloud: however an execution ends, its run ends recorded, with a reason.

A stopped execution (`aws stepfunctions stop-execution`) never reaches RecordFailure: Step Functions'
status-change event, through the template's rule, records the run FAILED. A failed execution's cause
is the run's reason, as describe-execution shows it; the event then leaves the recorded reason alone.
"""

import json
import time

import pytest

from tests.e2e.conftest import csv_bytes, register_spec, upload, upload_and_wait, wait_for

pytestmark = pytest.mark.e2e
WAIT_S = 90


def run_item(aws, outputs, model: str, run_id: str) -> dict:
    return aws("dynamodb").get_item(
        TableName=outputs["RegistryTableName"],
        Key={"pk": {"S": f"MODEL#{model}"}, "sk": {"S": f"RUN#{run_id}"}},
        ConsistentRead=True,
    ).get("Item", {})


def handled_end(aws, run_id: str) -> dict:
    """What the run-ended function logged for `run_id`, once it has (its log group, as Lambda writes it)."""
    logs = aws("logs")
    (group,) = [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]
                if "RunEndedFunction" in g["logGroupName"]]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for event in logs.filter_log_events(logGroupName=group)["events"]:
            if run_id in event["message"] and "execution end handled" in event["message"]:
                return json.loads(event["message"])
        time.sleep(0.2)
    pytest.fail(f"the end of run {run_id} was not handled in {WAIT_S} s")


def test_a_stopped_run_ends_failed_with_a_reason(local_cloud, aws):
    model = "churn-stopped"
    register_spec(aws, local_cloud, model)
    started = upload(aws, local_cloud, f"datasets/{model}/train.csv", csv_bytes(300))
    sfn = aws("stepfunctions")
    deadline = time.monotonic() + WAIT_S
    while True:  # the upload starts the execution (asynchronously): stop it as soon as it runs
        try:
            sfn.stop_execution(executionArn=started["executionArn"], error="Stopped", cause="stopped by the e2e test")
            break
        except sfn.exceptions.ExecutionDoesNotExist:
            assert time.monotonic() < deadline, "the upload started no execution"
            time.sleep(0.05)
    execution = wait_for(aws, started)
    assert execution["status"] == "ABORTED", execution

    deadline = time.monotonic() + WAIT_S
    while (run := run_item(aws, local_cloud, model, started["run_id"])).get("status", {}).get("S") == "RUNNING":
        assert time.monotonic() < deadline, "the stopped run is still RUNNING"
        time.sleep(0.2)
    assert run["status"]["S"] == "FAILED"
    assert run["failure_reason"]["S"].startswith("the pipeline was stopped")
    assert run["error_type"]["S"] and run["ended_at"]["S"]


def test_a_failed_executions_cause_is_its_runs_reason_and_stays_so(local_cloud, aws):
    execution = upload_and_wait(aws, local_cloud, "datasets/nobody-else/data.csv", csv_bytes(50))
    assert (execution["status"], execution["error"]) == ("FAILED", "RunFailed")
    reason = run_item(aws, local_cloud, "nobody-else", execution["run_id"])["failure_reason"]["S"]
    assert "no model spec named 'nobody-else'" in reason
    assert execution["cause"] == reason  # what `aws stepfunctions describe-execution` shows
    # The execution's FAILED event reaches the run-ended function, which keeps the recorded reason.
    assert handled_end(aws, execution["run_id"])["recorded"] is False
    assert run_item(aws, local_cloud, "nobody-else", execution["run_id"])["failure_reason"]["S"] == reason
