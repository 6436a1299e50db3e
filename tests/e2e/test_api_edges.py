"""The REST API's edges on the local cloud: auth, routing, limits, framing and bad bodies, over real HTTP."""

import http.client
import json
import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest

from tests.serving.helpers import strict_json

pytestmark = pytest.mark.e2e
BODY_MARKERS = ["Traceback", "Exception", 'File "']
WAIT_S = 30  # a bound on how long something that must happen may take


def assert_clean(response):
    for marker in BODY_MARKERS:
        assert marker not in response.text


def test_health_is_public_and_invokes_no_function(api, aws):
    """GET /health is a mock integration: answered by the gateway, no START line in the predict function's log
    between two requests that do invoke it (each found in the log by the model name it asked for)."""
    first, last = (f"probe-{uuid.uuid4().hex[:12]}" for _ in range(2))
    assert api("GET", f"/v1/models/{first}").status_code == 404
    group, opened = _logged(aws, first, since_ms=int(time.time() * 1000) - 60_000)
    for _ in range(3):
        response = api("GET", "/health", key=False)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert api("GET", f"/v1/models/{last}").status_code == 404
    _, closed = _logged(aws, last, since_ms=opened["timestamp"], groups=[group])

    starts = [e for e in _log_events(aws, group, opened["timestamp"]) if e["message"].startswith("START RequestId")
              and opened["timestamp"] < e["timestamp"] <= closed["timestamp"]]
    assert len(starts) == 1, starts  # the last probe's own invocation, and nothing for /health


def _log_events(aws, group: str, since_ms: int) -> list[dict]:
    logs, events, token = aws("logs"), [], None
    while True:
        try:
            page = logs.filter_log_events(logGroupName=group, startTime=since_ms,
                                          **({"nextToken": token} if token else {}))
        except logs.exceptions.ResourceNotFoundException:  # nothing shipped yet: the group comes with its first line
            return events
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def _logged(aws, text: str, since_ms: int, groups: list[str] | None = None) -> tuple[str, dict]:
    """The log group and the first log event holding `text`, once a function's log has it."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for group in groups or [g["logGroupName"] for g in aws("logs").describe_log_groups()["logGroups"]]:
            found = [e for e in _log_events(aws, group, since_ms) if text in e["message"]]
            if found:
                return group, found[0]
        time.sleep(0.2)
    pytest.fail(f"{text!r} never reached a log group")


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "not-a-key-of-this-api-0000"}])
def test_model_routes_need_a_valid_api_key(api, headers):
    response = api("POST", "/v1/models/churn/predict", key=False, headers=headers, json={"instances": [{}]})
    assert response.status_code == 403 and response.json() == {"error": {
        "code": "Forbidden", "message": "no API key in the x-api-key header, or one that is not valid"}}


def test_unknown_routes_are_404_in_the_functions_error_shape(api):
    """API Gateway's MISSING_AUTHENTICATION_TOKEN (403), mapped by the API's gateway response to the 404 the
    function itself answers for a route it does not have."""
    for method, path in [("GET", "/v1/nothing-here"), ("DELETE", "/v1/models/churn"), ("GET", "/")]:
        response = api(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json() == {"error": {"code": "NotFound", "message": "no such route"}}, (method, path)


def test_malformed_json_is_rejected_before_the_function(api):
    response = api("POST", "/v1/models/churn/predict", data=b'{"instances": [',
                   headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert_clean(response)


def test_a_body_without_instances_fails_the_request_model(api):
    response = api("POST", "/v1/models/churn/predict", json={"rows": []})
    assert response.status_code == 400 and response.json() == {"error": {
        "code": "InvalidInput", "message": 'the body must be {"instances": [{feature: value, ...}, ...]}'}}


def test_oversized_body_is_refused(api):
    huge = b'{"instances": [{"plan": "' + b"x" * (11 * 1024 * 1024) + b'"}]}'
    response = api("POST", "/v1/models/churn/predict", data=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PayloadTooLarge"
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


def test_more_clients_at_once_than_the_local_workers_are_all_answered(api, trained_model):
    """The predict function is unreserved: on AWS it shares the account's 1,000, so eight clients at once are
    served; locally past four workers an invoke waits for one (it was a 500, a throttled Lambda's answer)."""
    from concurrent.futures import ThreadPoolExecutor

    instance = {"tenure_months": 3.0, "monthly_charges": 80.5, "support_calls": 2, "plan": "basic"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: api("POST", f"/v1/models/{trained_model}/predict",
                                              json={"instances": [instance]}), range(32)))
    assert [a.status_code for a in answers] == [200] * 32, {a.status_code: a.text for a in answers}


# --- framing: what HTTP libraries never send, answered as API Gateway answers it --------------------


def _raw(local_cloud, head: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    """A raw request to the gateway (the stage prefix added), its answer; the gateway has closed the connection."""
    url = urlsplit(local_cloud["ApiUrl"])
    method, path, *rest = head.split(" ", 2)
    head = " ".join([method, url.path.rstrip("/") + path, *rest])
    with socket.create_connection((url.hostname, url.port), timeout=WAIT_S) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(conn, method=method)
        response.begin()
        data = response.read()
        assert response.will_close and conn.recv(1) == b""
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data


@pytest.mark.parametrize("length, status, message", [
    ("abc", 400, "Bad Request"), ("-1", 400, "Bad Request"), (None, 411, "Length Required"),
])
def test_a_length_that_frames_no_body_is_answered_not_dropped(local_cloud, length, status, message):
    head = "POST /v1/models/churn/predict HTTP/1.1\nHost: localhost" + (f"\nContent-Length: {length}" if length else "")
    assert _raw(local_cloud, head, b'{"instances": [{}]}')[::2] == (status, json.dumps({"message": message}).encode())


def test_a_chunked_predict_is_answered(api, trained_model):
    instance = {"tenure_months": 3, "monthly_charges": 90.0, "support_calls": 4, "plan": "basic"}
    body = json.dumps({"instances": [instance]}).encode()
    response = api("POST", f"/v1/models/{trained_model}/predict", data=iter([body[:10], body[10:]]),
                   headers={"Content-Type": "application/json"})  # a generator: requests sends it chunked
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


def test_values_that_would_break_later_are_422_naming_the_field(api, trained_model):
    instance = {"tenure_months": 3, "monthly_charges": 90.0, "support_calls": 4, "plan": "basic"}
    path = f"/v1/models/{trained_model}/predict"
    cases = [("\"basic\"", '"\\ud800"', "field 'plan' must be valid Unicode text"),
             ("90.0", "1e308", "field 'monthly_charges' is out of range: the model takes numbers between "
                              "-3.4028234663852886e+38 and 3.4028234663852886e+38")]
    for original, hostile, message in cases:
        text = json.dumps({"instances": [instance]}).replace(original, hostile)
        response = api("POST", path, data=text.encode(), headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (hostile, response.text)
        assert message in strict_json(response.text)["error"]["message"]


def test_hostile_bodies_get_no_5xx_and_strict_json_over_http(api, trained_model):
    from tests.serving.test_fuzz import FIXED, INTERNAL, generated_bodies

    path = f"/v1/models/{trained_model}/predict"
    for case, body in FIXED + generated_bodies(20, seed=61):
        data = body if isinstance(body, bytes) else body.encode("utf-8", errors="surrogatepass")
        response = api("POST", path, data=data, headers={"Content-Type": "application/json"})
        assert 200 <= response.status_code < 500, (case, response.status_code, response.text[:300])
        strict_json(response.text)
        for marker in INTERNAL:
            assert marker not in response.text, (case, marker)
