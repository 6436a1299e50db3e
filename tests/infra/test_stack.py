"""Infrastructure: the synthesized template has every part, with the properties that matter."""

import importlib
import json
import re

import pytest
from aws_cdk.assertions import Match, Template


@pytest.fixture(scope="module")
def template(template_dict) -> Template:
    return Template.from_json(template_dict)


def resources(template_dict, type_: str) -> dict:
    return {k: v for k, v in template_dict["Resources"].items() if v["Type"] == type_}


def test_data_bucket_is_versioned_encrypted_private_and_notifies_eventbridge(template):
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "data-bucket/"}),
        },
    )


def test_every_bucket_denies_plain_http(template_dict):
    policies = resources(template_dict, "AWS::S3::BucketPolicy")
    assert len(policies) == len(resources(template_dict, "AWS::S3::Bucket"))
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


def test_tables_are_on_demand_encrypted_with_point_in_time_recovery(template_dict):
    tables = resources(template_dict, "AWS::DynamoDB::Table")
    assert len(tables) == 4  # datasets, registry, online features, feedback labels
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert [k["AttributeName"] for k in props["KeySchema"]] == ["pk", "sk"]
    ttl = [t for t in tables.values() if "TimeToLiveSpecification" in t["Properties"]]
    assert [t["Properties"]["TimeToLiveSpecification"] for t in ttl] == [
        {"AttributeName": "expires_at", "Enabled": True}
    ]


def pipeline_machine(template_dict, construct: str = "Training") -> tuple[str, dict]:
    """(logical id, resource) of the training pipeline's state machine (or the batch one: construct="Batch")."""
    machines = resources(template_dict, "AWS::StepFunctions::StateMachine")
    (found,) = [(logical_id, machine) for logical_id, machine in machines.items() if logical_id.startswith(construct)]
    return found


def _definition(template_dict, construct: str = "Training") -> dict:
    _, machine = pipeline_machine(template_dict, construct)
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "ARN" for p in parts))  # references are inside strings


def test_pipeline_runs_the_steps_in_order_with_retry_and_catch(template_dict):
    definition = _definition(template_dict)
    states = definition["States"]
    order, name = [], definition["StartAt"]
    while name in states and states[name]["Type"] in {"Task", "Choice"}:
        if name in {"SearchStrategy", "TrainingBackend"}:  # no search, on Lambda (tests/infra/test_training.py)
            name = states[name]["Default"]
            continue
        if states[name]["Type"] == "Choice":  # a run identical to one that succeeded skips to RecordSuccess
            assert name == "AlreadyTrained" and states[name]["Choices"] == [
                {"Variable": "$.dataset.duplicate_of", "IsString": True, "Next": "RecordSuccess"}]
            name = states[name]["Default"]
            continue
        order.append(name)
        name = states[name].get("Next")
    assert order == [
        "RegisterDataset", "ValidateDataset", "BuildFeatures", "PlanTraining", "Train",
        "Evaluate", "RegisterModel", "Promote", "PublishFeatures", "RecordSuccess",
    ]
    for step in order:
        assert "RetryableError" in states[step]["Retry"][0]["ErrorEquals"]
        catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}]
        assert states[step]["Catch"] == catch
    assert states["RecordFailure"]["Next"] == "RunFailed"
    assert states["RunFailed"]["Type"] == "Fail"


def test_pipeline_logs_and_traces(template):
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {"TracingConfiguration": {"Enabled": True}, "LoggingConfiguration": Match.object_like({"Level": "ALL"})},
    )


def test_upload_under_datasets_prefix_starts_the_pipeline(template_dict):
    rules = resources(template_dict, "AWS::Events::Rule").values()
    (rule,) = [r for r in rules if r["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]
               and r["Properties"]["EventPattern"]["detail"]["object"]["key"] == [{"prefix": "datasets/"}]]
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    target = rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]
    command = template_dict["Resources"][target]["Properties"]["ImageConfig"]["Command"]
    assert command == ["functions.training.handler.start_pipeline"]


def test_drift_check_runs_on_a_schedule(template_dict):
    rules = resources(template_dict, "AWS::Events::Rule").values()
    (rule,) = [r for r in rules if "ScheduleExpression" in r["Properties"]]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    target = rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]
    command = template_dict["Resources"][target]["Properties"]["ImageConfig"]["Command"]
    assert command == ["functions.monitoring.handler.check_drift"]


def test_functions_are_container_images_with_tracing_and_their_own_roles(template_dict):
    functions = resources(template_dict, "AWS::Lambda::Function")
    assert len(functions) >= 11
    roles = set()
    for fn in functions.values():
        props = fn["Properties"]
        assert props["PackageType"] == "Image"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert "DATA_BUCKET" in props["Environment"]["Variables"]
        roles.add(props["Role"]["Fn::GetAtt"][0])
    assert len(roles) == len(functions), "each function has a least-privilege role of its own"


def test_every_function_gets_the_settings_its_handler_requires(template_dict):
    from functions.settings import Settings, StarterSettings

    for fn in resources(template_dict, "AWS::Lambda::Function").values():
        (command,) = fn["Properties"]["ImageConfig"]["Command"]
        model = StarterSettings if command.endswith(".start_pipeline") else Settings
        variables = fn["Properties"]["Environment"]["Variables"]
        # Names of resources are CloudFormation references here, resolved at deploy time.
        environ = {name: v if isinstance(v, str) else "arn:aws:resolved-at-deploy" for name, v in variables.items()}
        model.from_environment(environ)


def test_every_handler_in_the_template_exists(template_dict):
    for fn in resources(template_dict, "AWS::Lambda::Function").values():
        (command,) = fn["Properties"]["ImageConfig"]["Command"]
        module, _, name = command.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), command


