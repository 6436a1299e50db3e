"""The API against its own OpenAPI document, over HTTP on the local cloud: schemathesis generates
requests from the document the API serves (schema-conforming ones, and ones that break it), and
every answer must be no 5xx, a documented status, the documented content type and the documented
body. Bounded: a fixed number of examples per operation, derandomized, so it is the same every run
and takes seconds."""

import time
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25  # per operation, generation mode and model name (150 found nothing more, in 22 s)
RATE = 1_000.0  # the test's own key: its requests are never throttled, nor do they throttle other tests' key


@pytest.fixture(scope="module")
def own_key(aws, local_cloud) -> str:
    """An API key of its own, in a usage plan of its own on the API's stage, made with plain boto3."""
    apigateway = aws("apigateway")
    (stage_plan,) = apigateway.get_usage_plans()["items"]
    plan = apigateway.create_usage_plan(name=f"openapi-{uuid.uuid4().hex[:8]}", apiStages=stage_plan["apiStages"],
                                        throttle={"rateLimit": RATE, "burstLimit": int(RATE)})
    value = f"openapi-{uuid.uuid4().hex}"
    key = apigateway.create_api_key(name=value, value=value, enabled=True)
    apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    deadline = time.monotonic() + 30  # the gateway reads keys again every 5 s
    while requests.get(local_cloud["ApiUrl"] + "v1/openapi.json", headers={"x-api-key": value},
                       timeout=60).status_code == 403:
        assert time.monotonic() < deadline, "the new key was never accepted"
        time.sleep(0.5)
    return value


def explore(strategy, call) -> None:
    """`call` on EXAMPLES cases of `strategy`, the same ones every run (hypothesis shrinks a failure)."""
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case) -> None:
        call(case)

    check()


@pytest.fixture(scope="module")
def document(local_cloud, own_key) -> dict:
    response = requests.get(local_cloud["ApiUrl"] + "v1/openapi.json", headers={"x-api-key": own_key}, timeout=60)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "max-age=300"
    return response.json()


def test_the_document_is_served_behind_the_key_in_the_error_shape(api):
    response = api("GET", "/v1/openapi.json", key=False)
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "Forbidden",
                                         "message": "no API key in the x-api-key header, or one that is not valid"}}
    unknown = api("GET", "/v1/nothing/here")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NotFound"


def test_every_answer_of_the_api_is_one_its_document_describes(local_cloud, trained_model, own_key, document):
    assert document["servers"] == [{"url": f"/{local_cloud['ApiUrl'].rstrip('/').rsplit('/', 1)[1]}"}]
    schema = schemathesis.openapi.from_dict(document)
    base_url = local_cloud["ApiUrl"].rstrip("/")
    headers = {"x-api-key": own_key}
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}

    def run(operation, case) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        statuses.setdefault(operation.label, set()).add(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)

    for result in schema.get_all_operations():
        operation = result.ok()
        strategies = []
        # Requests that break the document too, where there is something to break (a name, a body).
        modes = list(GenerationMode) if "{name}" in operation.path else [GenerationMode.POSITIVE]
        for mode in modes:
            strategies.append(operation.as_strategy(generation_mode=mode))
            if "{name}" in operation.path:  # the trained model too: random names are almost all unknown
                strategies.append(operation.as_strategy(generation_mode=mode,
                                                        path_parameters={"name": trained_model}))
        for strategy in strategies:
            try:
                explore(strategy, lambda case, operation=operation: run(operation, case))
            except (AssertionError, BaseExceptionGroup) as error:  # schemathesis' failures: each one reported
                failures.append(f"{operation.label}: {error!r}")

    # The document's own example, on the trained model: a 200 that must match the documented answer.
    predict = schema["/v1/models/{name}/predict"]["POST"]
    (example,) = document["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"][
        "application/json"]["examples"].values()
    run(predict, predict.Case(path_parameters={"name": trained_model}, body=example["value"],
                              media_type="application/json"))

    assert failures == [], "\n\n".join(failures)
    assert statuses["POST /v1/models/{name}/predict"] >= {200, 404, 422}, statuses
    assert 200 in statuses["GET /v1/models/{name}"] and 404 in statuses["GET /v1/models/{name}"], statuses
    assert all(status < 500 for seen in statuses.values() for status in seen), statuses
    print("statuses seen:", {label: sorted(seen) for label, seen in statuses.items()})
