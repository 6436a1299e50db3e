"""The predict API through its Lambda handler, with API Gateway REST proxy events.

The request checks and the status mapping run over the in-memory stores (`api`); a few tests run
the same handler over its real adapters under moto (`aws_api`), to prove the wiring end to end
and the translation of AWS errors. Every request of a test names its case in the assertion message.
"""

import json
import math
from datetime import datetime

import pandas as pd
import pytest

from functions.errors import MlopsError
from functions.registry.dynamo import registry_store
from functions.serving import handler
from functions.serving.capture import MARKER, CaptureTooLarge
from functions.storage.s3 import data_objects
from tests.conftest import failing_with
from tests.fakes import throttled
from tests.serving.conftest import TTL
from tests.serving.events import api_event, emf_documents
from tests.serving.helpers import INSTANCE, PREDICT, assert_clean, error_of, promote_new_version, strict_json


def metric_documents(out: str, name: str) -> list[dict]:
    return [document for document in emf_documents(out) if name in document]


# --- routes that need no model ----------------------------------------------------------------


def test_health(api):
    assert api.call("GET", "/health")[:2] == (200, {"status": "ok"})


@pytest.mark.parametrize("method, path", [("GET", "/v2/anything"), ("GET", "/v1/models/../x"),
                                          ("DELETE", "/v1/models/churn"), ("GET", "/v1/models/churn/predict")])
def test_no_route_is_404(method, path, api):
    status, body, _ = api.call(method, path)
    assert status == 404 and body == {"error": {"code": "NotFound", "message": "no such route"}}


# --- describing a model -----------------------------------------------------------------------


def test_describe_a_model_with_its_champion(churn_champion, api):
    status, body, _ = api.call("GET", "/v1/models/churn")

    assert status == 200
    assert body["model"] == "churn" and body["task"] == "classification"
    assert body["champion"]["version"] == 1
    assert body["champion"]["dataset_id"] == churn_champion.dataset_id
    assert body["champion"]["run_id"] == churn_champion.run_id and "accuracy" in body["champion"]["metrics"]
    assert body["signature"] == [{"name": "tenure_months", "type": "numeric"},
                                 {"name": "monthly_charges", "type": "numeric"},
                                 {"name": "support_calls", "type": "numeric"},
                                 {"name": "plan", "type": "categorical"}]


