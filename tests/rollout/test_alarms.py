"""The local cloud's alarm evaluation (local/alarms.py), as CloudWatch evaluates: statistic per period, M of N
datapoints, comparison, missing data; its state set, its actions notified and its event sent."""

import json
import time

import pytest

from local import alarms

ALARM = {"AlarmName": "a", "ComparisonOperator": "GreaterThanThreshold", "Threshold": 0.05, "EvaluationPeriods": 3,
         "DatapointsToAlarm": 2, "TreatMissingData": "missing", "StateValue": "OK"}


@pytest.mark.parametrize(("points", "treat", "state"), [
    ([0.0, 0.0, 0.0], "missing", "OK"),
    ([0.1, 0.0, 0.0], "missing", "OK"),  # one breaching of the two needed
    ([0.1, 0.0, 0.2], "missing", "ALARM"),
    ([None, None, None], "missing", "INSUFFICIENT_DATA"),
    ([None, None, None], "notBreaching", "OK"),
    ([None, None, None], "breaching", "ALARM"),
    ([None, 0.5, None], "breaching", "ALARM"),
    ([None, 0.5, None], "notBreaching", "OK"),
    ([None, None, None], "ignore", "OK"),  # the state it had
    ([0.05, 0.05, 0.05], "missing", "OK"),  # greater than, not equal
])
def test_m_of_n_datapoints_and_missing_data(points, treat, state):
    assert alarms.evaluate({**ALARM, "TreatMissingData": treat}, points).state == state


def test_comparisons_and_the_reason():
    for operator, value, state in [("GreaterThanOrEqualToThreshold", 1, "ALARM"), ("LessThanThreshold", 0, "ALARM"),
                                   ("LessThanOrEqualToThreshold", 2, "OK")]:
        alarm = {**ALARM, "ComparisonOperator": operator, "Threshold": 1, "EvaluationPeriods": 1,
                 "DatapointsToAlarm": 1}
        assert alarms.evaluate(alarm, [value]).state == state
    reason = alarms.evaluate({**ALARM, "EvaluationPeriods": 1, "DatapointsToAlarm": 1}, [1.0]).reason
    assert reason.startswith("Threshold Crossed: 1 out of the last 1 datapoints [1.0] were greater than")


@pytest.mark.parametrize(("name", "expected"), [("SampleCount", 5), ("Sum", 15), ("Average", 3), ("Minimum", 1),
                                                ("Maximum", 5), ("p50", 3), ("p90", 5), ("p99", 5), ("p20", 1)])
def test_statistics(name, expected):
    assert alarms.statistic([5, 1, 4, 2, 3], name) == expected


def test_the_period_scale_is_a_checked_local_setting(monkeypatch):
    monkeypatch.setenv(alarms.PERIOD_SCALE_VARIABLE, "0.05")
    assert alarms.period_scale() == 0.05
    for bad in ("0", "2", "fast", "-1", "nan"):
        monkeypatch.setenv(alarms.PERIOD_SCALE_VARIABLE, bad)
        with pytest.raises(ValueError, match="MLOPS_ALARM_PERIOD_SCALE is a number above 0"):
            alarms.period_scale()


@pytest.fixture
def cloud():
    """moto's CloudWatch, SNS (a queue subscribed), and a rule on alarm state changes with a queue target."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        cw, sns, sqs, events = (boto3.client(s, region_name="us-east-1") for s in ("cloudwatch", "sns", "sqs",
                                                                                   "events"))
        topic = sns.create_topic(Name="alarms")["TopicArn"]
        queues = {}
        for name in ("notified", "routed"):
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            queues[name] = (url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"])
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queues["notified"][1])
        cw.put_metric_alarm(AlarmName="ChallengerErrors", Namespace="Mlops", MetricName="ModelErrors",
                            Dimensions=[{"Name": "variant", "Value": "challenger"}], Statistic="Average", Period=60,
                            EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=0.05,
                            ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching",
                            AlarmActions=[topic])
        arn = cw.describe_alarms(AlarmNames=["ChallengerErrors"])["MetricAlarms"][0]["AlarmArn"]
        events.put_rule(Name="challenger-alarm", EventPattern=json.dumps({
            "source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"], "resources": [arn],
            "detail": {"state": {"value": ["ALARM"]}}}))
        events.put_targets(Rule="challenger-alarm", Targets=[{"Id": "q", "Arn": queues["routed"][1]}])
        yield cw, sns, sqs, queues


def received(sqs, url) -> list[dict]:
    return [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
        "Messages", [])]


def put_errors(cw, values, dimensions=None):
    cw.put_metric_data(Namespace="Mlops", MetricData=[{
        "MetricName": "ModelErrors", "Dimensions": dimensions or [{"Name": "variant", "Value": "challenger"}],
        "Values": values, "Unit": "Count"}])


def test_an_alarm_fires_on_its_metric_notifies_and_sends_its_event(cloud):
    cw, sns, sqs, queues = cloud
    evaluator = alarms.AlarmEvaluator(cw, sns, "123456789012", "us-east-1", scale=1,
                                      clock=lambda: time.time() + 60)
    evaluator.evaluate_all()  # no data: not breaching
    assert cw.describe_alarms(AlarmNames=["ChallengerErrors"])["MetricAlarms"][0]["StateValue"] == "OK"
    put_errors(cw, [0.0, 1.0, 0.0])  # a third of the requests failed
    put_errors(cw, [1.0, 1.0], [{"Name": "variant", "Value": "champion"}])  # another metric: not this alarm's
    assert evaluator.evaluate_all() == [("ChallengerErrors", "OK", "ALARM")]
    assert evaluator.evaluate_all() == [], "a state is changed once"
    (alarm,) = cw.describe_alarms(AlarmNames=["ChallengerErrors"])["MetricAlarms"]
    assert alarm["StateValue"] == "ALARM" and "1 out of the last 1 datapoints [0.333333]" in alarm["StateReason"]
    (notification,) = [json.loads(n["Message"]) for n in received(sqs, queues["notified"][0])]
    assert (notification["NewStateValue"], notification["OldStateValue"]) == ("ALARM", "OK")
    assert notification["Trigger"]["MetricName"] == "ModelErrors"
    (event,) = received(sqs, queues["routed"][0])
    assert (event["source"], event["detail-type"]) == ("aws.cloudwatch", "CloudWatch Alarm State Change")
    assert event["resources"] == [alarm["AlarmArn"]] and event["detail"]["alarmName"] == "ChallengerErrors"
    assert (event["detail"]["state"]["value"], event["detail"]["previousState"]["value"]) == ("ALARM", "OK")
    assert event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] == {
        "variant": "challenger"}
    # A later period without data is not breaching: back to OK, and no ALARM event for the rule.
    later = alarms.AlarmEvaluator(cw, sns, "123456789012", "us-east-1", scale=1, clock=lambda: time.time() + 180)
    assert later.evaluate_all() == [("ChallengerErrors", "ALARM", "OK")]
    assert received(sqs, queues["routed"][0]) == []


def test_a_scaled_period_is_evaluated_in_seconds(cloud):
    cw, sns, _, _ = cloud
    put_errors(cw, [1.0])
    fast = alarms.AlarmEvaluator(cw, sns, "123456789012", "us-east-1", scale=0.05, clock=lambda: time.time() + 3)
    assert fast.interval_s == 0.75
    assert [state for _, _, state in fast.evaluate_all()] == ["ALARM"]
