"""The OpenAPI document says what the API does: generated from the routes, and every answer the
handler gives (success and each refusal) is one the document lists, in the shape it gives."""

import json

import jsonschema
import pytest
from openapi_spec_validator import validate

from functions.errors import RetryableError
from functions.serving import handler
from functions.serving.contract import PredictRequest
from tests.serving.helpers import INSTANCE, PREDICT

DOCUMENT = "/v1/openapi.json"


@pytest.fixture
def document(api) -> dict:
    status, body, headers = api.call("GET", DOCUMENT)
    assert status == 200 and headers["Content-Type"] == "application/json"
    return body


def matches(document: dict, method: str, path: str, status: int, body) -> None:
    """`body` is what the document lists for `status` on the operation (an AssertionError says why not)."""
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path}: {status} is not documented ({sorted(responses)})"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(body)


def test_the_document_is_valid_openapi_and_names_every_route(document):
    validate(document)  # OpenAPI 3.1, as the Powertools resolver generates it
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    routes = {(route.method, route.openapi_path) for route in handler.app._static_routes + handler.app._dynamic_routes}
    assert operations == routes == {("GET", "/health"), ("GET", DOCUMENT), ("GET", "/v1/models/{name}"),
                                    ("POST", "/v1/models/{name}/predict"), ("POST", "/v1/models/{name}/feedback")}
    assert document["components"]["securitySchemes"] == {"apiKey": {"type": "apiKey", "in": "header",
                                                                    "name": "x-api-key"}}
    keyed = {path for path, item in document["paths"].items() for op in item.values() if op.get("security")}
    assert keyed == {DOCUMENT, "/v1/models/{name}", "/v1/models/{name}/predict",
                     "/v1/models/{name}/feedback"}  # /health alone is public
    # No schema the API never uses (the resolver's own validation errors, off here).
    assert set(document["components"]["schemas"]) == {
        "ChampionSummary", "ErrorBody", "ErrorDetail", "Health", "ModelDescription", "PredictRequest",
        "PredictResponse", "SignatureFeature", "LabelIn", "LabelBatch", "FeedbackResponse"}


def test_the_document_is_served_relative_to_the_stage_and_cacheable(api, document):
    assert document["servers"] == [{"url": "/prod"}]  # the stage of the request (tests/serving/events.py)
    _, _, headers = api.call("GET", DOCUMENT)
    assert headers["Cache-Control"] == "max-age=300"


def test_the_request_body_is_the_models_schema_with_an_example(document):
    operation = document["paths"]["/v1/models/{name}/predict"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    assert document["components"]["schemas"]["PredictRequest"] == PredictRequest.model_json_schema()
    (example,) = body["content"]["application/json"]["examples"].values()
    PredictRequest.model_validate(example["value"])
    (name,) = operation["parameters"]
    assert name["in"] == "path" and name["required"] and name["schema"]["pattern"] == "^[a-z][a-z0-9-]{0,62}$"


def test_every_status_the_routes_document_is_one_of_the_issue(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            # 409: a label already given another value (the feedback route).
            assert set(operation["responses"]) <= {"200", "400", "403", "404", "409", "413", "422", "429", "503"}, path
            if operation.get("security"):  # API Gateway's own answers on a keyed route
                assert {"200", "403", "429"} <= set(operation["responses"]), (method, path)


def test_each_answer_of_the_handler_matches_the_document(churn_champion, stores, api, configure, document):
    cases = [
        ("GET", "/health", None),
        ("GET", "/v1/models/churn", None),
        ("GET", "/v1/models/nosuch", None),
        ("GET", "/v1/models/NOT-A-NAME", None),
        ("POST", PREDICT, {"instances": [INSTANCE, {**INSTANCE, "plan": "premium"}]}),
        ("POST", PREDICT, "not json"),
        ("POST", PREDICT, {"instances": []}),
        ("POST", PREDICT, {"instances": [INSTANCE], "extra": 1}),
        ("POST", PREDICT, {"instances": [{**INSTANCE, "plan": 3}]}),
        ("POST", PREDICT, {"instances": [{"tenure_months": 1e39}]}),
        ("POST", PREDICT, {"instances": [INSTANCE] * 4}),  # over max_instances below: 413
        ("POST", "/v1/models/nosuch/predict", {"instances": [INSTANCE]}),
    ]
    configure(max_instances=3)
    seen = set()
    for method, path, body in cases:
        status, answer, headers = api.call(method, path, body)
        operation = path.replace("/churn", "/{name}").replace("/nosuch", "/{name}").replace("/NOT-A-NAME", "/{name}")
        matches(document, method, operation, status, answer)
        assert headers["Content-Type"] == "application/json"
        seen.add(status)
    assert seen == {200, 400, 404, 413, 422}

    status, answer, _ = api.call("POST", PREDICT, {"instances": [INSTANCE]})
    assert answer["variant"] == "champion" and set(answer) == {"model", "version", "variant", "predictions",
                                                                "probabilities", "request_id"}

    stores.registry.faults.inject("get_spec", RetryableError("reading the spec: throttled"))
    status, answer, headers = api.call("GET", "/v1/models/churn")
    assert status == 503 and headers["Retry-After"] == "1"
    matches(document, "GET", "/v1/models/{name}", status, answer)


def test_a_model_without_champion_is_described_as_documented(stores, api, churn_spec, document):
    stores.registry.put_spec(churn_spec)
    status, answer, _ = api.call("GET", "/v1/models/churn")
    assert status == 200 and answer["champion"] is None
    matches(document, "GET", "/v1/models/{name}", status, answer)
    status, answer, _ = api.call("POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 404 and answer["error"]["code"] == "NoChampion"
    matches(document, "POST", "/v1/models/{name}/predict", status, answer)


def test_the_document_is_generated_once_per_environment(api, monkeypatch):
    handler._openapi.cache_clear()
    calls = []
    generate = handler.app.get_openapi_json_schema
    monkeypatch.setattr(handler.app, "get_openapi_json_schema", lambda **kw: calls.append(1) or generate(**kw))
    first = api.call("GET", DOCUMENT)[1]
    assert api.call("GET", DOCUMENT)[1] == first and calls == [1]
    handler._openapi.cache_clear()


@pytest.mark.parametrize("body", ['{"instances": [{}]}', "x" * 100, None])
def test_the_document_route_ignores_any_body(api, body):
    status, answer, _ = api.call("GET", DOCUMENT, body)
    assert status == 200 and json.dumps(answer).startswith('{"openapi": "3.1')