def test_a_model_without_champion_is_described_but_does_not_predict(captures, stores, api, churn_spec):
    stores.registry.put_spec(churn_spec)

    status, body, _ = api.call("GET", "/v1/models/churn")
    assert status == 200 and body["champion"] is None and body["task"] == "classification"
    assert [f["name"] for f in body["signature"]] == churn_spec.feature_names

    status, body, _ = api.call("POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 404 and body["error"]["code"] == "NoChampion" and "churn" in body["error"]["message"]
    assert captures == []


def test_unknown_and_hostile_model_names_are_404_and_not_echoed_whole(api, capsys):
    hostile = ["a" * 10_000, "..%2F..%2Fetc%2Fpasswd", "Churn", "churn%00", "-churn"]
    for name in ["nosuch", *hostile]:
        for method, path in [("GET", f"/v1/models/{name}"), ("POST", f"/v1/models/{name}/predict")]:
            status, text = api.respond(method, path, {"instances": [INSTANCE]} if method == "POST" else None)
            case = (method, name[:30])
            assert status == 404, case
            assert error_of(text)["code"] == "UnknownModel", case
            assert len(text) < 400 and "a" * 65 not in text, case
            assert_clean(text)
    # A name chosen by a client never becomes a metric dimension.
    assert not [d for d in emf_documents(capsys.readouterr().out) if "model" in d]


# --- predictions ------------------------------------------------------------------------------


def test_predict_answers_with_the_trained_model_and_captures_the_request(churn_champion, stores, api, captures,
                                                                         capsys):
    instances = [INSTANCE, {**INSTANCE, "tenure_months": 60, "support_calls": 0, "plan": "premium"}]
    status, body, _ = api.call("POST", PREDICT, {"instances": instances})

    assert status == 200
    assert body["model"] == "churn" and body["version"] == 1
    assert len(body["predictions"]) == 2 and set(body["predictions"]) <= {0, 1}
    assert len(body["probabilities"]) == 2
    for label, row in zip(body["predictions"], body["probabilities"], strict=True):
        assert len(row) == 2 and sum(row) == pytest.approx(1.0, abs=1e-5)
        assert label == (1 if row[1] > row[0] else 0)
    # The served model is the trained one (ONNX in float64: scikit-learn's answers).
    expected = churn_champion.pipeline.predict_proba(pd.DataFrame(instances)[churn_champion.spec.feature_names])
    for served, trained in zip(body["probabilities"], expected.tolist(), strict=True):
        assert served == pytest.approx(trained, abs=1e-4)

    # Captured as one line on stdout (the log stream Firehose is subscribed to), never written to S3 here.
    (record,) = captures
    assert record["request_id"] == body["request_id"] and record["inputs"] == instances
    assert record["outputs"] == {"predictions": body["predictions"], "probabilities": body["probabilities"]}
    assert record["model"] == "churn" and record["version"] == 1 and record["variant"] == "champion"
    assert record[MARKER] == 1 and record["latency_ms"] >= 0
    assert datetime.fromisoformat(record["timestamp"]).tzinfo is not None
    lines = [line for line in capsys.readouterr().out.splitlines() if f'"{MARKER}":1' in line]
    assert [json.loads(line) for line in lines] == [record]
    assert stores.objects.keys("captures/") == [] and "put_bytes" not in stores.objects.faults.calls


def test_a_base64_body_is_decoded(churn_champion, api):
    status, body, _ = api.call("POST", PREDICT, {"instances": [INSTANCE]}, encoded=True)
    assert status == 200 and len(body["predictions"]) == 1 and len(body["probabilities"]) == 1


def test_metrics_count_predictions_and_latency_per_model(churn_champion, api, capsys, monkeypatch):
    api.call("POST", PREDICT, {"instances": [INSTANCE]})  # the champion is loaded
    ticks = iter([10.0, 10.25])
    monkeypatch.setattr(handler.time, "perf_counter", lambda: next(ticks))
    capsys.readouterr()
    status, _, _ = api.call("POST", PREDICT, {"instances": [INSTANCE] * 3})
    assert status == 200

    (document,) = metric_documents(capsys.readouterr().out, "Predictions")
    assert document["Predictions"] == [3.0]
    assert document["PredictLatency"] == [250.0]
    assert document["model"] == "churn"
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Mlops" and ["model"] in directive["Dimensions"]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {"Predictions": "Count",
                                                                   "PredictLatency": "Milliseconds"}


@pytest.mark.parametrize("failure", [OSError("stdout is closed"), CaptureTooLarge("one row is too large"),
                                     ValueError("Out of range float values are not JSON compliant")],
                         ids=["stdout-closed", "too-large", "not-json"])
def test_a_failed_capture_is_logged_and_counted_and_the_answer_still_given(churn_champion, api, capsys, caplog,
                                                                           monkeypatch, failure):
    def fail(**_) -> int:
        raise failure

    monkeypatch.setattr(handler, "emit_capture", fail)

    status, body, _ = api.call("POST", PREDICT, {"instances": [INSTANCE]})

    assert status == 200 and len(body["predictions"]) == 1
    (document,) = metric_documents(capsys.readouterr().out, "CaptureFailures")
    assert document["CaptureFailures"] == [1.0]
    (warning,) = [record for record in caplog.records if record.getMessage() == "request not captured"]
    assert warning.levelname == "WARNING" and vars(warning)["reason"] == str(failure)


# --- refused requests -------------------------------------------------------------------------


