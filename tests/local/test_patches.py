"""The moto patches: EventBridge rules deliver to Lambda as AWS does, and only when AWS would."""

import json

import boto3
import pytest
from moto import mock_aws

from local import patches
from local.runtime import FunctionConfig, LambdaRuntime
from tests.local import handlers

ARN = "arn:aws:lambda:us-east-1:123456789012:function:recorder"
UPLOADS = json.dumps({"source": ["test.uploads"]})


@pytest.fixture
def events_client():
    runtime = LambdaRuntime({})
    runtime.register(FunctionConfig("recorder", ARN, "tests.local.handlers.record", {}))
    handlers.received.clear()
    handlers.delivered.clear()
    patches.apply(runtime)
    try:
        with mock_aws():
            yield boto3.client("events", region_name="us-east-1")
    finally:
        patches.remove()


@pytest.fixture
def deliveries(monkeypatch):
    """What the rules hand to delivery, recorded instead of run: a rule's decision is synchronous."""
    handed: list = []
    monkeypatch.setattr(patches, "deliver", lambda target, payload: handed.append(payload))
    return handed


def _rule(client, name: str, target: dict | None = None, **rule) -> None:
    client.put_rule(Name=name, **rule)
    client.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": ARN, **(target or {})}])


def _put(client, source: str) -> None:
    client.put_events(Entries=[{"Source": source, "DetailType": "Test", "Detail": json.dumps({"n": 1})}])


def test_a_matching_rule_runs_its_lambda_target_with_the_event(events_client):
    _rule(events_client, "uploads", EventPattern=UPLOADS)
    _put(events_client, "test.uploads")
    assert handlers.delivered.wait(10), "the Lambda target was not invoked"
    (event,) = handlers.received
    assert event["source"] == "test.uploads" and event["detail"] == {"n": 1}


def test_only_matching_events_are_delivered(events_client, deliveries):
    _rule(events_client, "uploads", EventPattern=UPLOADS)
    _put(events_client, "test.other")
    assert deliveries == []
    _put(events_client, "test.uploads")
    assert [event["source"] for event in deliveries] == ["test.uploads"]


def test_a_schedule_only_rule_never_receives_events(events_client, deliveries):
    _rule(events_client, "hourly", ScheduleExpression="rate(60 minutes)")
    _put(events_client, "test.uploads")
    assert deliveries == []


def test_a_disabled_rule_delivers_nothing(events_client, deliveries):
    _rule(events_client, "uploads", EventPattern=UPLOADS, State="DISABLED")
    _put(events_client, "test.uploads")
    assert deliveries == []


def test_a_constant_input_replaces_the_event(events_client, deliveries):
    _rule(events_client, "uploads", {"Input": '{"model": "churn"}'}, EventPattern=UPLOADS)
    _put(events_client, "test.uploads")
    assert deliveries == [{"model": "churn"}]
