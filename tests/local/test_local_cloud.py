"""The local cloud's own parts: template resolution, deployment, routes, schedules."""

import json

import boto3
import pytest
from moto import mock_aws

from local.deploy import Deployer
from local.gateway import Gateway, TokenBucket, routes_from_template
from local.runtime import FunctionConfig, LambdaRuntime
from local.schedules import rate_seconds, scheduled_event
from local.template import StackTemplate


def make_template(resources: dict, outputs: dict | None = None) -> StackTemplate:
    return StackTemplate(name="Demo", body={"Resources": resources, "Outputs": outputs or {}})


def test_intrinsics_resolve_against_created_resources():
    t = make_template({"B": {"Type": "AWS::S3::Bucket"}})
    t.attributes["B"] = {"Ref": "demo-b", "Arn": "arn:aws:s3:::demo-b"}
    assert t.resolve({"Ref": "B"}) == "demo-b"
    assert t.resolve({"Fn::GetAtt": ["B", "Arn"]}) == "arn:aws:s3:::demo-b"
    joined = {"Fn::Join": ["/", [{"Fn::GetAtt": ["B", "Arn"]}, "datasets/*"]]}
    assert t.resolve(joined) == "arn:aws:s3:::demo-b/datasets/*"
    assert t.resolve({"Fn::Sub": "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/x"}) == (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/x"
    )
    assert t.resolve({"Fn::Sub": ["${Name}-${B.Arn}", {"Name": {"Ref": "B"}}]}) == "demo-b-arn:aws:s3:::demo-b"
    assert t.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"


def test_unknown_attribute_is_a_clear_error():
    with pytest.raises(KeyError, match="Missing.Arn"):
        make_template({}).resolve({"Fn::GetAtt": ["Missing", "Arn"]})


def test_resources_are_created_after_what_they_refer_to():
    t = make_template(
        {
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}}},
            "Policy": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Role"}]}, "DependsOn": "Table"},
            "Role": {"Type": "AWS::IAM::Role"},
            "Table": {"Type": "AWS::DynamoDB::Table"},
        }
    )
    order = [r.logical_id for r in t.creation_order()]
    assert order.index("Role") < order.index("Fn")
    assert order.index("Table") < order.index("Policy")


def test_circular_references_are_refused():
    t = make_template({"A": {"Type": "X", "Properties": {"P": {"Ref": "B"}}},
                       "B": {"Type": "X", "Properties": {"P": {"Ref": "A"}}}})
    with pytest.raises(ValueError, match="circular"):
        t.creation_order()


def test_routes_come_from_the_template(template_dict):
    stage, routes = routes_from_template(StackTemplate(name="MlopsPlatform", body=template_dict, attributes={
        lid: {"Arn": f"arn:aws:lambda:us-east-1:123456789012:function:{lid}", "Ref": lid}
        for lid in template_dict["Resources"]
    }))
    assert stage == "prod"
    table = {(r.method, r.resource): r for r in routes}
    predict = table[("POST", "/v1/models/{name}/predict")]
    assert predict.api_key_required and predict.body_validator.schema["required"] == ["instances"]
    assert predict.pattern.match("/v1/models/churn/predict").group("name") == "churn"
    assert not predict.pattern.match("/v1/models/a/b/predict")
    assert not table[("GET", "/health")].api_key_required


def test_token_bucket_allows_the_burst_then_throttles():
    bucket = TokenBucket(rate=0.001, burst=3)
    assert [bucket.take() for _ in range(5)] == [True, True, True, False, False]


@pytest.mark.parametrize("expression, seconds", [
    ("rate(1 hour)", 3600), ("rate(5 minutes)", 300), ("rate(2 days)", 172800), ("cron(0 * * * ? *)", None),
])
def test_rate_expressions(expression, seconds):
    assert rate_seconds(expression) == seconds


def test_scheduled_event_has_the_documented_shape():
    event = scheduled_event("arn:aws:events:us-east-1:123456789012:rule/r", "123456789012", "us-east-1")
    assert event["source"] == "aws.events" and event["detail-type"] == "Scheduled Event"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/r"]


def test_the_bucket_policy_keeps_every_statement_but_the_tls_only_one():
    tls_only = {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    no_deletes = {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:DeleteBucket",
                  "Resource": "arn:aws:s3:::demo-b"}
    t = make_template({
        "B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "demo-b"}},
        "P": {"Type": "AWS::S3::BucketPolicy", "Properties": {
            "Bucket": {"Ref": "B"}, "PolicyDocument": {"Version": "2012-10-17", "Statement": [tls_only, no_deletes]}}},
    })
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        Deployer(t, session, None, LambdaRuntime({})).deploy()
        policy = json.loads(session.client("s3").get_bucket_policy(Bucket="demo-b")["Policy"])
    assert policy["Statement"] == [no_deletes]


def test_a_functions_reserved_concurrency_is_deployed() -> None:
    t = make_template({
        "Role": {"Type": "AWS::IAM::Role",
                 "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []}}},
        "Fn": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": "demo-fn", "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "PackageType": "Image",
            "Code": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/fn:latest"},
            "ImageConfig": {"Command": ["functions.data.handler.register_dataset"]},
            "ReservedConcurrentExecutions": 2, "Environment": {"Variables": {"A": "1"}}}},
    })
    runtime = LambdaRuntime({}, preload=[])
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        Deployer(t, session, None, runtime).deploy()
        reserved = session.client("lambda").get_function_concurrency(FunctionName="demo-fn")
    runtime.stop()
    assert reserved["ReservedConcurrentExecutions"] == 2
    deployed = runtime.functions["demo-fn"]
    assert (deployed.reserved_concurrency, deployed.concurrency, deployed.environment) == (2, 2, {"A": "1"})
    assert deployed.log_group == "/aws/lambda/demo-fn"