def test_unreadable_bodies_are_400_before_any_model_is_read(stores, api):
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
        status, text = api.respond("POST", PREDICT, body, encoded=encoded)
        case = str(body)[:40]
        assert status == 400, case
        error = error_of(text)
        assert error["code"] == "InvalidInput" and fragment in error["message"], case
        assert_clean(text, "Expecting", "JSONDecodeError", "codec", "recursion")

    event = api_event("POST", PREDICT, None)
    event["body"], event["isBase64Encoded"] = "not base64!", True
    response = handler.handler(event, api.context)
    assert response["statusCode"] == 400 and "not valid base64" in response["body"]
    assert stores.registry.faults.calls == [] and stores.objects.faults.calls == []


def test_instances_off_the_signature_are_422_naming_instance_and_field(captures, churn_champion, stores, api):
    cases = [
        ({**INSTANCE, "tenure_months": "12"}, "instance 0: field 'tenure_months' must be a number, not a string"),
        ({**INSTANCE, "tenure_months": None}, "instance 0: field 'tenure_months' must be a number, not null"),
        ({**INSTANCE, "support_calls": True}, "instance 0: field 'support_calls' must be a number, not a boolean"),
        ({**INSTANCE, "monthly_charges": 10**39}, "instance 0: field 'monthly_charges' is out of range"),
        ({**INSTANCE, "plan": 3}, "instance 0: field 'plan' must be a string, not a number"),
        ({**INSTANCE, "plan": False}, "instance 0: field 'plan' must be a string, not a boolean"),
        ({k: v for k, v in INSTANCE.items() if k != "plan"}, "instance 0: field 'plan' is missing"),
        ({**INSTANCE, "colour": "red"}, "instance 0: field 'colour' is not a feature of this model"),
        (5, "instance 0: field '*' must be an object of features, not a number"),
    ]
    for instance, fragment in cases:
        status, text = api.respond("POST", PREDICT, {"instances": [INSTANCE, instance]})
        assert status == 422, instance
        error = error_of(text)
        assert error["code"] == "RequestInvalid", instance
        assert fragment.replace("instance 0", "instance 1") in error["message"], instance
        assert "tenure_months (numeric)" in error["message"]  # the expected signature is spelled out
    for literal in ["NaN", "Infinity", "-Infinity", "1e999"]:
        text = json.dumps({"instances": [INSTANCE]}).replace("3.0", literal)
        status, body, _ = api.call("POST", PREDICT, text)
        assert status == 422, literal
        assert "instance 0: field 'tenure_months' must be a finite number" in body["error"]["message"], literal
    status, text = api.respond("POST", PREDICT, {"instances": [{**INSTANCE, "z" * 10_000: 1}]})
    assert status == 422 and "z" * 64 + "..." in text and "z" * 65 not in text
    assert captures == []  # refused requests are not captured


def test_a_lone_surrogate_is_422_naming_the_field(captures, churn_champion, stores, api):
    """JSON may escape a lone UTF-16 surrogate ("\\ud800"); no UTF-8 text can hold it, so it would fail
    later (the transformation, the capture): it is refused with the field named, as JSON a client reads."""
    for escaped, position in [("\\ud800", 0), ("basic\\udfff", 5), ("\\udc00\\ud800", 0)]:
        text = json.dumps({"instances": [INSTANCE]}).replace('"basic"', f'"{escaped}"')
        status, body = api.respond("POST", PREDICT, text)
        assert status == 422, escaped
        error = strict_json(body)["error"]
        assert error["code"] == "RequestInvalid", escaped
        assert (f"instance 0: field 'plan' must be valid Unicode text: character {position} is a lone UTF-16 "
                "surrogate") in error["message"], escaped
        body.encode("utf-8")  # the answer itself is valid UTF-8
    # A surrogate pair is one character (U+1F600): a category the model has not seen, answered.
    text = json.dumps({"instances": [INSTANCE]}).replace('"basic"', '"\\ud83d\\ude00"')
    assert api.respond("POST", PREDICT, text)[0] == 200
    assert len(captures) == 1  # only the answered request is captured


