"""A run whose execution ends without recording it (timed out, stopped, failed outside the catch) is
recorded FAILED with the reason, from Step Functions' status-change event; an end already recorded is
never overwritten. Domain cases on the in-memory registry; the conditional write and the handler on moto."""

import json

import pytest

from functions.errors import InvalidInput, NotFound, RetryableError
from functions.pipeline.step import metrics
from functions.records import Run
from functions.registry.dynamo import registry_store
from functions.training import handler
from functions.training.ended import ExecutionStatus, record_execution_end
from tests.conftest import STATE_MACHINE_ARN

RUN_ID = "churn-0123456789abcdef"
STARTED_MS = 1_700_000_000_000


def status_change(status: str, *, minutes: int = 90, error: str | None = None, cause: str | None = None,
                  run_id: str = RUN_ID, model: str = "churn") -> dict:
    """The event Step Functions sends to EventBridge (its documented shape)."""
    arn = STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:") + f":{run_id}"
    return {
        "version": "0", "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
        "account": "123456789012", "time": "2024-01-01T00:00:00Z", "region": "us-east-1", "resources": [arn],
        "detail": {
            "executionArn": arn, "stateMachineArn": STATE_MACHINE_ARN, "name": run_id, "status": status,
            "startDate": STARTED_MS, "stopDate": STARTED_MS + minutes * 60_000,
            "input": json.dumps({"run_id": run_id, "model": model, "bucket": "b", "key": "datasets/churn/x.csv"}),
            "inputDetails": {"included": True}, "output": None, "outputDetails": None, "error": error, "cause": cause,
        },
    }


def detail(status: str, **kwargs) -> ExecutionStatus:
    return ExecutionStatus.model_validate(status_change(status, **kwargs)["detail"])


@pytest.fixture
def running(stores):
    stores.registry.start_run(Run(model="churn", run_id=RUN_ID, bucket="b", key="datasets/churn/x.csv",
                                  code_version="test-1"))
    return stores.registry


@pytest.mark.parametrize("status, kwargs, reason, error_type", [
    ("TIMED_OUT", {"minutes": 90}, "did not finish within its time limit (stopped after 90 minutes)", "States.Timeout"),
    ("ABORTED", {"cause": "stopped by the on-call engineer"}, "the pipeline was stopped: stopped by the on-call "
     "engineer", "ExecutionAborted"),
    ("ABORTED", {}, "the pipeline was stopped", "ExecutionAborted"),
    ("FAILED", {"error": "States.Runtime", "cause": "An error occurred while executing the state 'RunFailed'"},
     f"internal error in the pipeline; see the logs of run {RUN_ID}", "States.Runtime"),
    ("FAILED", {"error": "RetryableError", "cause": json.dumps({
        "errorType": "RetryableError", "errorMessage": "recording run x: storage is busy, try again"})},
     "recording run x: storage is busy, try again", "RetryableError"),
])
def test_a_running_run_is_recorded_failed_with_the_reason(running, status, kwargs, reason, error_type):
    result = record_execution_end(running, detail(status, **kwargs))
    run = running.get_run("churn", RUN_ID)
    assert result["recorded"] is True and run.status == "FAILED" and run.ended_at
    assert reason in run.failure_reason and run.error_type == error_type
    assert result["failure_reason"] == run.failure_reason


@pytest.mark.parametrize("recorded", ["SUCCEEDED", "FAILED"])
def test_an_end_already_recorded_is_never_overwritten(running, recorded):
    running.update_run("churn", RUN_ID, status=recorded, failure_reason="the dataset is empty"
                       if recorded == "FAILED" else None)
    before = running.get_run("churn", RUN_ID)
    result = record_execution_end(running, detail("TIMED_OUT"))
    assert result["recorded"] is False and running.get_run("churn", RUN_ID) == before


def test_a_stopped_executions_cause_is_bounded(running):
    record_execution_end(running, detail("ABORTED", cause="x" * 50_000))
    assert len(running.get_run("churn", RUN_ID).failure_reason) <= 2000


def test_events_that_are_not_an_unrecorded_end_change_nothing(running):
    before = running.get_run("churn", RUN_ID)
    assert record_execution_end(running, detail("SUCCEEDED"))["recorded"] is False
    assert record_execution_end(running, detail("RUNNING"))["recorded"] is False
    no_model = detail("TIMED_OUT").model_copy(update={"input": "not json"})
    assert record_execution_end(running, no_model)["recorded"] is False
    assert running.get_run("churn", RUN_ID) == before
    assert record_execution_end(running, detail("TIMED_OUT", run_id="churn-unknown"))["recorded"] is False
    with pytest.raises(NotFound):
        running.get_run("churn", "churn-unknown")  # no run is made up


def test_a_throttled_write_is_retryable(running):
    running.faults.inject("end_run", RetryableError("storage is busy"))
    with pytest.raises(RetryableError):
        record_execution_end(running, detail("TIMED_OUT"))


# --- the handler and the conditional write, under moto ---------------------------------------------


@pytest.fixture
def handler_metrics():
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def test_the_handler_records_a_timed_out_run_once_and_keeps_a_recorded_end(pipeline_aws, lambda_context,
                                                                            handler_metrics):
    registry = registry_store()
    registry.start_run(Run(model="churn", run_id=RUN_ID, bucket=pipeline_aws.bucket, key="datasets/churn/x.csv",
                           code_version="test-1"))
    first = handler.record_execution_end(status_change("TIMED_OUT"), lambda_context)
    assert first["recorded"] is True
    run = registry.get_run("churn", RUN_ID)
    assert run.status == "FAILED" and "time limit" in run.failure_reason

    registry.start_run(Run(model="churn", run_id="churn-succeeded", bucket=pipeline_aws.bucket,
                           key="datasets/churn/y.csv", code_version="test-1"))
    registry.update_run("churn", "churn-succeeded", status="SUCCEEDED")  # not RUNNING: left alone
    again = handler.record_execution_end(status_change("ABORTED", run_id="churn-succeeded"), lambda_context)
    assert again["recorded"] is False
    assert registry.get_run("churn", "churn-succeeded").status == "SUCCEEDED"
    # A run that is not recorded is not created by the conditional write.
    assert handler.record_execution_end(status_change("FAILED", run_id="churn-nothing"), lambda_context)[
        "recorded"] is False
    assert [r.run_id for r in registry.list_runs("churn")].count("churn-nothing") == 0


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_the_handler_refuses_what_is_not_a_status_change(pipeline_aws, lambda_context, handler_metrics):
    with pytest.raises(InvalidInput):
        handler.record_execution_end({"source": "aws.s3", "detail": {}}, lambda_context)


def test_a_failed_execution_gives_back_the_version_its_run_reserved_but_never_registered(running):
    number = running.version_for_run("churn", RUN_ID)
    result = record_execution_end(running, detail("FAILED", error="States.Runtime"))
    assert result["version_released"] is True and running.counters["churn"] == number - 1
    # Stopped or timed out, its RegisterModel may still be running: the number stays taken.
    running.start_run(Run(model="churn", run_id="churn-stopped", bucket="b", key="k", code_version="test-1"))
    kept = running.version_for_run("churn", "churn-stopped")
    assert "version_released" not in record_execution_end(running, detail("ABORTED", run_id="churn-stopped"))
    assert running.counters["churn"] == kept
