"""Infrastructure: the loop from drift to retraining. The drift check may announce drift (source
mlops.monitoring only) and put alarms under the stack's model prefix only; a rule on the monitor's events
invokes the retrain function, with retries and a dead-letter queue; the retrain function may read and write
datasets/ and its registry items, and nothing else of the bucket."""

import json

from functions.monitoring.settings import MonitoringSettings
from tests.infra.test_operations import functions_by_handler
from tests.infra.test_stack import resources

RETRAIN = "monitoring.retrain_handler.start_retrain"
DRIFT = "monitoring.handler.check_drift"


def statements_of(template_dict, logical_id: str) -> list[dict]:
    role = functions_by_handler_role(template_dict, logical_id)
    found = []
    for policy in resources(template_dict, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def functions_by_handler_role(template_dict, logical_id: str) -> str:
    return template_dict["Resources"][logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]


def actions(statement: dict) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_a_rule_on_drift_and_decay_events_invokes_the_retrain_function_with_retries_and_a_dead_letter_queue(
        template_dict):
    retrain_id, _ = functions_by_handler(template_dict)[RETRAIN]
    rules = [r for r in resources(template_dict, "AWS::Events::Rule").values()
             if r["Properties"].get("EventPattern", {}).get("source") == ["mlops.monitoring"]]
    (rule,) = rules
    assert rule["Properties"]["EventPattern"]["detail-type"] == ["Model Drift Detected", "Model Quality Degraded"]
    assert "EventBusName" not in rule["Properties"]  # the default bus
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0] == retrain_id
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2 and "DeadLetterConfig" in target
    permissions = [p["Properties"] for p in resources(template_dict, "AWS::Lambda::Permission").values()
                   if p["Properties"]["FunctionName"].get("Fn::GetAtt", [None])[0] == retrain_id]
    assert any(p["Principal"] == "events.amazonaws.com" for p in permissions)


def test_the_monitoring_functions_get_their_settings(template_dict):
    for handler in (RETRAIN, DRIFT):
        _, props = functions_by_handler(template_dict)[handler]
        variables = props["Environment"]["Variables"]
        environ = {name: v if isinstance(v, str) else "arn:aws:resolved-at-deploy" for name, v in variables.items()}
        settings = MonitoringSettings.from_environment(environ)
        assert settings.retrain_cooldown_hours == 6.0 and settings.alarm_prefix.endswith("-model")
        assert variables["ALARM_TOPIC_ARN"] == {"Ref": next(k for k in resources(template_dict, "AWS::SNS::Topic"))}


def test_the_drift_check_may_announce_only_monitoring_events_and_put_only_its_models_alarms(template_dict):
    drift_id, _ = functions_by_handler(template_dict)[DRIFT]
    statements = statements_of(template_dict, drift_id)
    (put_events,) = [s for s in statements if "events:PutEvents" in actions(s)]
    assert put_events["Condition"] == {"StringEquals": {"events:source": "mlops.monitoring"}}
    assert ":event-bus/default" in json.dumps(put_events["Resource"])
    (alarms,) = [s for s in statements if "cloudwatch:PutMetricAlarm" in actions(s)]
    assert actions(alarms) == ["cloudwatch:PutMetricAlarm"] and "-model-*" in json.dumps(alarms["Resource"])


def test_the_retrain_function_writes_datasets_only_and_reads_captures_and_the_tables_it_needs(template_dict):
    retrain_id, _ = functions_by_handler(template_dict)[RETRAIN]
    statements = statements_of(template_dict, retrain_id)
    s3 = [s for s in statements if any(a.startswith("s3:") for a in actions(s))]
    writes = [s for s in s3 if "s3:PutObject" in actions(s)]
    assert writes and all(json.dumps(s["Resource"]).endswith('/datasets/*"]]}') for s in writes), writes
    prefixes = {p for s in s3 for p in ["datasets/", "captures/"] if p in json.dumps(s)}
    assert prefixes == {"datasets/", "captures/"}
    assert all(any(p in json.dumps(s) for p in prefixes) for s in s3)  # nothing else of the bucket
    granted = {a for s in statements for a in actions(s)}
    assert {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "dynamodb:PutItem", "dynamodb:UpdateItem",
            "dynamodb:GetItem", "dynamodb:Query"} <= granted
    assert not {"s3:DeleteObject", "dynamodb:DeleteItem", "states:StartExecution", "events:PutEvents"} & granted
