"""Function output goes where Lambda puts it: the log group, and EMF documents become metrics."""

import json
import re
from typing import Any

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


def test_what_a_worker_prints_reaches_its_log_stream_and_metrics_never_the_terminal(
    aws_logs: tuple[Any, Any, LogShipper], capfd: pytest.CaptureFixture[str],
) -> None:
    logs, cloudwatch, shipper = aws_logs
    shipper.start()
    runtime = LambdaRuntime({}, log_sink=shipper, preload=[])
    runtime.register(FunctionConfig("chatty", "arn:aws:lambda:us-east-1:123456789012:function:chatty",
                                    "tests.local.handlers.chatty", {}, log_group="/aws/lambda/serving"))
    try:
        result = runtime.invoke("chatty", {"metrics": EMF})
        assert json.loads(result.payload) == {"ok": True}
    finally:
        runtime.stop()  # its workers' last lines reach the shipper
        shipper.stop()
    (stream,) = logs.describe_log_streams(logGroupName="/aws/lambda/serving")["logStreams"]
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", stream["logStreamName"])
    messages = [e["message"] for e in logs.filter_log_events(logGroupName="/aws/lambda/serving")["events"]]
    assert messages[1:4] == ['{"level": "INFO", "message": "hello"}', "a warning", json.dumps(EMF)]
    assert messages[0].startswith("START") and messages[4].startswith("END") and messages[5].startswith("REPORT")
    metrics = cloudwatch.list_metrics(Namespace="Mlops", MetricName="Predictions")["Metrics"]
    assert sorted(m["Dimensions"][0]["Name"] for m in metrics) == ["model", "service"]
    out, err = capfd.readouterr()  # the terminal, down to its file descriptors
    assert "hello" not in out + err and "a warning" not in out + err


def test_a_busy_minute_is_shipped_in_batches_to_each_workers_stream(aws_logs: tuple[Any, Any, LogShipper]) -> None:
    logs, _, shipper = aws_logs
    streams = ["2026/11/25/[$LATEST]a", "2026/11/25/[$LATEST]b"]
    for i in range(2500):  # queued before the shipper starts: one batch, over several calls
        shipper("/aws/lambda/serving", streams[i % 2], f'{{"message": "request {i}"}}\n')
    shipper.start()
    shipper.stop()
    found = logs.describe_log_streams(logGroupName="/aws/lambda/serving")["logStreams"]
    assert sorted(s["logStreamName"] for s in found) == streams
    for offset, stream in enumerate(streams):
        events = logs.get_log_events(logGroupName="/aws/lambda/serving", logStreamName=stream,
                                     startFromHead=True, limit=10000)["events"]
        assert [e["message"] for e in events] == [f'{{"message": "request {i}"}}' for i in range(offset, 2500, 2)]


def test_a_traceback_logged_as_lambda_logs_it_is_one_event(aws_logs: tuple[Any, Any, LogShipper]) -> None:
    logs, _, shipper = aws_logs
    shipper("/aws/lambda/serving", "s", "[ERROR] ValueError: x\rTraceback (most recent call last):\r  File ...\n")
    shipper.start()
    shipper.stop()
    (event,) = logs.filter_log_events(logGroupName="/aws/lambda/serving")["events"]
    assert event["message"].startswith("[ERROR] ValueError: x\rTraceback")
