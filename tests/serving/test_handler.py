"""The predict API through its Lambda handler, with API Gateway REST proxy events, under moto.

Setting up moto costs most of a second, so one test may walk through several requests that
share its setup; every request names its case in the assertion message.
"""

import json
import re
from datetime import datetime, timezone

import pandas as pd
import pytest

from functions.errors import IntegrityError, MlopsError, RetryableError
from functions.registry.store import RegistryStore
from functions.serving import handler
from functions.serving.capture import epoch_ms_of
from tests.serving.helpers import INSTANCE
from tests.serving.events import api_event, call, emf_documents

PREDICT = "/v1/models/churn/predict"


def respond(context, method: str, path: str, body=None, **kwargs) -> tuple[int, str]:
    """The status, and the body exactly as the client receives it."""
    response = handler.handler(api_event(method, path, body, **kwargs), context)
    assert not response.get("isBase64Encoded")
    return response["statusCode"], response.get("body") or ""


def assert_clean(text: str, *secrets: str) -> None:
    """An error body says what went wrong for the client, never how it failed inside."""
    assert "Traceback" not in text and 'File "' not in text
    for secret in secrets:
        assert secret not in text


def captures(aws) -> list[str]:
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="captures/")
    return [entry["Key"] for entry in listed.get("Contents", [])]


# --- routes that need no model ----------------------------------------------------------------


def test_health(lambda_context):
    assert call(handler.handler, lambda_context, "GET", "/health")[:2] == (200, {"status": "ok"})


@pytest.mark.parametrize("method, path", [("GET", "/v2/anything"), ("GET", "/v1/models/../x"),
                                          ("DELETE", "/v1/models/churn"), ("GET", "/v1/models/churn/predict")])
def test_no_route_is_404(method, path, lambda_context):
    status, body, _ = call(handler.handler, lambda_context, method, path)
    assert status == 404 and body == {"error": {"code": "NotFound", "message": "no such route"}}


# --- describing a model -----------------------------------------------------------------------


def test_describe_a_model_with_its_champion(churn_champion, lambda_context):
    status, body, _ = call(handler.handler, lambda_context, "GET", "/v1/models/churn")

    assert status == 200
    assert body["model"] == "churn" and body["task"] == "classification"
    assert body["champion"]["version"] == 1
    assert body["champion"]["dataset_id"] == churn_champion.dataset_id
    assert body["champion"]["run_id"] == churn_champion.run_id and "accuracy" in body["champion"]["metrics"]
    assert body["signature"] == [{"name": "tenure_months", "type": "numeric"},
                                 {"name": "monthly_charges", "type": "numeric"},
                                 {"name": "support_calls", "type": "numeric"},
                                 {"name": "plan", "type": "categorical"}]


