"""The roll-outs in the template: the challenger's alarms, the rule that rolls back, the bake state machine,
and the predict function's code deployed through its `live` alias by CodeDeploy under the same alarms."""

import json

from infra.settings import PlatformSettings
from tests.infra.test_operations import functions_by_handler, getatt
from tests.infra.test_stack import resources


def by_prefix(template_dict, type_: str, prefix: str) -> tuple[str, dict]:
    ((logical_id, resource),) = [(k, v) for k, v in resources(template_dict, type_).items() if k.startswith(prefix)]
    return logical_id, resource["Properties"]


def test_the_challenger_alarms_read_its_metrics_per_period_and_alarm_on_one(template_dict):
    settings = PlatformSettings()
    _, errors = by_prefix(template_dict, "AWS::CloudWatch::Alarm", "RolloutsChallengerErrors")
    _, latency = by_prefix(template_dict, "AWS::CloudWatch::Alarm", "RolloutsChallengerLatency")
    for alarm in (errors, latency):
        assert alarm["Namespace"] == "Mlops"
        assert alarm["Dimensions"] == [{"Name": "variant", "Value": "challenger"}]
        assert alarm["Period"] == settings.rollout_alarm_period_seconds == 60
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (1, 1)
        assert alarm["TreatMissingData"] == "notBreaching" and alarm["AlarmActions"]
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert (errors["MetricName"], errors["Statistic"], errors["Threshold"]) == ("ModelErrors", "Average", 0.05)
    assert (latency["MetricName"], latency["ExtendedStatistic"], latency["Threshold"]) == ("ModelLatency", "p90",
                                                                                         500)


def test_an_alarm_going_to_alarm_invokes_the_rollout_function(template_dict):
    errors_id, _ = by_prefix(template_dict, "AWS::CloudWatch::Alarm", "RolloutsChallengerErrors")
    latency_id, _ = by_prefix(template_dict, "AWS::CloudWatch::Alarm", "RolloutsChallengerLatency")
    _, rule = by_prefix(template_dict, "AWS::Events::Rule", "RolloutsChallengerAlarm")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.cloudwatch"] and pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    assert pattern["detail"] == {"state": {"value": ["ALARM"]}}
    assert sorted(getatt(r) for r in pattern["resources"]) == sorted([errors_id, latency_id])
    (target,) = rule["Targets"]
    function_id, _ = functions_by_handler(template_dict)["rollout.handler.handler"]
    assert getatt(target["Arn"]) == function_id and target["DeadLetterConfig"]


def test_the_bake_waits_for_its_end_then_asks_the_function_with_the_alarms(template_dict):
    _, machine = by_prefix(template_dict, "AWS::StepFunctions::StateMachine", "RolloutsBakeStateMachine")
    parts = machine["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else json.dumps(p) for p in parts)
    assert '"Type":"Wait"' in text and '"TimestampPath":"$.bake_ends_at"' in text
    assert '"action":"bake_end"' in text and "RolloutsChallengerErrors" in text and "RolloutsChallengerLatency" in text


def test_the_api_invokes_the_live_alias_which_codedeploy_shifts_under_the_alarms(template_dict):
    alias_id, alias = by_prefix(template_dict, "AWS::Lambda::Alias", "ServingLive")
    assert alias["Name"] == "live"
    # The feedback route has its own function; the predict routes go through the alias.
    uris = [m["Properties"]["Integration"]["Uri"] for m in resources(template_dict, "AWS::ApiGateway::Method").values()
            if "Uri" in m["Properties"].get("Integration", {})
            and "FeedbackFeedbackApi" not in json.dumps(m["Properties"]["Integration"]["Uri"])]
    assert uris and all({"Ref": alias_id} in uri["Fn::Join"][1] for uri in uris)
    _, group = by_prefix(template_dict, "AWS::CodeDeploy::DeploymentGroup", "RolloutsPredictDeployment")
    assert group["DeploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
    alarms = {a["Name"]["Ref"].rstrip("0123456789ABCDEF") for a in group["AlarmConfiguration"]["Alarms"]}
    assert alarms == {"RolloutsLiveErrors", "MonitoringServingErrors", "MonitoringServingLatency",
                      "RolloutsChallengerErrors", "RolloutsChallengerLatency"}
    template = json.dumps(template_dict["Resources"][alias_id])
    assert "CodeDeployLambdaAliasUpdate" in template
