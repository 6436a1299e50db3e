"""Function output goes where Lambda puts it: the log group, and EMF documents become metrics."""

import json
import sys

import boto3
import pytest
from moto import mock_aws

from local.logs import LogShipper, metric_data
from local.runtime import FunctionConfig, LambdaRuntime

EMF = {
    "_aws": {"Timestamp": 1_795_000_000_000, "CloudWatchMetrics": [{
        "Namespace": "Mlops", "Dimensions": [["service"], ["model"]],
        "Metrics": [{"Name": "Predictions", "Unit": "Count"}, {"Name": "PredictLatency", "Unit": "Milliseconds"}],
    }]},
    "service": "serving", "model": "churn", "Predictions": [1.0, 2.0], "PredictLatency": 12.5,
}


def test_an_emf_document_becomes_one_datum_per_metric_and_dimension_set():
    ((namespace, data),) = metric_data(EMF)
    assert namespace == "Mlops"
    seen = {(d["MetricName"], tuple((x["Name"], x["Value"]) for x in d["Dimensions"])): d["Values"] for d in data}
    assert seen == {
        ("Predictions", (("service", "serving"),)): [1.0, 2.0],
        ("PredictLatency", (("service", "serving"),)): [12.5],
        ("Predictions", (("model", "churn"),)): [1.0, 2.0],
        ("PredictLatency", (("model", "churn"),)): [12.5],
    }
    assert all(d["Unit"] in ("Count", "Milliseconds") for d in data)


def test_a_plain_log_line_is_no_metric():
    assert metric_data({"level": "INFO", "message": "hi"}) == []
    assert metric_data({"_aws": {"CloudWatchMetrics": "nonsense"}}) == []


@pytest.fixture
def aws_logs():
    with mock_aws():
        logs, cloudwatch = boto3.client("logs", "us-east-1"), boto3.client("cloudwatch", "us-east-1")
        logs.create_log_group(logGroupName="/aws/lambda/serving")
        yield logs, cloudwatch, LogShipper(logs, cloudwatch)


def test_an_invocations_output_reaches_its_log_group_and_metrics_not_the_terminal(aws_logs, capsys):
    logs, cloudwatch, shipper = aws_logs
    shipper.start()
    runtime = LambdaRuntime({}, log_sink=shipper)
    runtime.register(FunctionConfig("chatty", "arn:aws:lambda:us-east-1:123456789012:function:chatty",
                                    "tests.local.handlers.chatty", {}, log_group="/aws/lambda/serving"))
    runtime.capture_output()
    try:
        assert json.loads(runtime.invoke("chatty", {}).payload) == {"ok": True}
        print(json.dumps(EMF))  # not an invocation's: passes through
        sys.stdout.flush()
    finally:
        runtime.release_output()
        shipper.stop()
    messages = [e["message"] for e in logs.filter_log_events(logGroupName="/aws/lambda/serving")["events"]]
    assert messages == ['{"level": "INFO", "message": "hello"}', "a warning"]
    assert cloudwatch.list_metrics(Namespace="Mlops")["Metrics"] == []
    out = capsys.readouterr()
    assert "hello" not in out.out and "a warning" not in out.err
    assert '"Predictions"' in out.out


def test_an_invocations_metrics_reach_cloudwatch(aws_logs):
    _, cloudwatch, shipper = aws_logs
    shipper.start()
    shipper("/aws/lambda/serving", json.dumps(EMF) + "\n")
    shipper.stop()
    metrics = cloudwatch.list_metrics(Namespace="Mlops", MetricName="Predictions")["Metrics"]
    assert sorted(m["Dimensions"][0]["Name"] for m in metrics) == ["model", "service"]


def test_a_busy_minute_is_shipped_in_batches_to_one_stream_per_function(aws_logs):
    logs, _, shipper = aws_logs
    for i in range(2500):  # queued before the shipper starts: one batch, over several calls
        shipper("/aws/lambda/serving", f'{{"message": "request {i}"}}\n')
    shipper.start()
    shipper.stop()
    (stream,) = logs.describe_log_streams(logGroupName="/aws/lambda/serving")["logStreams"]
    events = logs.get_log_events(logGroupName="/aws/lambda/serving", logStreamName=stream["logStreamName"],
                                 startFromHead=True, limit=10000)["events"]
    assert [e["message"] for e in events] == [f'{{"message": "request {i}"}}' for i in range(2500)]