def test_a_throttled_integration_is_api_gateways_500() -> None:
    lambda_arn = "arn:aws:lambda:us-east-1:123456789012:function:health"
    uri = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{lambda_arn}/invocations"
    t = make_template({
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "api"}},
        "Health": {"Type": "AWS::ApiGateway::Resource",
                   "Properties": {"PathPart": "health", "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]}}},
        "Get": {"Type": "AWS::ApiGateway::Method", "Properties": {
            "HttpMethod": "GET", "ResourceId": {"Ref": "Health"},
            "Integration": {"Uri": uri}}},
        "Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {"StageName": "prod"}},
    })
    runtime = LambdaRuntime({}, preload=[])
    runtime.register(FunctionConfig("health", lambda_arn, "tests.local.handlers.echo_env", {}, reserved_concurrency=0))
    gateway = Gateway(t, runtime, None, "127.0.0.1", 0)
    try:
        status, _, body = gateway.handle("GET", "/prod/health", {}, b"")
    finally:
        gateway.server.server_close()
        runtime.stop()
    assert (status, json.loads(body)) == (500, {"message": "Internal server error"})


@pytest.fixture(scope="module")
def deployed(template_dict):
    """The platform's template deployed on moto in this process (functions registered, never run)."""
    runtime = LambdaRuntime({}, preload=[])
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        outputs = Deployer(StackTemplate(name="MlopsPlatform", body=template_dict), session, None, runtime).deploy()
        yield session, outputs, runtime
    runtime.stop()


def test_the_alarm_topic_is_encrypted_with_its_own_rotating_key(deployed):
    session, outputs, _ = deployed
    topic = session.client("sns").get_topic_attributes(TopicArn=outputs["AlarmTopicArn"])["Attributes"]
    key_id = topic["KmsMasterKeyId"]
    kms = session.client("kms")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyManager"] == "CUSTOMER"
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    assert any(s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} for s in policy["Statement"])


def test_asynchronous_paths_lead_to_the_dead_letter_queue(deployed):
    session, outputs, runtime = deployed
    queue = session.client("sqs").get_queue_attributes(QueueUrl=outputs["FailedEventsQueueUrl"],
                                                       AttributeNames=["All"])["Attributes"]
    assert queue["SqsManagedSseEnabled"] == "true" and "aws:SecureTransport" in queue["Policy"]
    events = session.client("events")
    for rule in events.list_rules()["Rules"]:
        for target in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]:
            assert target["DeadLetterConfig"]["Arn"] == queue["QueueArn"], rule["Name"]
            config = session.client("lambda").get_function_event_invoke_config(FunctionName=target["Arn"])
            assert config["DestinationConfig"]["OnFailure"]["Destination"] == queue["QueueArn"]
            deployed_config = runtime.resolve(target["Arn"])  # and the local runtime acts on it
            assert (deployed_config.on_failure, deployed_config.max_retry_attempts) == (queue["QueueArn"],
                                                                                      config["MaximumRetryAttempts"])
    alarms = session.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert any(a.get("MetricName") == "ApproximateNumberOfMessagesVisible" for a in alarms)
    assert runtime.functions[outputs["DriftFunctionName"]].reserved_concurrency is not None


def test_retention_rules_and_deletion_protection_are_deployed(deployed):
    session, outputs, _ = deployed
    rules = session.client("s3").get_bucket_lifecycle_configuration(Bucket=outputs["DataBucketName"])["Rules"]
    expiring = {r["Filter"]["Prefix"]: r for r in rules if "Expiration" in r}
    assert set(expiring) == {"captures/", "reports/", "runs/"}
    assert all("NoncurrentVersionExpiration" in r for r in expiring.values())
    for table in ("RegistryTableName", "DatasetsTableName", "FeaturesTableName"):
        described = session.client("dynamodb").describe_table(TableName=outputs[table])["Table"]
        assert described["DeletionProtectionEnabled"] is True


def test_the_failed_runs_alarm_is_deployed_with_its_metric_math(deployed):
    session, _, _ = deployed
    alarms = session.client("cloudwatch").describe_alarms()["MetricAlarms"]
    (failures,) = [a for a in alarms if a.get("Metrics")]
    names = {q["MetricStat"]["Metric"]["MetricName"] for q in failures["Metrics"] if "MetricStat" in q}
    assert names == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