def test_a_model_without_champion_is_described_but_does_not_predict(pipeline_aws, lambda_context, churn_spec):
    RegistryStore(pipeline_aws.tables["registry"]).put_spec(churn_spec)

    status, body, _ = call(handler.handler, lambda_context, "GET", "/v1/models/churn")
    assert status == 200 and body["champion"] is None and body["task"] == "classification"
    assert [f["name"] for f in body["signature"]] == churn_spec.feature_names

    status, body, _ = call(handler.handler, lambda_context, "POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 404 and body["error"]["code"] == "NoChampion" and "churn" in body["error"]["message"]
    assert captures(pipeline_aws) == []


def test_unknown_and_hostile_model_names_are_404_and_not_echoed_whole(pipeline_aws, lambda_context, capsys):
    hostile = ["a" * 10_000, "..%2F..%2Fetc%2Fpasswd", "Churn", "churn%00", "-churn"]
    for name in ["nosuch", *hostile]:
        for method, path in [("GET", f"/v1/models/{name}"), ("POST", f"/v1/models/{name}/predict")]:
            status, text = respond(lambda_context, method, path,
                                      {"instances": [INSTANCE]} if method == "POST" else None)
            case = (method, name[:30])
            assert status == 404, case
            assert json.loads(text)["error"]["code"] == "UnknownModel", case
            assert len(text) < 400 and "a" * 65 not in text, case
            assert_clean(text)
    # A name chosen by a client never becomes a metric dimension.
    assert not [d for d in emf_documents(capsys.readouterr().out) if "model" in d]


# --- predictions ------------------------------------------------------------------------------


def test_predict_answers_and_captures_the_request(churn_champion, pipeline_aws, lambda_context):
    instances = [INSTANCE, {**INSTANCE, "tenure_months": 60, "support_calls": 0, "plan": "premium"}]
    event = api_event("POST", PREDICT, {"instances": instances})

    response = handler.handler(event, lambda_context)

    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["model"] == "churn" and body["version"] == 1
    assert body["request_id"] == event["requestContext"]["requestId"]
    assert len(body["predictions"]) == 2 and set(body["predictions"]) <= {0, 1}
    assert len(body["probabilities"]) == 2
    for label, row in zip(body["predictions"], body["probabilities"]):
        assert len(row) == 2 and sum(row) == pytest.approx(1.0, abs=1e-5)
        assert label == (1 if row[1] > row[0] else 0)
    # The served model is the trained one (ONNX in float32: close to scikit-learn's answers).
    expected = churn_champion.pipeline.predict_proba(pd.DataFrame(instances)[churn_champion.spec.feature_names])
    for served, trained in zip(body["probabilities"], expected.tolist()):
        assert served == pytest.approx(trained, abs=1e-4)

    (key,) = captures(pipeline_aws)
    match = re.fullmatch(r"captures/churn/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/(\d{13})-[0-9a-f-]{36}\.json", key)
    assert match, key
    at = datetime.fromtimestamp(epoch_ms_of(key) / 1000, timezone.utc)
    assert (match.group(1), match.group(2)) == (f"{at:%Y-%m-%d}", f"{at:%H}")
    record = json.loads(pipeline_aws.s3.get_object(Bucket=pipeline_aws.bucket, Key=key)["Body"].read())
    assert record["model"] == "churn" and record["version"] == 1 and record["request_id"] == body["request_id"]
    assert record["inputs"] == instances
    assert record["predictions"] == body["predictions"] and record["probabilities"] == body["probabilities"]
    assert datetime.fromisoformat(record["timestamp"]) == at


def test_a_base64_body_is_decoded(churn_champion, lambda_context):
    status, body, _ = call(handler.handler, lambda_context, "POST", PREDICT, {"instances": [INSTANCE]}, encoded=True)
    assert status == 200 and len(body["predictions"]) == 1 and len(body["probabilities"]) == 1


def test_metrics_count_predictions_and_latency_per_model(churn_champion, lambda_context, capsys, monkeypatch):
    call(handler.handler, lambda_context, "POST", PREDICT, {"instances": [INSTANCE]})  # the champion is loaded
    ticks = iter([10.0, 10.25])
    monkeypatch.setattr(handler.time, "perf_counter", lambda: next(ticks))
    capsys.readouterr()
    status, _, _ = call(handler.handler, lambda_context, "POST", PREDICT, {"instances": [INSTANCE] * 3})
    assert status == 200

    (document,) = [d for d in emf_documents(capsys.readouterr().out) if "Predictions" in d]
    assert document["Predictions"] == [3.0]
    assert document["PredictLatency"] == [250.0]
    assert document["model"] == "churn"
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Mlops" and ["model"] in directive["Dimensions"]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {"Predictions": "Count",
                                                                   "PredictLatency": "Milliseconds"}


