"""The moto patches: Lambda invoke and EventBridge delivery as AWS does them, and only when AWS would."""

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from local import patches
from local.runtime import FunctionConfig, LambdaRuntime
from tests.local.conftest import WAIT_S, Listener

ARN = "arn:aws:lambda:us-east-1:123456789012:function:recorder"
CLOSED = "arn:aws:lambda:us-east-1:123456789012:function:closed"  # reserved concurrency 0: always throttled
UPLOADS = json.dumps({"source": ["test.uploads"]})


@pytest.fixture(scope="module")
def runtime(listener: Listener) -> Iterator[LambdaRuntime]:
    lambda_runtime = LambdaRuntime({}, preload=[])
    lambda_runtime.register(FunctionConfig("recorder", ARN, "tests.local.handlers.report",
                                           {"REPORT_PORT": str(listener.port)}))
    lambda_runtime.register(FunctionConfig("closed", CLOSED, "tests.local.handlers.report", {}, reserved_concurrency=0))
    yield lambda_runtime
    lambda_runtime.stop()


@pytest.fixture
def aws(runtime: LambdaRuntime) -> Iterator[Any]:
    patches.apply(runtime)
    try:
        with mock_aws():
            # No retries: a throttle reaches the test at once (boto3 would retry it with backoff).
            once = Config(retries={"total_max_attempts": 1})
            yield lambda service: boto3.client(service, region_name="us-east-1", config=once)
    finally:
        patches.remove()


@pytest.fixture
def deliveries(monkeypatch: pytest.MonkeyPatch) -> list:
    """What the rules hand to delivery, recorded instead of run: a rule's decision is synchronous."""
    handed: list = []
    monkeypatch.setattr(patches, "deliver", lambda target, payload: handed.append(payload))
    return handed


def _rule(client: Any, name: str, target: dict | None = None, **rule: Any) -> None:
    client.put_rule(Name=name, **rule)
    client.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": ARN, **(target or {})}])


def _put(client: Any, source: str) -> None:
    client.put_events(Entries=[{"Source": source, "DetailType": "Test", "Detail": json.dumps({"n": 1})}])


def test_a_matching_rule_runs_its_lambda_target_with_the_event(aws: Any, listener: Listener) -> None:
    _rule(aws("events"), "uploads", EventPattern=UPLOADS)
    _put(aws("events"), "test.uploads")
    _, message = listener.next()
    assert message["event"]["source"] == "test.uploads" and message["event"]["detail"] == {"n": 1}


def test_an_invoke_runs_the_function_and_an_event_invoke_is_accepted_at_once(aws: Any, listener: Listener) -> None:
    response = aws("lambda").invoke(FunctionName="recorder", Payload=json.dumps({"n": 1}))
    assert json.loads(response["Payload"].read())["pid"] == listener.next()[1]["pid"]
    accepted = aws("lambda").invoke(FunctionName=ARN, InvocationType="Event", Payload=json.dumps({"n": 2}))
    assert accepted["StatusCode"] == 202
    assert listener.next()[1]["event"] == {"n": 2}


def test_a_throttled_invoke_is_lambdas_429(aws: Any) -> None:
    with pytest.raises(ClientError) as throttled:
        aws("lambda").invoke(FunctionName=CLOSED, Payload=b"{}")
    assert throttled.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert throttled.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"


def test_step_functions_names_a_throttle_as_the_pipelines_retry_expects(aws: Any) -> None:
    definition = {"StartAt": "Step", "States": {"Step": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True,
        "Parameters": {"FunctionName": CLOSED, "Payload": {}},
    }}}
    sfn = aws("stepfunctions")
    machine = sfn.create_state_machine(name="m", definition=json.dumps(definition),
                                       roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    deadline = time.monotonic() + WAIT_S
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.05)
    assert described["status"] == "FAILED" and described["error"] == "Lambda.TooManyRequestsException"


def test_only_matching_events_are_delivered(aws: Any, deliveries: list) -> None:
    _rule(aws("events"), "uploads", EventPattern=UPLOADS)
    _put(aws("events"), "test.other")
    assert deliveries == []
    _put(aws("events"), "test.uploads")
    assert [event["source"] for event in deliveries] == ["test.uploads"]


def test_a_schedule_only_rule_never_receives_events(aws: Any, deliveries: list) -> None:
    _rule(aws("events"), "hourly", ScheduleExpression="rate(60 minutes)")
    _put(aws("events"), "test.uploads")
    assert deliveries == []


def test_a_disabled_rule_delivers_nothing(aws: Any, deliveries: list) -> None:
    _rule(aws("events"), "uploads", EventPattern=UPLOADS, State="DISABLED")
    _put(aws("events"), "test.uploads")
    assert deliveries == []


def test_a_constant_input_replaces_the_event(aws: Any, deliveries: list) -> None:
    _rule(aws("events"), "uploads", {"Input": '{"model": "churn"}'}, EventPattern=UPLOADS)
    _put(aws("events"), "test.uploads")
    assert deliveries == [{"model": "churn"}]
