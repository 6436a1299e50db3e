"""API Gateway's own refusals through the local gateway: the template's GatewayResponses (status,
static headers, body template with $context.error.*), as API Gateway applies them, and the
platform's refusals in the function's error shape {"error": {"code", "message"}}."""

import json
from types import SimpleNamespace

import pytest

from local.gateway import MAX_PAYLOAD_BYTES, Gateway, gateway_responses_from_template, refusal
from local.template import StackTemplate

KEY = "test-key-value"


class Keys:
    """The API Gateway calls the gateway makes to find a key's usage plan: one key, `rate` per second."""

    def __init__(self, rate: float, burst: int):
        self.plan = {"id": "plan", "throttle": {"rateLimit": rate, "burstLimit": burst}}

    def get_usage_plans(self):
        return {"items": [self.plan]}

    def get_usage_plan_keys(self, usagePlanId):
        return {"items": [{"id": "key-1"}]}

    def get_api_key(self, apiKey, includeValue):
        return {"id": apiKey, "value": KEY, "enabled": True}


class Runtime:
    """A Lambda runtime whose function fails (an unhandled error), so no function code runs."""

    def invoke(self, arn, event):
        return SimpleNamespace(function_error="Unhandled", payload=b"{}")


@pytest.fixture(scope="module")
def platform(template_dict) -> StackTemplate:
    return StackTemplate(name="MlopsPlatform", body=template_dict, attributes={
        lid: {"Arn": f"arn:aws:lambda:us-east-1:123456789012:function:{lid}", "Ref": lid}
        for lid in template_dict["Resources"]})


def handle(template: StackTemplate, method: str, path: str, *, key: str | None = None, body: bytes = b"",
           rate: float = 100.0, burst: int = 100, times: int = 1) -> tuple[int, dict, dict]:
    gateway = Gateway(template, Runtime(), Keys(rate, burst), "127.0.0.1", 0)
    try:
        headers = {"x-api-key": key} if key else {}
        for _ in range(times):
            status, answer_headers, data = gateway.handle(method, f"/{gateway.stage}{path}", headers, body)
    finally:
        gateway.server.server_close()
    return status, answer_headers, json.loads(data)


def error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def test_the_platforms_refusals_are_in_the_functions_error_shape(platform):
    predict = "/v1/models/churn/predict"
    valid = json.dumps({"instances": [{"plan": "basic"}]}).encode()
    assert handle(platform, "GET", "/v2/nothing")[::2] == (404, error("NotFound", "no such route"))
    assert handle(platform, "DELETE", "/v1/models/churn")[::2] == (404, error("NotFound", "no such route"))
    forbidden = error("Forbidden", "no API key in the x-api-key header, or one that is not valid")
    assert handle(platform, "POST", predict, body=valid)[::2] == (403, forbidden)
    assert handle(platform, "POST", predict, key="wrong", body=valid)[::2] == (403, forbidden)
    assert handle(platform, "GET", "/v1/openapi.json")[::2] == (403, forbidden)  # the document needs the key too

    status, headers, body = handle(platform, "POST", predict, key=KEY, body=valid, rate=0.001, burst=1, times=2)
    assert (status, body) == (429, error("Throttled", "too many requests for this API key; retry later"))
    assert headers["Retry-After"] == "1" and headers["Content-Type"] == "application/json"

    oversized = b"x" * (MAX_PAYLOAD_BYTES + 1)
    assert handle(platform, "POST", predict, key=KEY, body=oversized)[::2] == (
        413, error("PayloadTooLarge", "the request body is larger than API Gateway takes (10 MB)"))
    for bad in [b"not json", b'{"instances": []}', b'{"instances": [1]}', b'{"instances": [{}], "x": 1}']:
        assert handle(platform, "POST", predict, key=KEY, body=bad)[::2] == (
            400, error("InvalidInput", 'the body must be {"instances": [{feature: value, ...}, ...]}')), bad
    # The function failed (no answer of its own): DEFAULT_5XX, with API Gateway's status.
    assert handle(platform, "POST", predict, key=KEY, body=valid)[::2] == (502,
                                                                       error("InternalError", "internal error"))


def test_the_platform_configures_each_refusal_the_api_documents(platform):
    kinds = set(gateway_responses_from_template(platform))
    assert {"MISSING_AUTHENTICATION_TOKEN", "INVALID_API_KEY", "THROTTLED", "QUOTA_EXCEEDED", "REQUEST_TOO_LARGE",
            "BAD_REQUEST_BODY", "API_CONFIGURATION_ERROR", "DEFAULT_4XX", "DEFAULT_5XX"} <= kinds


def gateway_response(kind: str, template: str | None, status: str | None = None, headers: dict | None = None) -> dict:
    props: dict = {"ResponseType": kind, "RestApiId": {"Ref": "Api"}}
    if template is not None:
        props["ResponseTemplates"] = {"application/json": template}
    if status:
        props["StatusCode"] = status
    if headers:
        props["ResponseParameters"] = {f"gatewayresponse.header.{k}": v for k, v in headers.items()}
    return {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": props}


def template_with(**responses: dict) -> StackTemplate:
    return StackTemplate(name="Demo", body={"Resources": responses})


def test_a_type_without_its_own_response_takes_the_default_of_its_class_with_its_own_status():
    responses = gateway_responses_from_template(template_with(
        Default4=gateway_response("DEFAULT_4XX", '{"kind": "$context.error.responseType", "said": '
                                                 '$context.error.messageString, "raw": "$context.error.message"}',
                                  headers={"X-Why": "'gateway'"})))
    status, headers, body = refusal(responses, "THROTTLED")
    assert status == 429 and headers == {"Content-Type": "application/json", "X-Why": "gateway"}
    assert json.loads(body) == {"kind": "THROTTLED", "said": "Too Many Requests", "raw": "Too Many Requests"}
    # A 5xx has no DEFAULT_5XX here: API Gateway's own body.
    assert refusal(responses, "DEFAULT_5XX", 502) == (502, {"Content-Type": "application/json"},
                                                      b'{"message": "Internal server error"}')


def test_a_configured_status_replaces_the_types_own():
    responses = gateway_responses_from_template(template_with(
        Missing=gateway_response("MISSING_AUTHENTICATION_TOKEN", '{"m": $context.error.messageString}', status="404")))
    assert refusal(responses, "MISSING_AUTHENTICATION_TOKEN")[::2] == (404, b'{"m": "Missing Authentication Token"}')
    assert refusal({}, "MISSING_AUTHENTICATION_TOKEN")[::2] == (403, b'{"message": "Missing Authentication Token"}')


@pytest.mark.parametrize("template", ['{"id": "$context.requestId"}', '#set($x = 1){}', '{"a": "$input.body"}'])
def test_a_template_beyond_the_error_variables_is_refused_when_loading(template):
    with pytest.raises(ValueError, match="gateway response DEFAULT_4XX: the local gateway serves static mapping"):
        gateway_responses_from_template(template_with(Default4=gateway_response("DEFAULT_4XX", template)))


def test_a_dynamic_header_is_refused_when_loading():
    with pytest.raises(ValueError, match="static response headers only"):
        gateway_responses_from_template(template_with(
            Default4=gateway_response("DEFAULT_4XX", None, headers={"X-Id": "context.requestId"})))
