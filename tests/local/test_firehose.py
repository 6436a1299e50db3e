"""The local cloud's subscription filters and Firehose delivery, as AWS runs them (local/firehose.py)."""

import gzip
import json
import time
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from functions.serving.capture import FILTER_PATTERN, capture_lines, capture_record, hour_prefix
from infra.capture import ERROR_PREFIX, OBJECT_PREFIX
from local import firehose
from local.firehose import compile_pattern

BUCKET = "data"
GROUP = "/aws/lambda/predict"
PROCESSORS = [
    {"Type": "Decompression", "Parameters": [{"ParameterName": "CompressionFormat", "ParameterValue": "GZIP"}]},
    {"Type": "CloudWatchLogProcessing",
     "Parameters": [{"ParameterName": "DataMessageExtraction", "ParameterValue": "true"}]},
    {"Type": "MetadataExtraction", "Parameters": [
        {"ParameterName": "MetadataExtractionQuery",
         "ParameterValue": "{model: .model, dt: .timestamp[0:10], hour: .timestamp[11:13]}"},
        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
    {"Type": "AppendDelimiterToRecord"},
]


@pytest.mark.parametrize("pattern, message, matched", [
    ("", "anything", True),
    (FILTER_PATTERN, '{"mlops_capture":1,"model":"m"}', True),
    (FILTER_PATTERN, '{"mlops_capture":2}', False),
    (FILTER_PATTERN, '{"mlops_capture":"1"}', False),
    (FILTER_PATTERN, '{"level":"INFO","message":"{\\"mlops_capture\\":1}"}', False),  # inside a string: not the field
    (FILTER_PATTERN, "mlops_capture = 1", False),  # not JSON
    (FILTER_PATTERN, '{"nested":{"mlops_capture":1}}', False),
    ('{ $.level = "ERROR" && $.model = "ch*" }', '{"level":"ERROR","model":"churn"}', True),
    ('{ $.level = "ERROR" || $.code EXISTS }', '{"level":"INFO","code":3}', True),
    ('{ $.level != "INFO" }', '{"level":"INFO"}', False),
    ("ERROR timeout", "[ERROR] a timeout happened", True),
    ("ERROR timeout", "[ERROR] something else", False),
])
def test_a_filter_pattern_selects_what_cloudwatch_logs_would(pattern, message, matched):
    assert compile_pattern(pattern)(message) is matched


@pytest.mark.parametrize("pattern", ["{ ($.a = 1) && ($.b = 2) }", "{ $.a = 1 && $.b = 2 || $.c = 3 }",
                                     "?ERROR ?WARN", "{ $.a > 1 }", "{ not json"])
def test_a_pattern_the_local_cloud_cannot_read_is_refused_not_guessed(pattern):
    with pytest.raises(ValueError):
        compile_pattern(pattern)


@pytest.fixture
def aws():
    with mock_aws(), firehose.faithful_delivery():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        logs = boto3.client("logs", region_name="us-east-1")
        logs.create_log_group(logGroupName=GROUP)
        logs.create_log_stream(logGroupName=GROUP, logStreamName="2026/03/04/[$LATEST]abc")
        hose = boto3.client("firehose", region_name="us-east-1")
        arn = hose.create_delivery_stream(
            DeliveryStreamName="captures", DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose", "BucketARN": f"arn:aws:s3:::{BUCKET}",
                "Prefix": OBJECT_PREFIX, "ErrorOutputPrefix": ERROR_PREFIX,
                "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 64}, "CompressionFormat": "GZIP",
                "FileExtension": ".gz", "DynamicPartitioningConfiguration": {"Enabled": True},
                "ProcessingConfiguration": {"Enabled": True, "Processors": PROCESSORS},
            })["DeliveryStreamARN"]
        logs.put_subscription_filter(logGroupName=GROUP, filterName="captures", filterPattern=FILTER_PATTERN,
                                     destinationArn=arn, roleArn="arn:aws:iam::123456789012:role/logs")
        yield s3, logs, hose


def line(model: str, at: datetime, request_id: str, rows: list[dict]) -> str:
    (text,) = capture_lines(capture_record(model=model, version=1, request_id=request_id, at=at, inputs=rows,
                                           predictions=[0] * len(rows)))
    return text


def delivered(s3) -> dict[str, list[dict]]:
    objects = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: [json.loads(x) for x in gzip.decompress(s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"]
                                                              .read()).splitlines() if x.strip()] for o in objects}