def test_numbers_beyond_the_models_input_type_are_422_with_the_range(captures, churn_champion, stores, api):
    for literal in ["1e308", "-1e308", "3.5e38", "-1" + "0" * 39, "1" + "0" * 400]:
        text = json.dumps({"instances": [INSTANCE]}).replace("3.0", literal)
        status, body = api.respond("POST", PREDICT, text)
        assert status == 422, literal
        message = strict_json(body)["error"]["message"]
        assert ("instance 0: field 'tenure_months' is out of range: the model takes numbers between "
                "-3.4028234663852886e+38 and 3.4028234663852886e+38") in message, literal
    assert captures == []
    # Within the range: answered, with finite probabilities.
    text = json.dumps({"instances": [INSTANCE]}).replace("3.0", "3.4e38")
    status, body = api.respond("POST", PREDICT, text)
    assert status == 200 and len(strict_json(body)["probabilities"][0]) == 2


def test_an_answer_that_is_not_a_finite_number_is_refused_never_sent(captures, champion_factory, churn_spec, churn_rows,
                                                                     stores, api):
    """A linear regression registered before models converted in double precision (its ONNX inputs float32)
    overflows on in-range but extreme inputs: its answer would be Infinity (not JSON). The request is refused
    (422, a client's extreme values, not a server failure), not captured; the same model in double answers."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    spec = churn_spec.model_copy(update={
        "name": "charges", "task": "regression", "target": "monthly_charges", "metric": "rmse",
        "features": [f for f in churn_spec.features if f.name != "monthly_charges"],
        "estimator": churn_spec.estimator.model_copy(update={"name": "linear_regression", "params": {}})})
    champion = champion_factory(spec, churn_rows)
    instance = {"tenure_months": 1.0, "support_calls": 3.4e38, "plan": "basic"}
    fine = {"tenure_months": 1.0, "support_calls": 2, "plan": "basic"}
    status, body = api.respond("POST", "/v1/models/charges/predict", {"instances": [instance]})
    assert status == 200 and math.isfinite(strict_json(body)["predictions"][0])  # float64: no overflow
    float32 = convert_sklearn(champion.pipeline, initial_types=[
        (f"f{i}", FloatTensorType([None, 1]) if f.type == "numeric" else StringTensorType([None, 1]))
        for i, f in enumerate(spec.features)]).SerializeToString()
    promote_new_version(stores, champion, onnx=float32)
    handler.models.clear()

    status, body = api.respond("POST", "/v1/models/charges/predict", {"instances": [fine, instance, instance]})

    assert status == 422
    error = strict_json(body)["error"]
    assert error["code"] == "RequestInvalid"
    assert error["message"].startswith("the model has no finite answer for instance(s) 1, 2: their values are too "
                                       "extreme for it")
    assert [c for c in captures if c["version"] == 2] == []
    status, body = api.respond("POST", "/v1/models/charges/predict", {"instances": [fine]})
    assert status == 200 and strict_json(body)["predictions"][0] > 0 and strict_json(body)["version"] == 2


def test_the_response_serializer_refuses_nan_whatever_produced_it(churn_champion, api, monkeypatch):
    """Whatever path a NaN takes (here, past the domain's own check), the body is never invalid JSON."""
    from functions.serving.predict import Prediction

    monkeypatch.setattr(handler, "predict", lambda loaded, instances: Prediction([0], [[math.nan, math.inf]]))

    monkeypatch.setattr(handler, "describe_model", lambda registry, name: {"metrics": {"roc_auc": math.nan}})

    for method, path in [("POST", PREDICT), ("GET", "/v1/models/churn")]:
        status, text = api.respond(method, path, {"instances": [INSTANCE]} if method == "POST" else None)
        assert status == 500, path
        assert strict_json(text) == {"error": {"code": "InternalError", "message": "internal error"}}, path
    assert handler.dumps({"ok": 1.5}) == '{"ok":1.5}'
    with pytest.raises(ValueError):
        handler.dumps({"p": math.nan})


def test_size_limits_are_413_and_checked_before_parsing(churn_champion, api, configure):
    configure(max_request_bytes=1000, max_instances=3)
    accented = json.dumps({"instances": [{**INSTANCE, "plan": "é" * 500}]}, ensure_ascii=False)
    assert len(accented) < 1000 < len(accented.encode())  # the limit counts bytes, not characters
    for body, encoded in [("{" * 1001, False), ("{" * 1001, True), (accented, False), (accented, True)]:
        status, payload, _ = api.call("POST", PREDICT, body, encoded=encoded)
        assert status == 413, (body[:10], encoded)
        assert payload["error"] == {"code": "PayloadTooLarge",
                                    "message": "the request body is larger than 1000 bytes"}

    status, payload, _ = api.call("POST", PREDICT, {"instances": [INSTANCE] * 4})
    assert status == 413 and payload["error"]["code"] == "PayloadTooLarge"
    assert "at most 3 instances (got 4)" in payload["error"]["message"]

    status, payload, _ = api.call("POST", PREDICT, {"instances": [INSTANCE] * 3})
    assert status == 200 and len(payload["predictions"]) == 3


# --- failures on the server side --------------------------------------------------------------


def test_an_unexpected_exception_is_a_bare_500(churn_champion, api, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret detail at /var/task/functions/x.py")

    monkeypatch.setattr(handler, "predict", explode)

    status, text = api.respond("POST", PREDICT, {"instances": [INSTANCE]})

    assert status == 500
    assert json.loads(text) == {"error": {"code": "InternalError", "message": "internal error"}}
    assert_clean(text, "secret", "RuntimeError")


UNAVAILABLE = {"code": "ModelUnavailable",
               "message": "model 'churn' is unavailable: its champion cannot be loaded; try again later"}


@pytest.mark.parametrize("damage", ["missing", "tampered", "unreadable"])
def test_a_champion_that_cannot_be_loaded_is_a_503_that_names_nothing_internal_and_is_counted(captures,
        churn_champion, stores, api, capsys, caplog, damage):
    key = churn_champion.artifacts.onnx_key
    if damage == "missing":
        del stores.objects.versions[key]
    elif damage == "tampered":
        stores.objects.put(key, b"not the model")  # fails its sha256
    else:  # verifies (its sha256 recorded for these bytes) but onnxruntime cannot read it
        stores.registry.versions.clear()
        promote_new_version(stores, churn_champion, onnx=b"no ONNX model")

    status, text = api.respond("POST", PREDICT, {"instances": [INSTANCE]})

    assert status == 503 and strict_json(text) == {"error": UNAVAILABLE}, damage
    assert_clean(text, "models/", key, "sha256", "v1", stores.objects.bucket, "onnx", "Integrity", "NotFound")
    assert captures == []
    (document,) = metric_documents(capsys.readouterr().out, "ModelLoadFailures")
    assert document["ModelLoadFailures"] == [1.0] and document["model"] == "churn"
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Mlops" and directive["Dimensions"] == [["model", "service"]]
    (logged,) = [r for r in caplog.records if r.getMessage() == "champion could not be loaded"]
    assert logged.levelname == "ERROR" and vars(logged)["reason"]  # the reason (the key, say) is in the logs

    # Within the cache's TTL the bad artifact is not fetched again: the same answer, no second count.
    reads = stores.objects.faults.calls.count("get_bytes")
    assert api.respond("POST", PREDICT, {"instances": [INSTANCE]}) == (status, text)
    assert stores.objects.faults.calls.count("get_bytes") == reads
    assert metric_documents(capsys.readouterr().out, "ModelLoadFailures") == []


def test_a_new_champion_that_cannot_be_loaded_leaves_the_previous_one_serving(churn_champion, stores, api, clock,
                                                                             capsys):
    assert api.served_version() == 1
    key = churn_champion.artifacts.onnx_key.replace("/v1/", "/v2/")
    promote_new_version(stores, churn_champion, onnx=b"no ONNX model")
    del stores.objects.versions[key]  # v2's artifact is missing altogether
    capsys.readouterr()

    clock.advance(TTL + 1)
    assert api.served_version() == 1
    (document,) = metric_documents(capsys.readouterr().out, "ModelLoadFailures")
    assert document["ModelLoadFailures"] == [1.0] and document["model"] == "churn"
    assert api.served_version() == 1


def test_storage_errors_are_500_or_503_without_their_details(captures, churn_champion, stores, api):
    stores.registry.faults.inject(
        "get_alias", MlopsError("reading the champion of model 'churn': storage error (AccessDeniedException)"))
    status, text = api.respond("POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 500 and error_of(text) == {"code": "InternalError", "message": "internal error"}
    assert_clean(text, "AccessDenied")

    stores.registry.faults.inject("get_alias", throttled("reading the champion of model 'churn'"))
    status, body, headers = api.call("POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 503 and body["error"]["code"] == "RetryableError" and "try again" in body["error"]["message"]
    assert headers.get("Retry-After") == "1" and headers.get("Content-Type") == "application/json"
    assert captures == []

    assert api.call("POST", PREDICT, {"instances": [INSTANCE]})[0] == 200  # storage is back


# --- the same handler over boto3 and moto -----------------------------------------------------


def test_over_aws_the_api_describes_predicts_and_captures(churn_champion_aws, pipeline_aws, aws_api, captures):
    status, body, _ = aws_api.call("GET", "/v1/models/churn")
    assert status == 200 and body["champion"]["version"] == 1
    assert body["champion"]["dataset_id"] == churn_champion_aws.dataset_id

    instances = [INSTANCE, {**INSTANCE, "tenure_months": 60, "support_calls": 0, "plan": "premium"}]
    event = api_event("POST", PREDICT, {"instances": instances})
    response = handler.handler(event, aws_api.context)

    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["model"] == "churn" and body["version"] == 1 and len(body["predictions"]) == 2
    assert body["request_id"] == event["requestContext"]["requestId"]

    # The capture is a line for the log stream: nothing is written to S3 on the request path.
    assert "Contents" not in pipeline_aws.s3.list_objects_v2(Bucket=pipeline_aws.bucket, Prefix="captures/")
    (record,) = captures
    assert record["model"] == "churn" and record["version"] == 1 and record["request_id"] == body["request_id"]
    assert record["inputs"] == instances
    assert record["outputs"] == {"predictions": body["predictions"], "probabilities": body["probabilities"]}


def test_over_aws_storage_errors_are_mapped_from_botocore(churn_champion_aws, pipeline_aws, aws_api, monkeypatch,
                                                          capsys):
    table = registry_store().table
    get_item = table.get_item
    monkeypatch.setattr(table, "get_item", failing_with("AccessDeniedException", "GetItem"))
    status, text = aws_api.respond("POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 500 and error_of(text) == {"code": "InternalError", "message": "internal error"}
    assert_clean(text, "AccessDenied")

    monkeypatch.setattr(table, "get_item", failing_with("ProvisionedThroughputExceededException", "GetItem"))
    status, body, headers = aws_api.call("POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 503 and body["error"]["code"] == "RetryableError" and headers.get("Retry-After") == "1"
    monkeypatch.setattr(table, "get_item", get_item)

    # S3 refusing every write changes nothing: the predict path makes no S3 write (the capture is a log line).
    monkeypatch.setattr(data_objects().client, "put_object", failing_with("SlowDown", "PutObject"))
    capsys.readouterr()
    status, body, _ = aws_api.call("POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 200 and len(body["predictions"]) == 1
    assert metric_documents(capsys.readouterr().out, "CaptureFailures") == []

    # A tampered artifact in S3 is refused as in memory, and so is a missing one.
    pipeline_aws.upload(churn_champion_aws.artifacts.onnx_key, b"not the model")
    handler.models.clear()
    status, text = aws_api.respond("POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 503 and error_of(text)["code"] == "ModelUnavailable"
    versions = pipeline_aws.s3.list_object_versions(Bucket=pipeline_aws.bucket,
                                                    Prefix=churn_champion_aws.artifacts.onnx_key)["Versions"]
    for version in versions:
        pipeline_aws.s3.delete_object(Bucket=pipeline_aws.bucket, Key=version["Key"], VersionId=version["VersionId"])
    handler.models.clear()
    status, text = aws_api.respond("POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 503 and error_of(text) == UNAVAILABLE
    assert_clean(text, churn_champion_aws.artifacts.onnx_key, pipeline_aws.bucket)
