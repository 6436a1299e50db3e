"""The moto patches: Lambda invoke and EventBridge delivery as AWS does them, and only when AWS would."""

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
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


def test_a_lambda_target_gets_the_event_as_aws_sends_it(aws: Any, deliveries: list) -> None:
    # PutEvents' Time reaches moto's rules in epoch seconds: a target receives ISO 8601, as from EventBridge.
    _rule(aws("events"), "uploads", EventPattern=UPLOADS)
    at = datetime(2026, 1, 31, 12, 0, 5, 250000, tzinfo=UTC)
    aws("events").put_events(Entries=[{"Source": "test.uploads", "DetailType": "Test", "Detail": "{}", "Time": at}])
    _put(aws("events"), "test.uploads")  # no Time: when it was received
    given, received = deliveries
    assert given["time"] == "2026-01-31T12:00:05Z"
    assert datetime.strptime(received["time"], "%Y-%m-%dT%H:%M:%SZ").year >= 2026
    assert set(given) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources",
                          "detail"}


def test_an_input_transformer_reads_the_time_aws_sends(aws: Any, deliveries: list) -> None:
    transformer = {"InputPathsMap": {"at": "$.time"}, "InputTemplate": '{"at": "sent at <at>"}'}
    _rule(aws("events"), "uploads", {"InputTransformer": transformer}, EventPattern=UPLOADS)
    at = datetime(2026, 1, 31, 12, 0, 5, tzinfo=UTC)
    aws("events").put_events(Entries=[{"Source": "test.uploads", "DetailType": "Test", "Detail": "{}", "Time": at}])
    assert deliveries == [{"at": "sent at 2026-01-31T12:00:05Z"}]


STATUS_CHANGES = json.dumps({"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]})


def _run(aws: Any, definition: dict, name: str, execution_input: dict, stop: bool = False) -> dict:
    """Run a state machine to its end (stopping it first if asked); its description."""
    sfn = aws("stepfunctions")
    machine = sfn.create_state_machine(name=f"m-{name}", definition=json.dumps(definition),
                                       roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(execution_input))
    if stop:
        sfn.stop_execution(executionArn=execution["executionArn"])
    deadline = time.monotonic() + WAIT_S
    while (described := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.05)
    return described


def _status_changes(deliveries: list, execution_arn: str, count: int) -> list[dict]:
    """The status-change events of one execution handed to the rule's target, once `count` have been."""
    deadline = time.monotonic() + WAIT_S
    while len(events := [e for e in deliveries if e["resources"] == [execution_arn]]) < count:
        assert time.monotonic() < deadline, f"{len(events)} status changes of {count}"
        time.sleep(0.02)
    return events


def test_an_execution_emits_its_status_changes_as_aws_documents_them(aws: Any, deliveries: list) -> None:
    _rule(aws("events"), "ends", EventPattern=STATUS_CHANGES)
    definition = {"StartAt": "Fail", "States": {"Fail": {"Type": "Fail", "Error": "RunFailed",
                                                         "CausePath": "$.run.failure_reason"}}}
    described = _run(aws, definition, "run-1", {"run": {"failure_reason": "the dataset is empty"}})
    # The Fail state's cause comes from the state (CausePath), as describe-execution shows it.
    assert (described["status"], described["error"], described["cause"]) == ("FAILED", "RunFailed",
                                                                            "the dataset is empty")
    started, ended = _status_changes(deliveries, described["executionArn"], 2)
    assert started["detail"]["status"] == "RUNNING" and started["detail"]["stopDate"] is None
    assert {k: ended[k] for k in ("source", "detail-type", "account", "region")} == {
        "source": "aws.states", "detail-type": "Step Functions Execution Status Change",
        "account": "123456789012", "region": "us-east-1"}
    detail = ended["detail"]
    assert {k: detail[k] for k in ("executionArn", "stateMachineArn", "name", "status", "error", "cause",
                                   "output", "inputDetails")} == {
        "executionArn": described["executionArn"], "stateMachineArn": described["stateMachineArn"],
        "name": "run-1", "status": "FAILED", "error": "RunFailed", "cause": "the dataset is empty",
        "output": None, "inputDetails": {"included": True}}
    assert json.loads(detail["input"]) == {"run": {"failure_reason": "the dataset is empty"}}
    assert isinstance(detail["startDate"], int) and detail["startDate"] <= detail["stopDate"]
    assert datetime.strptime(ended["time"], "%Y-%m-%dT%H:%M:%SZ") and "ingestion-time" not in ended


def test_a_queue_and_a_function_both_receive_an_executions_status_changes(aws: Any, deliveries: list) -> None:
    # The queue's rule comes first: moto's SQS delivery formats the time itself, and must not stop the others.
    sqs, events = aws("sqs"), aws("events")
    url = sqs.create_queue(QueueName="ends")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="ends-queue", EventPattern=STATUS_CHANGES)
    events.put_targets(Rule="ends-queue", Targets=[{"Id": "queue", "Arn": arn}])
    _rule(events, "ends", EventPattern=STATUS_CHANGES)
    described = _run(aws, {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}, "run-2", {})
    _, ended = _status_changes(deliveries, described["executionArn"], 2)
    queued = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    assert [m["detail"]["status"] for m in queued] == ["RUNNING", "SUCCEEDED"]
    assert queued[1]["time"] == ended["time"] and queued[1]["detail"] == ended["detail"]


@pytest.mark.parametrize("definition, stop, status", [
    ({"TimeoutSeconds": 1, "StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 30, "End": True}}},
     False, "TIMED_OUT"),
    ({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 30, "End": True}}}, True, "ABORTED"),
    ({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}, False, "SUCCEEDED"),
])
def test_an_execution_that_times_out_is_stopped_or_succeeds_says_so(aws: Any, deliveries: list, definition: dict,
                                                                    stop: bool, status: str) -> None:
    _rule(aws("events"), "ends", EventPattern=STATUS_CHANGES)
    described = _run(aws, definition, f"run-{status.lower()}", {"model": "churn"}, stop=stop)
    assert described["status"] == status
    _, ended = _status_changes(deliveries, described["executionArn"], 2)
    assert ended["detail"]["status"] == status and ended["detail"]["stopDate"] >= ended["detail"]["startDate"]
    assert ended["detail"]["output"] == ('{"model":"churn"}' if status == "SUCCEEDED" else None)


def test_an_execution_stopped_during_a_task_ends_aborted(aws: Any, listener: Listener, deliveries: list) -> None:
    """However the task in flight ends (the pipeline catches everything), a stopped execution is ABORTED."""
    _rule(aws("events"), "ends", EventPattern=STATUS_CHANGES)
    definition = {"StartAt": "Step", "States": {
        "Step": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Done",
                 "Parameters": {"FunctionName": ARN, "Payload": {"wait": True}},
                 "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}]},
        "Failed": {"Type": "Fail", "Error": "RunFailed", "Cause": "caught"},
        "Done": {"Type": "Succeed"},
    }}
    sfn = aws("stepfunctions")
    machine = sfn.create_state_machine(name="stopped", definition=json.dumps(definition),
                                       roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="run-stopped")["executionArn"]
    conn, _ = listener.next()  # the task runs
    sfn.stop_execution(executionArn=execution, error="Stopped", cause="by a test")
    conn.sendall(b"go\n")
    conn.close()
    deadline = time.monotonic() + WAIT_S
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.05)
    assert described["status"] == "ABORTED"
    assert _status_changes(deliveries, execution, 2)[-1]["detail"]["status"] == "ABORTED"
