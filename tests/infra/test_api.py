"""The REST API's contract in the template: API Gateway's request model is the handler's own
pydantic model, and API Gateway's refusals answer in the function's error shape."""

import json

from functions.serving.contract import PredictRequest
from tests.infra.test_stack import resources


def test_the_predict_request_model_is_the_handlers_pydantic_model(template_dict):
    (model,) = resources(template_dict, "AWS::ApiGateway::Model").values()
    schema = dict(model["Properties"]["Schema"])
    assert schema.pop("$schema") == "http://json-schema.org/draft-04/schema#"
    assert schema == PredictRequest.model_json_schema()


def test_gateway_responses_use_the_functions_error_shape(template_dict):
    responses = {r["Properties"]["ResponseType"]: r["Properties"]
                 for r in resources(template_dict, "AWS::ApiGateway::GatewayResponse").values()}
    assert set(responses) == {"MISSING_AUTHENTICATION_TOKEN", "INVALID_API_KEY", "THROTTLED", "QUOTA_EXCEEDED",
                              "REQUEST_TOO_LARGE", "BAD_REQUEST_BODY", "API_CONFIGURATION_ERROR", "DEFAULT_4XX",
                              "DEFAULT_5XX"}
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"  # an unknown route is a 404
    assert responses["THROTTLED"]["ResponseParameters"] == {"gatewayresponse.header.Retry-After": "'1'"}
    for kind, props in responses.items():
        template = props["ResponseTemplates"]["application/json"]
        # Rendered as API Gateway renders it ($context.error.messageString is a quoted JSON string).
        rendered = (template.replace("$context.error.messageString", json.dumps("Some message"))
                    .replace("$context.error.responseType", kind))
        body = json.loads(rendered)
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, kind
        assert all(isinstance(v, str) and v for v in body["error"].values()), kind


def test_the_openapi_document_is_served_by_the_function_behind_the_key(template_dict):
    api_resources = resources(template_dict, "AWS::ApiGateway::Resource")
    (document,) = [k for k, v in api_resources.items() if v["Properties"]["PathPart"] == "openapi.json"]
    (method,) = [m["Properties"] for m in resources(template_dict, "AWS::ApiGateway::Method").values()
                 if m["Properties"]["ResourceId"] == {"Ref": document}]
    assert method["HttpMethod"] == "GET" and method["ApiKeyRequired"] is True
    assert method["Integration"]["Type"] == "AWS_PROXY"