def test_a_failed_capture_does_not_fail_the_answer(churn_champion, lambda_context, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise MlopsError("capturing a request: storage error (AccessDenied)")

    monkeypatch.setattr(handler, "write_capture", broken)

    status, body, _ = call(handler.handler, lambda_context, "POST", PREDICT, {"instances": [INSTANCE]})

    assert status == 200 and len(body["predictions"]) == 1
    (document,) = [d for d in emf_documents(capsys.readouterr().out) if "CaptureFailures" in d]
    assert document["CaptureFailures"] == [1.0]


# --- refused requests -------------------------------------------------------------------------


def test_unreadable_bodies_are_400(pipeline_aws, lambda_context):
    """Refused before any model is read: no champion is needed to answer them."""
    cases = [
        ('{"instances": [', False, "not valid JSON"),
        ("instances=1", False, "not valid JSON"),
        ("", False, "has no body"),
        (None, False, "has no body"),
        (b"\xff\xfe{}", True, "not valid JSON"),
        ("[" * 50_000 + "]" * 50_000, False, "not valid JSON"),
        ({}, False, "instances: Field required"),
        ({"instances": 3}, False, "instances: Input should be a valid list"),
        ({"instances": []}, False, "instances: List should have at least 1 item"),
        ([INSTANCE], False, "body: Input should be a valid dictionary"),
    ]
    for body, encoded, fragment in cases:
        status, text = respond(lambda_context, "POST", PREDICT, body, encoded=encoded)
        case = str(body)[:40]
        assert status == 400, case
        error = json.loads(text)["error"]
        assert error["code"] == "InvalidInput" and fragment in error["message"], case
        assert_clean(text, "Expecting", "JSONDecodeError", "codec", "recursion")

    event = api_event("POST", PREDICT, None)
    event["body"], event["isBase64Encoded"] = "not base64!", True
    response = handler.handler(event, lambda_context)
    assert response["statusCode"] == 400 and "not valid base64" in response["body"]


def test_instances_off_the_signature_are_422_naming_instance_and_field(churn_champion, pipeline_aws, lambda_context):
    cases = [
        ({**INSTANCE, "tenure_months": "12"}, "instance 0: field 'tenure_months' must be a number, not a string"),
        ({**INSTANCE, "tenure_months": None}, "instance 0: field 'tenure_months' must be a number, not null"),
        ({**INSTANCE, "support_calls": True}, "instance 0: field 'support_calls' must be a number, not a boolean"),
        ({**INSTANCE, "monthly_charges": 2**60}, "instance 0: field 'monthly_charges' is too large"),
        ({**INSTANCE, "plan": 3}, "instance 0: field 'plan' must be a string, not a number"),
        ({**INSTANCE, "plan": False}, "instance 0: field 'plan' must be a string, not a boolean"),
        ({k: v for k, v in INSTANCE.items() if k != "plan"}, "instance 0: field 'plan' is missing"),
        ({**INSTANCE, "colour": "red"}, "instance 0: field 'colour' is not a feature of this model"),
        (5, "instance 0: field '*' must be an object of features, not a number"),
    ]
    for instance, fragment in cases:
        status, text = respond(lambda_context, "POST", PREDICT, {"instances": [INSTANCE, instance]})
        assert status == 422, instance
        error = json.loads(text)["error"]
        assert error["code"] == "RequestInvalid", instance
        assert fragment.replace("instance 0", "instance 1") in error["message"], instance
        assert "tenure_months (numeric)" in error["message"]  # the expected signature is spelled out
    for literal in ["NaN", "Infinity", "-Infinity", "1e999"]:
        text = json.dumps({"instances": [INSTANCE]}).replace("3.0", literal)
        status, body, _ = call(handler.handler, lambda_context, "POST", PREDICT, text)
        assert status == 422, literal
        assert "instance 0: field 'tenure_months' must be a finite number" in body["error"]["message"], literal
    status, text = respond(lambda_context, "POST", PREDICT, {"instances": [{**INSTANCE, "z" * 10_000: 1}]})
    assert status == 422 and "z" * 64 + "..." in text and "z" * 65 not in text
    assert captures(pipeline_aws) == []  # refused requests are not captured


def test_size_limits_are_413_and_checked_before_parsing(churn_champion, lambda_context, monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_BYTES", "1000")
    monkeypatch.setenv("MAX_INSTANCES", "3")
    accented = json.dumps({"instances": [{**INSTANCE, "plan": "é" * 500}]}, ensure_ascii=False)
    assert len(accented) < 1000 < len(accented.encode())  # the limit counts bytes, not characters
    for body, encoded in [("{" * 1001, False), ("{" * 1001, True), (accented, False), (accented, True)]:
        status, payload, _ = call(handler.handler, lambda_context, "POST", PREDICT, body, encoded=encoded)
        assert status == 413, (body[:10], encoded)
        assert payload["error"] == {"code": "PayloadTooLarge",
                                    "message": "the request body is larger than 1000 bytes"}

    status, payload, _ = call(handler.handler, lambda_context, "POST", PREDICT, {"instances": [INSTANCE] * 4})
    assert status == 413 and payload["error"]["code"] == "PayloadTooLarge"
    assert "at most 3 instances (got 4)" in payload["error"]["message"]

    status, payload, _ = call(handler.handler, lambda_context, "POST", PREDICT, {"instances": [INSTANCE] * 3})
    assert status == 200 and len(payload["predictions"]) == 3


# --- failures on the server side --------------------------------------------------------------


def test_an_unexpected_exception_is_a_bare_500(churn_champion, lambda_context, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret detail at /var/task/functions/x.py")

    monkeypatch.setattr(handler, "predict", explode)

    status, text = respond(lambda_context, "POST", PREDICT, {"instances": [INSTANCE]})

    assert status == 500
    assert json.loads(text) == {"error": {"code": "InternalError", "message": "internal error"}}
    assert_clean(text, "secret", "RuntimeError")


def test_a_tampered_artifact_is_a_500_that_names_no_key(churn_champion, pipeline_aws, lambda_context):
    key = churn_champion.artifacts["onnx_key"]
    pipeline_aws.upload(key, b"not the model")

    status, text = respond(lambda_context, "POST", PREDICT, {"instances": [INSTANCE]})

    assert status == 500
    error = json.loads(text)["error"]
    assert error["code"] == IntegrityError.code and "integrity check" in error["message"]
    assert_clean(text, key, "sha256")


def test_storage_errors_are_500_or_503_without_their_details(churn_champion, lambda_context, monkeypatch):
    failure: list[Exception] = []

    def get_alias(self, model, alias="champion"):
        raise failure[0]

    monkeypatch.setattr(RegistryStore, "get_alias", get_alias)

    failure[:] = [MlopsError("reading the champion of model 'churn': storage error (AccessDeniedException)")]
    status, text = respond(lambda_context, "POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 500 and json.loads(text)["error"] == {"code": "InternalError", "message": "internal error"}
    assert_clean(text, "AccessDenied")

    failure[:] = [RetryableError("reading the champion of model 'churn': storage is busy, try again")]
    status, body, headers = call(handler.handler, lambda_context, "POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 503 and body["error"]["code"] == "RetryableError" and "try again" in body["error"]["message"]
    assert headers.get("Retry-After") == "1" and headers.get("Content-Type") == "application/json"
