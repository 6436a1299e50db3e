"""Infrastructure: capture delivery (predict log group -> subscription -> Firehose -> S3), and its roles."""

import json

from functions.serving.capture import FILTER_PATTERN, PARTITION_QUERY


def of_type(template_dict, type_: str) -> dict:
    return {k: v for k, v in template_dict["Resources"].items() if v["Type"] == type_}


def statements_of(template_dict, role_id: str) -> list[dict]:
    return [s for policy in of_type(template_dict, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for s in policy["Properties"]["PolicyDocument"]["Statement"]]


def actions(statement: dict) -> set[str]:
    value = statement["Action"]
    return {value} if isinstance(value, str) else set(value)


def delivery_stream(template_dict) -> tuple[str, dict]:
    ((logical_id, stream),) = of_type(template_dict, "AWS::KinesisFirehose::DeliveryStream").items()
    return logical_id, stream["Properties"]


def test_the_stream_partitions_by_model_and_hour_batches_and_compresses(template_dict):
    _, props = delivery_stream(template_dict)
    assert props["DeliveryStreamType"] == "DirectPut"
    assert props["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}
    s3 = props["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"] == ("captures/!{partitionKeyFromQuery:model}/dt=!{partitionKeyFromQuery:dt}/"
                            "hour=!{partitionKeyFromQuery:hour}/")
    assert s3["ErrorOutputPrefix"].startswith("captures/_errors/!{firehose:error-output-type}/")
    assert s3["CompressionFormat"] == "GZIP" and s3["FileExtension"] == ".gz"
    assert s3["BufferingHints"] == {"IntervalInSeconds": 60, "SizeInMBs": 64}
    assert s3["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True
    processors = {p["Type"]: {q["ParameterName"]: q["ParameterValue"] for q in p.get("Parameters", [])}
                  for p in s3["ProcessingConfiguration"]["Processors"]}
    assert s3["ProcessingConfiguration"]["Enabled"] is True
    assert processors == {
        "Decompression": {"CompressionFormat": "GZIP"},
        "CloudWatchLogProcessing": {"DataMessageExtraction": "true"},
        "MetadataExtraction": {"MetadataExtractionQuery": PARTITION_QUERY, "JsonParsingEngine": "JQ-1.6"},
        "AppendDelimiterToRecord": {},
    }


def test_the_predict_functions_capture_lines_and_only_they_go_to_the_stream(template_dict):
    stream_id, _ = delivery_stream(template_dict)
    ((_, subscription),) = of_type(template_dict, "AWS::Logs::SubscriptionFilter").items()
    props = subscription["Properties"]
    assert props["FilterPattern"] == FILTER_PATTERN
    assert props["DestinationArn"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    group_id = props["LogGroupName"]["Ref"]
    functions = [f for f in of_type(template_dict, "AWS::Lambda::Function").values()
                 if f["Properties"]["ImageConfig"]["Command"] == ["functions.serving.handler.handler"]]
    (predict,) = functions
    assert predict["Properties"]["LoggingConfig"]["LogGroup"] == {"Ref": group_id}


def test_logs_may_only_put_records_into_the_stream(template_dict):
    stream_id, _ = delivery_stream(template_dict)
    ((_, subscription),) = of_type(template_dict, "AWS::Logs::SubscriptionFilter").items()
    role_id = subscription["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    role = template_dict["Resources"][role_id]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "logs.amazonaws.com"}
    assert "aws:SourceArn" in trust["Condition"]["StringLike"]
    (statement,) = statements_of(template_dict, role_id)
    assert actions(statement) == {"firehose:PutRecord", "firehose:PutRecordBatch"}
    assert statement["Resource"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    assert any(role_id in dep or dep.startswith(role_id) for dep in subscription["DependsOn"])


def test_firehose_may_only_write_objects_under_captures(template_dict):
    _, props = delivery_stream(template_dict)
    role_id = props["ExtendedS3DestinationConfiguration"]["RoleARN"]["Fn::GetAtt"][0]
    (trust,) = template_dict["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "AWS::AccountId"}}}
    granted = statements_of(template_dict, role_id)
    writes = [s for s in granted if actions(s) & {"s3:PutObject"}]
    (write,) = writes
    assert actions(write) == {"s3:PutObject", "s3:AbortMultipartUpload"}
    assert json.dumps(write["Resource"]).endswith('"/captures/*"]]}')
    everything = set().union(*(actions(s) for s in granted))
    assert everything == {"s3:PutObject", "s3:AbortMultipartUpload", "s3:GetBucketLocation",
                          "s3:ListBucketMultipartUploads", "logs:PutLogEvents"}


def test_the_predict_function_writes_nothing_to_s3(template_dict):
    """Captures leave as log lines: the predict role reads models, and writes no object anywhere."""
    roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in of_type(template_dict, "AWS::Lambda::Function").values()
             if f["Properties"]["ImageConfig"]["Command"] == ["functions.serving.handler.handler"]]
    (role_id,) = roles
    granted = statements_of(template_dict, role_id)
    assert not [s for s in granted if any(a.startswith("s3:Put") or a == "s3:*" for a in actions(s))]
    assert "captures/" not in json.dumps(granted)
