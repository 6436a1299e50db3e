"""The moto patches: EventBridge rules deliver to Lambda as AWS does, and only when AWS would."""

import json
import time

import boto3
import pytest
from moto import mock_aws

from local import patches
from local.runtime import FunctionConfig, LambdaRuntime
from tests.local import handlers

ARN = "arn:aws:lambda:us-east-1:123456789012:function:recorder"


@pytest.fixture
def events_client():
    runtime = LambdaRuntime({})
    runtime.register(FunctionConfig("recorder", ARN, "tests.local.handlers.record", {}))
    handlers.received.clear()
    patches.apply(runtime)
    try:
        with mock_aws():
            yield boto3.client("events", region_name="us-east-1")
    finally:
        patches.remove()


def _put(client, source: str) -> None:
    client.put_events(Entries=[{"Source": source, "DetailType": "Test", "Detail": json.dumps({"n": 1})}])


def _wait_for(count: int, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while len(handlers.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # room for a delivery that should not happen
    return list(handlers.received)


def test_a_matching_rule_delivers_the_event_to_its_lambda_target(events_client):
    events_client.put_rule(Name="uploads", EventPattern=json.dumps({"source": ["test.uploads"]}))
    events_client.put_targets(Rule="uploads", Targets=[{"Id": "fn", "Arn": ARN}])
    _put(events_client, "test.other")
    _put(events_client, "test.uploads")
    (event,) = _wait_for(1)
    assert event["source"] == "test.uploads" and event["detail"] == {"n": 1}


def test_a_schedule_only_rule_never_receives_events(events_client):
    events_client.put_rule(Name="hourly", ScheduleExpression="rate(60 minutes)")
    events_client.put_targets(Rule="hourly", Targets=[{"Id": "fn", "Arn": ARN}])
    _put(events_client, "test.uploads")
    assert _wait_for(1, timeout=0.5) == []


def test_a_disabled_rule_delivers_nothing(events_client):
    events_client.put_rule(Name="uploads", EventPattern=json.dumps({"source": ["test.uploads"]}), State="DISABLED")
    events_client.put_targets(Rule="uploads", Targets=[{"Id": "fn", "Arn": ARN}])
    _put(events_client, "test.uploads")
    assert _wait_for(1, timeout=0.5) == []


def test_a_constant_input_replaces_the_event(events_client):
    events_client.put_rule(Name="uploads", EventPattern=json.dumps({"source": ["test.uploads"]}))
    events_client.put_targets(Rule="uploads", Targets=[{"Id": "fn", "Arn": ARN, "Input": '{"model": "churn"}'}])
    _put(events_client, "test.uploads")
    assert _wait_for(1) == [{"model": "churn"}]
