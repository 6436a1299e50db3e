"""The roll-out function (functions/rollout/handler.py) under moto: an alarm event rolls back, the bake time's
end reads the alarms and promotes, and malformed or hostile events are refused without a change."""

import json

import boto3
import pytest

from functions.errors import InvalidInput
from functions.registry import rollout
from functions.registry.dynamo import DynamoRegistryStore
from functions.rollout import alarms as alarm_adapter
from functions.rollout.handler import handler


@pytest.fixture
def registry(pipeline_aws, monkeypatch):
    from tests.rollout.conftest import seeded

    alarm_adapter.alarm_states.cache_clear()
    return seeded(DynamoRegistryStore(pipeline_aws.tables["registry"]))


def alarm_event(state: str = "ALARM", name: str = "ChallengerErrors") -> dict:
    return {"version": "0", "id": "1", "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
            "resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"],
            "detail": {"alarmName": name, "state": {"value": state, "reason": "Threshold Crossed"},
                       "previousState": {"value": "OK"}}}


def test_an_alarm_event_rolls_back(registry, lambda_context):
    rollout.start(registry, "m", 2, actor="me")
    answer = handler(alarm_event(), lambda_context)
    assert [o["rollout"]["status"] for o in answer["rolled_back"]] == ["rolled_back"]
    assert registry.get_rollout("m").ended_by.startswith("arn:aws:")
    assert handler(alarm_event("OK"), lambda_context) == {"rolled_back": []}


def test_the_bake_end_reads_the_alarms_then_promotes_or_rolls_back(registry, lambda_context):
    cw = boto3.client("cloudwatch")
    cw.put_metric_alarm(AlarmName="ChallengerErrors", Namespace="Mlops", MetricName="ModelErrors", Statistic="Average",
                        Period=60, EvaluationPeriods=1, Threshold=0.05, ComparisonOperator="GreaterThanThreshold")
    current = rollout.start(registry, "m", 2, actor="me").rollout
    cw.set_alarm_state(AlarmName="ChallengerErrors", StateValue="ALARM", StateReason="test")
    answer = handler({"action": "bake_end", "model": "m", "rollout_id": current.rollout_id,
                      "alarms": ["ChallengerErrors"]}, lambda_context)
    assert answer["rollout"]["status"] == "rolled_back" and "ChallengerErrors" in answer["rollout"]["end_reason"]
    current = rollout.start(registry, "m", 2, actor="me").rollout
    cw.set_alarm_state(AlarmName="ChallengerErrors", StateValue="OK", StateReason="test")
    answer = handler({"action": "bake_end", "model": "m", "rollout_id": current.rollout_id,
                      "alarms": ["ChallengerErrors"]}, lambda_context)
    assert answer["rollout"]["status"] == "promoted" and registry.get_alias("m") == 2


@pytest.mark.parametrize("event", [
    {}, None, [], "bake_end", {"action": "bake_end"}, {"action": "bake_end", "model": "m"},
    {"action": "bake_end", "model": "M!", "rollout_id": "x"},
    {"action": "bake_end", "model": "m", "rollout_id": "../../etc"},
    {"action": "bake_end", "model": "m", "rollout_id": "x" * 129},
    {"action": "bake_end", "model": "m", "rollout_id": "x", "alarms": ["a"] * 101},
    {"action": "bake_end", "model": "m", "rollout_id": "x", "extra": 1},
    {"action": "delete_everything", "model": "m", "rollout_id": "x"},
    {"detail-type": "CloudWatch Alarm State Change", "detail": {"alarmName": "a" * 300, "state": {"value": "ALARM"}}},
    {"detail-type": "CloudWatch Alarm State Change", "detail": "ALARM"},
])
def test_malformed_events_are_refused_and_change_nothing(registry, lambda_context, event):
    rollout.start(registry, "m", 2, actor="me")
    with pytest.raises(InvalidInput, match="the roll-out function takes"):
        handler(event, lambda_context)
    assert registry.get_rollout("m").running


def test_an_ended_or_unknown_rollout_changes_nothing(registry, lambda_context):
    current = rollout.start(registry, "m", 2, actor="me").rollout
    answer = handler({"action": "bake_end", "model": "m", "rollout_id": "m-v2-old"}, lambda_context)
    assert answer["changed"] is False and registry.get_rollout("m") == current
    assert json.dumps(answer)  # a JSON answer