def test_capture_lines_reach_s3_batched_gzipped_and_partitioned_by_model_and_hour(aws, monkeypatch):
    s3, logs, _ = aws
    monkeypatch.setattr(firehose, "LOCAL_MAX_INTERVAL_S", 3600.0)  # the stream's own 60 s: no tick delivers first
    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    later = datetime(2026, 3, 4, 6, 0, 1, tzinfo=UTC)
    events = [
        "START RequestId: 1 Version: $LATEST",
        line("churn", at, "r-1", [{"a": 1}]),
        '{"level":"INFO","message":"predicted","model":"churn"}',
        line("churn", at, "r-2", [{"a": 2}, {"a": 3}]),
        line("fraud", at, "r-3", [{"b": 1}]),
        line("churn", later, "r-4", [{"a": 4}]),
    ]
    logs.put_log_events(logGroupName=GROUP, logStreamName="2026/03/04/[$LATEST]abc",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": m} for m in events])
    assert delivered(s3) == {}  # buffered: nothing is written per event
    assert firehose.flush() == 3

    objects = delivered(s3)
    by_prefix = {key.rsplit("/", 1)[0] + "/": records for key, records in objects.items()}
    assert set(by_prefix) == {hour_prefix("churn", at), hour_prefix("fraud", at), hour_prefix("churn", later)}
    assert [r["request_id"] for r in by_prefix[hour_prefix("churn", at)]] == ["r-1", "r-2"]  # one object, in order
    assert by_prefix[hour_prefix("churn", at)][1]["inputs"] == [{"a": 2}, {"a": 3}]
    for key in objects:
        name = key.rsplit("/", 1)[1]
        assert name.startswith("captures-1-") and name.endswith(".gz")


def test_a_buffer_is_delivered_by_itself_once_its_interval_has_passed(aws):
    s3, logs, _ = aws
    at = datetime.now(UTC)
    logs.put_log_events(logGroupName=GROUP, logStreamName="2026/03/04/[$LATEST]abc",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": line("churn", at, "r-1", [])}])
    deadline = time.monotonic() + 10
    while not delivered(s3) and time.monotonic() < deadline:
        time.sleep(0.1)
    (records,) = delivered(s3).values()
    assert [r["request_id"] for r in records] == ["r-1"]


def test_a_record_that_cannot_be_partitioned_goes_to_the_error_prefix(aws):
    s3, _, hose = aws
    payload = gzip.compress(json.dumps({"messageType": "DATA_MESSAGE", "logEvents": [
        {"id": "1", "timestamp": 0, "message": "not json at all"}]}).encode())
    hose.put_record(DeliveryStreamName="captures", Record={"Data": payload})
    hose.put_record(DeliveryStreamName="captures", Record={"Data": b"not gzip"})
    hose.put_record(DeliveryStreamName="captures", Record={"Data": gzip.compress(json.dumps(
        {"messageType": "CONTROL_MESSAGE", "logEvents": [{"message": "CWL CONTROL MESSAGE"}]}).encode())})
    firehose.flush()
    keys = sorted(delivered(s3))
    assert len(keys) == 2 and all(key.startswith("captures/_errors/") for key in keys)
    assert {key.split("/")[2] for key in keys} == {"partitioning-failed", "decompression-failed"}


def test_an_unreadable_pattern_is_refused_when_the_filter_is_created(aws):
    _, logs, hose = aws
    arn = hose.describe_delivery_stream(DeliveryStreamName="captures")["DeliveryStreamDescription"]["DeliveryStreamARN"]
    with pytest.raises(ClientError, match="InvalidParameterException"):
        logs.put_subscription_filter(logGroupName=GROUP, filterName="other", filterPattern="{ $.a > 1 }",
                                     destinationArn=arn, roleArn="arn:aws:iam::123456789012:role/logs")
