"""Feedback in the template: the labels table and its index, the route's own function and role, the file trigger,
and the drift check's read access."""

import json
import re

from functions.feedback.dynamo import RECEIVED_INDEX
from functions.feedback.settings import FeedbackSettings
from tests.infra.test_stack import resources


def function_id(template_dict, handler: str, prefix: str = "") -> str:
    (found,) = [k for k, v in resources(template_dict, "AWS::Lambda::Function").items()
                if v["Properties"]["ImageConfig"]["Command"] == [handler] and k.startswith(prefix)]
    return found


def statements(template_dict, function: str) -> list[dict]:
    role = template_dict["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [s for p in resources(template_dict, "AWS::IAM::Policy").values()
            if {"Ref": role} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]


def actions(statement: dict) -> set[str]:
    return set(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])


def labels_table(template_dict) -> str:
    (table,) = [k for k in resources(template_dict, "AWS::DynamoDB::Table") if k.startswith("FeedbackLabels")]
    return table


def touches(statement: dict, logical_id: str) -> bool:
    return logical_id in json.dumps(statement["Resource"])


def test_labels_are_keyed_by_model_and_row_with_an_index_by_arrival(template_dict):
    table = template_dict["Resources"][labels_table(template_dict)]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == RECEIVED_INDEX and index["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "received_at", "KeyType": "RANGE"}]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_the_feedback_route_runs_its_own_function_behind_the_key(template_dict):
    api = function_id(template_dict, "functions.serving.handler.feedback", "FeedbackFeedbackApi")
    predict = function_id(template_dict, "functions.serving.handler.handler", "ServingPredict")
    api_resources = resources(template_dict, "AWS::ApiGateway::Resource")
    (route,) = [k for k, v in api_resources.items() if v["Properties"]["PathPart"] == "feedback"]
    (method,) = [m["Properties"] for m in resources(template_dict, "AWS::ApiGateway::Method").values()
                 if m["Properties"]["ResourceId"] == {"Ref": route}]
    assert method["HttpMethod"] == "POST" and method["ApiKeyRequired"] is True
    assert api in json.dumps(method["Integration"]["Uri"]) and predict not in json.dumps(method["Integration"]["Uri"])
    FeedbackSettings.from_environment({k: v if isinstance(v, str) else "resolved-at-deploy" for k, v in
                                       template_dict["Resources"][api]["Properties"]["Environment"]["Variables"]
                                       .items()})


def test_least_privilege_who_writes_and_who_reads_labels(template_dict):
    table = labels_table(template_dict)
    api = function_id(template_dict, "functions.serving.handler.feedback", "FeedbackFeedbackApi")
    predict = function_id(template_dict, "functions.serving.handler.handler", "ServingPredict")
    files = function_id(template_dict, "functions.feedback.handler.ingest_label_file")
    drift = function_id(template_dict, "functions.monitoring.handler.check_drift")
    on_labels = {fn: set().union(*[actions(s) for s in statements(template_dict, fn) if touches(s, table)])
                 for fn in (api, predict, files, drift)}
    assert on_labels[api] == on_labels[files] == {"dynamodb:PutItem", "dynamodb:BatchGetItem"}
    assert on_labels[predict] == set()  # the predict role cannot write labels
    assert on_labels[drift] == {"dynamodb:Query"}
    assert not any(a.startswith("s3:") for s in statements(template_dict, api) for a in actions(s))
    s3 = {(a, re.search(r'"/([^"]*)"', json.dumps(s["Resource"])).group(1)) for s in statements(template_dict, files)
          for a in actions(s) if a.startswith("s3:")}
    assert s3 == {("s3:GetObject", "feedback/*"), ("s3:GetObjectVersion", "feedback/*"),
                  ("s3:PutObject", "feedback-results/*")}
    variables = template_dict["Resources"][drift]["Properties"]["Environment"]["Variables"]
    assert variables[FeedbackSettings.variable("feedback_table")] == {"Ref": table}


def test_a_file_under_feedback_is_stored_by_the_file_function(template_dict):
    files = function_id(template_dict, "functions.feedback.handler.ingest_label_file")
    (rule,) = [r["Properties"] for r in resources(template_dict, "AWS::Events::Rule").values()
               if files in json.dumps(r["Properties"].get("Targets"))]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "feedback/"}]
    (target,) = rule["Targets"]
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 4
