"""The REST API's edges on the local cloud: auth, routing, limits and bad bodies."""

import pytest

pytestmark = pytest.mark.e2e
BODY_MARKERS = ["Traceback", "Exception", 'File "']


def assert_clean(response):
    for marker in BODY_MARKERS:
        assert marker not in response.text


def test_health_is_public(api):
    response = api("GET", "/health", key=False)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "not-a-key-of-this-api-0000"}])
def test_model_routes_need_a_valid_api_key(api, headers):
    response = api("POST", "/v1/models/churn/predict", key=False, headers=headers, json={"instances": [{}]})
    assert response.status_code == 403 and response.json() == {"message": "Forbidden"}


def test_unknown_routes_answer_as_api_gateway_does(api):
    response = api("GET", "/v1/nothing-here")
    assert response.status_code == 403 and response.json() == {"message": "Missing Authentication Token"}


def test_malformed_json_is_rejected_before_the_function(api):
    response = api("POST", "/v1/models/churn/predict", data=b'{"instances": [',
                   headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert_clean(response)


def test_a_body_without_instances_fails_the_request_model(api):
    response = api("POST", "/v1/models/churn/predict", json={"rows": []})
    assert response.status_code == 400 and response.json() == {"message": "Invalid request body"}


def test_oversized_body_is_refused(api):
    huge = b'{"instances": [{"plan": "' + b"x" * (11 * 1024 * 1024) + b'"}]}'
    response = api("POST", "/v1/models/churn/predict", data=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert_clean(response)


def test_a_body_over_the_function_limit_gets_413_from_the_function(api):
    big = {"instances": [{"plan": "x" * 300_000}]}
    response = api("POST", "/v1/models/churn/predict", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PayloadTooLarge"


def test_unknown_model_is_404_with_a_clear_message(api):
    response = api("POST", "/v1/models/no-such-model/predict", json={"instances": [{"a": 1}]})
    assert response.status_code == 404
    assert "no-such-model" in response.json()["error"]["message"]
    assert_clean(response)


@pytest.mark.parametrize(
    "instance",
    [
        {"tenure_months": "ten", "monthly_charges": 1.0, "support_calls": 1, "plan": "basic"},
        {"monthly_charges": 1.0, "support_calls": 1, "plan": "basic"},
        {"tenure_months": 1, "monthly_charges": 1.0, "support_calls": 1, "plan": "basic", "extra": 1},
        {"tenure_months": 1, "monthly_charges": 1.0, "support_calls": 1, "plan": "<script>" * 100},
    ],
)
def test_instances_not_matching_the_signature_get_422(api, trained_model, instance):
    response = api("POST", f"/v1/models/{trained_model}/predict", json={"instances": [instance]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "RequestInvalid"
    assert_clean(response)
