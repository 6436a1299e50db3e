"""What `mlops up` prints when an execution fails: one readable line, never moto's interpreter internals."""

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local import patches
from local.runtime import FunctionConfig, LambdaRuntime
from tests.local.conftest import WAIT_S

BOOM = "arn:aws:lambda:us-east-1:123456789012:function:boom"
ROLE = "arn:aws:iam::123456789012:role/sfn"


@pytest.fixture(scope="module")
def runtime() -> Iterator[LambdaRuntime]:
    lambda_runtime = LambdaRuntime({}, preload=[])
    lambda_runtime.register(FunctionConfig("boom", BOOM, "tests.local.handlers.boom", {}))
    yield lambda_runtime
    lambda_runtime.stop()


@pytest.fixture
def sfn(runtime: LambdaRuntime) -> Iterator[Any]:
    patches.apply(runtime)
    try:
        with mock_aws():
            yield boto3.client("stepfunctions", region_name="us-east-1")
    finally:
        patches.remove()


def _end(sfn: Any, name: str, definition: dict, *, stop: bool = False) -> dict:
    machine = sfn.create_state_machine(name=f"m-{name}", definition=json.dumps(definition), roleArn=ROLE)
    arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name=name, input='{"x": 1}')["executionArn"]
    deadline = time.monotonic() + WAIT_S
    if stop:  # once in its first state
        while not any(e["type"] == "WaitStateEntered"
                      for e in sfn.get_execution_history(executionArn=arn)["events"]):
            assert time.monotonic() < deadline, "the execution did not start"
            time.sleep(0.02)
        sfn.stop_execution(executionArn=arn)
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.02)
    return described


def _said(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """Every warning or error logged once the execution's line is there (it follows its end)."""
    deadline = time.monotonic() + WAIT_S
    while not any(name in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


# As the pipeline does it: a step's failure is caught, recorded, and the execution ends in a Fail state.
CAUGHT = {"StartAt": "Boom", "States": {
    "Boom": {"Type": "Task", "Resource": BOOM, "ResultPath": "$.error", "Next": "Record",
             "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Record"}]},
    "Record": {"Type": "Pass", "Next": "RunFailed"},
    "RunFailed": {"Type": "Fail", "Error": "RunFailed", "Cause": "The training run failed; its record says why."},
}}


def test_a_failed_execution_is_one_line_naming_its_failed_state_and_reason(sfn: Any, caplog) -> None:
    caplog.set_level(logging.WARNING)
    assert _end(sfn, "churn-abc", CAUGHT)["status"] == "FAILED"
    assert _said(caplog, "churn-abc") == [
        "mlops.local: execution churn-abc failed at Boom: ValueError: bad input 1"
    ], "one line, and nothing of moto's interpreter (ContinueWithNext, FailureEventException, its state reprs)"


@pytest.mark.parametrize("definition, stop, line", [
    ({"TimeoutSeconds": 1, "StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 30, "End": True}}},
     False, "execution slow timed out in Nap"),
    ({"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 30, "End": True}}},
     True, "execution slow was aborted in Nap"),
    ({"StartAt": "Nope", "States": {"Nope": {"Type": "Fail", "Error": "Refused", "Cause": "a reason\n on two lines"}}},
     False, "execution slow failed at Nope: Refused: a reason on two lines"),
])
def test_an_execution_that_times_out_is_aborted_or_fails_by_itself_is_one_line_too(sfn: Any, caplog, definition,
                                                                                    stop: bool, line: str) -> None:
    caplog.set_level(logging.WARNING)
    _end(sfn, "slow", definition, stop=stop)
    assert _said(caplog, "execution slow") == [f"mlops.local: {line}"]


def test_a_succeeding_execution_says_nothing(sfn: Any, caplog) -> None:
    caplog.set_level(logging.WARNING)
    assert _end(sfn, "fine", {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})["status"] == (
        "SUCCEEDED")
    time.sleep(0.2)  # its end has been reported by now, were it reported
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_long_reason_is_cut_to_a_bounded_line() -> None:
    cause = json.dumps({"errorMessage": "x" * 5000, "errorType": "Boom", "stackTrace": ["  File ...\n"]})
    events = [{"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "Train"}},
              {"type": "LambdaFunctionFailed", "lambdaFunctionFailedEventDetails": {"error": "Boom", "cause": cause}}]
    line = patches.end_line("r", "FAILED", events, "RunFailed", "see the record")
    assert line.startswith("execution r failed at Train: Boom: xxx") and "stackTrace" not in line
    assert len(line) < patches.MAX_REASON_CHARS + 40