def test_api_routes_need_an_api_key_except_health(template_dict):
    paths = {}
    api_resources = resources(template_dict, "AWS::ApiGateway::Resource")
    for method in resources(template_dict, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        segments, ref = [], props["ResourceId"]["Ref"]
        while ref in api_resources:
            segments.insert(0, api_resources[ref]["Properties"]["PathPart"])
            parent = api_resources[ref]["Properties"]["ParentId"]
            ref = parent.get("Ref") if isinstance(parent, dict) else None
        paths[(props["HttpMethod"], "/" + "/".join(segments))] = props.get("ApiKeyRequired", False)
    assert paths == {
        ("GET", "/health"): False,
        ("GET", "/v1/openapi.json"): True,
        ("GET", "/v1/models/{name}"): True,
        ("POST", "/v1/models/{name}/predict"): True,
        ("POST", "/v1/models/{name}/feedback"): True,
    }


def test_health_is_a_mock_integration_that_invokes_no_function(template_dict):
    api_resources = resources(template_dict, "AWS::ApiGateway::Resource")
    (health_id,) = [k for k, v in api_resources.items() if v["Properties"]["PathPart"] == "health"]
    (method,) = [m["Properties"] for m in resources(template_dict, "AWS::ApiGateway::Method").values()
                 if m["Properties"]["ResourceId"] == {"Ref": health_id}]
    integration = method["Integration"]
    assert integration["Type"] == "MOCK" and "Uri" not in integration
    assert json.loads(integration["RequestTemplates"]["application/json"]) == {"statusCode": 200}
    (response,) = integration["IntegrationResponses"]
    assert response["StatusCode"] == "200" and "SelectionPattern" not in response
    assert json.loads(response["ResponseTemplates"]["application/json"]) == {"status": "ok"}
    assert method["MethodResponses"] == [{"StatusCode": "200"}]
    assert not method.get("ApiKeyRequired")
    # No function may be invoked for it: no permission names the route.
    for permission in resources(template_dict, "AWS::Lambda::Permission").values():
        assert "/health" not in json.dumps(permission["Properties"].get("SourceArn", "")), permission


def _stage_throttle(template_dict) -> tuple[float, int]:
    (stage,) = resources(template_dict, "AWS::ApiGateway::Stage").values()
    (default,) = [m for m in stage["Properties"]["MethodSettings"] if m["ResourcePath"] == "/*"
                  and m["HttpMethod"] == "*"]
    return default["ThrottlingRateLimit"], default["ThrottlingBurstLimit"]


def test_api_is_throttled_per_stage_and_per_key_below_the_stage(template, template_dict):
    from infra.settings import PlatformSettings

    defaults = PlatformSettings()
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "TracingEnabled": True,
            "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
            "MethodSettings": Match.array_with([Match.object_like({
                "ThrottlingRateLimit": defaults.api_rate_limit, "ThrottlingBurstLimit": defaults.api_burst_limit,
            })]),
        },
    )
    (plan,) = resources(template_dict, "AWS::ApiGateway::UsagePlan").values()
    throttle = plan["Properties"]["Throttle"]
    assert throttle == {"RateLimit": defaults.api_key_rate_limit, "BurstLimit": defaults.api_key_burst_limit}
    stage_rate, stage_burst = _stage_throttle(template_dict)
    # One key cannot use the whole stage.
    assert throttle["RateLimit"] < stage_rate and throttle["BurstLimit"] < stage_burst
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)


@pytest.mark.parametrize("settings, message", [
    ({"api_key_rate_limit": 101}, "api_key_rate_limit (101.0) is more than the stage's api_rate_limit (100.0)"),
    ({"api_key_burst_limit": 300}, "api_key_burst_limit (300) is more than the stage's api_burst_limit (200)"),
    ({"api_rate_limit": 20}, "api_key_rate_limit (50.0) is more than the stage's api_rate_limit (20.0)"),
])
def test_a_key_throttled_above_the_stage_is_refused_by_the_settings(settings, message):
    from pydantic import ValidationError

    from infra.settings import PlatformSettings

    with pytest.raises(ValidationError, match=re.escape(message)):
        PlatformSettings.from_context(settings)
    assert PlatformSettings.from_context({"api_key_rate_limit": 100, "api_key_burst_limit": 200})  # equal is allowed


def test_alarms_cover_serving_errors_latency_drift_and_failed_runs(template_dict):
    metrics = {}
    for alarm in resources(template_dict, "AWS::CloudWatch::Alarm").values():
        math = [q["MetricStat"]["Metric"]["MetricName"] for q in alarm["Properties"].get("Metrics", [])
                if "MetricStat" in q]  # metric math: the metrics it combines
        metrics[" + ".join(sorted(math)) or alarm["Properties"]["MetricName"]] = alarm["Properties"]
    assert set(metrics) == {"5XXError", "Latency", "DriftDetected", "ApproximateNumberOfMessagesVisible",
                            "ExecutionsAborted + ExecutionsFailed + ExecutionsTimedOut",
                            "ModelErrors", "ModelLatency", "Errors"}  # a roll-out's challenger; the live alias
    assert metrics["DriftDetected"]["Namespace"] == "Mlops"
    for alarm in metrics.values():
        assert alarm["AlarmActions"], "every alarm notifies the alarm topic"


def test_dashboard_shows_every_stage(template_dict):
    (dashboard,) = resources(template_dict, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in ["Predictions", "Latency", "Pipeline runs", "Drift", "Alarms"]:
        assert title in body
    # Per-model drift needs no redeploy when a model is added: a search over the model dimension.
    search = body[body.index("SEARCH('{Mlops,model,service}"):]
    assert search[:120].count("DriftScore") == 1
