"""The REST API of the template, served on 127.0.0.1 as API Gateway serves it.

Routes, API-key requirements, request validators, body models, Lambda proxy integrations
and mock integrations come from the template's AWS::ApiGateway::* resources. Requests and
errors follow API Gateway: `/<stage>/<path>`, 403 "Missing Authentication Token" for unknown
routes, 403 "Forbidden" without a valid key, 429 when a key's usage plan throttles,
413 past 10 MB, 400 "Invalid request body" when the body fails the method's model,
502 when the function fails, 500 when Lambda throttles it. The proxy event is the REST API
(v1) format. A MOCK integration is answered by the gateway itself, invoking nothing: the
request template's statusCode selects the integration response, whose status, static
headers and response template make the answer (static templates only: no VTL). The gateway's
own refusals (403, 404, 413, 429, 400, 5xx) are the template's GatewayResponses when it has
them: the response type's own, else DEFAULT_4XX/DEFAULT_5XX, with their status code, static
headers and body template (static text and $context.error.message, messageString and
responseType); without one, API Gateway's {"message": ...}.

The body is framed as HTTP/1.1 frames it: Content-Length, or chunked transfer encoding.
A length that is not a number is 400, a POST/PUT/PATCH with neither is 411 "Length
Required", more than 10 MB is 413 (chunked too), conflicting or unknown framing is 400/501.
After such an answer the connection is closed, and what the client still sends of its body
is read and dropped first (bounded in bytes and time), so the client reads the answer
instead of a reset connection. A client that stops sending mid-request gets 408 after
IDLE_TIMEOUT_S.
"""

import base64
import json
import logging
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema

from local.runtime import LambdaRuntime, TooManyRequestsException
from local.template import StackTemplate

log = logging.getLogger("mlops.local")

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
IDLE_TIMEOUT_S = 60.0  # a connection idle this long, between requests or within one, is closed
LINGER_S = 2.0  # after refusing a body, how long the gateway reads and drops what the client still sends
LINGER_IDLE_S = 0.5  # ... and how long it waits for more of it
DRAIN_MAX_BYTES = 4 * MAX_PAYLOAD_BYTES  # ... and how much it reads at most
MAX_LINE_BYTES = 8192  # a chunk-size or trailer line
MAX_TRAILER_LINES = 100
BODY_METHODS = {"POST", "PUT", "PATCH"}  # methods whose requests must say how long their body is


@dataclass(frozen=True)
class MockResponse:
    """One integration response of a MOCK integration."""

    status: int
    selection_pattern: re.Pattern | None  # None: the default response
    headers: dict[str, str]  # static header values (response parameters)
    templates: dict[str, str]  # content type -> body


@dataclass(frozen=True)
class MockIntegration:
    request_templates: dict[str, str]  # content type -> the template that gives {"statusCode": N}
    passthrough: str  # WHEN_NO_MATCH, WHEN_NO_TEMPLATES or NEVER
    responses: list[MockResponse]


@dataclass
class Route:
    method: str
    resource: str  # "/v1/models/{name}/predict"
    pattern: re.Pattern
    function_arn: str | None  # a Lambda proxy integration's function (None for a mock)
    api_key_required: bool
    body_validator: jsonschema.Validator | None  # the method's request model (API Gateway models are draft 4)
    mock: MockIntegration | None = None


@dataclass(frozen=True)
class GatewayResponse:
    """One AWS::ApiGateway::GatewayResponse: how API Gateway answers one kind of its own refusals."""

    status: int | None  # None: the response type's own status
    headers: dict[str, str]
    template: str | None  # the application/json body template


# API Gateway's refusals: response type -> its default status and message.
REFUSALS = {
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token"),
    "INVALID_API_KEY": (403, "Forbidden"),
    "THROTTLED": (429, "Too Many Requests"),
    "QUOTA_EXCEEDED": (429, "Limit Exceeded"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "BAD_REQUEST_BODY": (400, "Invalid request body"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type"),
    "API_CONFIGURATION_ERROR": (500, "Internal server error"),
}
TEMPLATE_VARIABLES = ("$context.error.messageString", "$context.error.message", "$context.error.responseType")


@dataclass
class KeyPlan:
    key_id: str
    rate: float
    burst: int


def routes_from_template(template: StackTemplate) -> tuple[str, list[Route]]:
    resources = template.body["Resources"]
    by_type = lambda t: {k: v for k, v in resources.items() if v["Type"] == t}  # noqa: E731
    api_resources = by_type("AWS::ApiGateway::Resource")
    models = {k: v["Properties"]["Schema"] for k, v in by_type("AWS::ApiGateway::Model").items()}
    validators = by_type("AWS::ApiGateway::RequestValidator")
    (stage,) = [v["Properties"]["StageName"] for v in by_type("AWS::ApiGateway::Stage").values()]
    routes = []
    for method in by_type("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        segments: list[str] = []
        ref = props["ResourceId"].get("Ref")
        while ref in api_resources:
            segments.insert(0, api_resources[ref]["Properties"]["PathPart"])
            ref = api_resources[ref]["Properties"]["ParentId"].get("Ref")
        resource = "/" + "/".join(segments)
        pattern = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(resource)) + "$")
        integration = props.get("Integration") or {}
        kind = integration.get("Type", "AWS_PROXY")
        where = f"{props['HttpMethod']} {resource}"
        function_arn, mock = None, None
        if kind == "MOCK":
            mock = _mock_integration(integration, where)
        elif kind == "AWS_PROXY":
            uri = template.resolve(integration["Uri"])
            function_arn = uri.split("/functions/")[1].rsplit("/invocations", 1)[0]
        else:
            raise ValueError(f"{where}: the local gateway serves Lambda proxy and MOCK integrations, not {kind}")
        validator = validators.get(props.get("RequestValidatorId", {}).get("Ref", ""), {}).get("Properties", {})
        model_ref = props.get("RequestModels", {}).get("application/json", {})
        schema = models.get(model_ref.get("Ref", "")) if validator.get("ValidateRequestBody") else None
        validator = jsonschema.Draft4Validator(schema) if schema is not None else None
        api_key_required = bool(props.get("ApiKeyRequired"))
        routes.append(Route(props["HttpMethod"], resource, pattern, function_arn, api_key_required, validator, mock))
    return stage, routes


def gateway_responses_from_template(template: StackTemplate) -> dict[str, GatewayResponse]:
    """The API's gateway responses by response type (DEFAULT_4XX, THROTTLED, ...)."""
    responses = {}
    for resource in template.body["Resources"].values():
        if resource["Type"] != "AWS::ApiGateway::GatewayResponse":
            continue
        props = resource["Properties"]
        kind = props["ResponseType"]
        where = f"gateway response {kind}"
        text = (props.get("ResponseTemplates") or {}).get("application/json")
        if text is not None:
            _static(_without_variables(text), where)
        status = props.get("StatusCode")
        responses[kind] = GatewayResponse(
            int(status) if status else None,
            _static_headers(props.get("ResponseParameters") or {}, "gatewayresponse.header.", where),
            text,
        )
    return responses


def _without_variables(text: str) -> str:
    for variable in sorted(TEMPLATE_VARIABLES, key=len, reverse=True):  # messageString before message
        text = text.replace(variable, "")
    return text


def _static_headers(parameters: dict[str, str], prefix: str, where: str) -> dict[str, str]:
    headers = {}
    for name, value in parameters.items():
        if not (name.startswith(prefix) and len(value) >= 2 and value[0] == value[-1] == "'"):
            raise ValueError(f"{where}: the local gateway maps static response headers only, not {name}")
        headers[name[len(prefix):]] = value[1:-1]
    return headers


def refusal(responses: dict[str, GatewayResponse], kind: str, status: int | None = None,
            message: str | None = None) -> tuple[int, dict, bytes]:
    """API Gateway's answer for one of its own refusals: the response type's gateway response, else the
    DEFAULT_4XX/5XX one, else {"message": ...}. `status`/`message` for the kinds without a type of their
    own (a failed or throttled Lambda invocation)."""
    default_status, default_message = REFUSALS.get(kind, (status or 500, message or "Internal server error"))
    status, message = status or default_status, message or default_message
    configured = responses.get(kind) or responses.get("DEFAULT_4XX" if status < 500 else "DEFAULT_5XX")
    if configured is None:
        return _message(status, message)
    status = configured.status or status
    headers = {"Content-Type": "application/json", **configured.headers}
    if configured.template is None:
        return status, headers, json.dumps({"message": message}).encode()
    body = (configured.template.replace("$context.error.messageString", json.dumps(message))
            .replace("$context.error.message", message).replace("$context.error.responseType", kind))
    return status, headers, body.encode()


def _mock_integration(integration: dict, where: str) -> MockIntegration:
    responses = []
    for response in integration.get("IntegrationResponses") or []:
        headers = _static_headers(response.get("ResponseParameters") or {}, "method.response.header.", where)
        pattern = response.get("SelectionPattern")
        responses.append(MockResponse(
            status=int(response["StatusCode"]),
            selection_pattern=re.compile(pattern) if pattern else None,
            headers=headers,
            templates={kind: _static(text, where) for kind, text in (response.get("ResponseTemplates") or {}).items()},
        ))
    requests = integration.get("RequestTemplates") or {}
    templates = {kind.lower(): _static(text, where) for kind, text in requests.items()}
    return MockIntegration(templates, integration.get("PassthroughBehavior", "WHEN_NO_MATCH"), responses)


def _static(template: str, where: str) -> str:
    """A mapping template with no Velocity (VTL) in it: no $variable, no #directive."""
    if "$" in template or "#" in template:
        raise ValueError(f"{where}: the local gateway serves static mapping templates only (no VTL)")
    return template


def answer_mock(mock: MockIntegration, headers: dict[str, str], body: bytes,
                responses: dict[str, GatewayResponse] | None = None) -> tuple[int, dict, bytes]:
    """What API Gateway answers for a MOCK integration, with no backend: the request template (by the
    request's Content-Type, application/json when it has none) gives {"statusCode": N}, which selects the
    integration response (its selection pattern, else the default one)."""
    content_type = (headers.get("content-type") or "application/json").split(";")[0].strip().lower()
    request = mock.request_templates.get(content_type)
    if request is None:
        if mock.passthrough == "NEVER" or (mock.passthrough == "WHEN_NO_TEMPLATES" and mock.request_templates):
            return refusal(responses or {}, "UNSUPPORTED_MEDIA_TYPE")
        request = body.decode("utf-8", errors="replace")  # passed through as the mapped request
    try:
        status_code = int(json.loads(request)["statusCode"])
    except (ValueError, KeyError, TypeError):  # API Gateway: a mock's request must map to a statusCode
        return refusal(responses or {}, "API_CONFIGURATION_ERROR")
    matching = [r for r in mock.responses if r.selection_pattern and r.selection_pattern.fullmatch(str(status_code))]
    selected = next(iter(matching), next((r for r in mock.responses if r.selection_pattern is None), None))
    if selected is None:
        return refusal(responses or {}, "API_CONFIGURATION_ERROR")
    kind = "application/json" if "application/json" in selected.templates else next(iter(selected.templates), None)
    data = selected.templates[kind].encode() if kind else b""
    return selected.status, {"Content-Type": kind or "application/json", **selected.headers}, data


class TokenBucket:
    def __init__(self, rate: float, burst: int):
        self.rate, self.capacity = rate, max(1, burst)
        self.tokens, self.updated = float(self.capacity), time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class Gateway:
    def __init__(self, template: StackTemplate, runtime: LambdaRuntime, apigateway_client: Any, host: str,
                 port: int, idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.stage, self.routes = routes_from_template(template)
        self.responses = gateway_responses_from_template(template)
        self.runtime = runtime
        self.apigateway = apigateway_client
        self.account = template.account
        self._keys: dict[str, KeyPlan] = {}
        self._keys_loaded = 0.0
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"gateway": self, "timeout": idle_timeout_s})
        self.server = _Server((host, port), handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/{self.stage}/"

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                         name="gateway").start()  # a stop waits one poll: keep it short

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def key_plan(self, value: str) -> KeyPlan | None:
        """The enabled key with this value, with its usage plan's throttle (cached for 5 s)."""
        with self._lock:
            if time.monotonic() - self._keys_loaded > 5:
                keys = {}
                for plan in self.apigateway.get_usage_plans()["items"]:
                    throttle = plan.get("throttle", {})
                    for key in self.apigateway.get_usage_plan_keys(usagePlanId=plan["id"])["items"]:
                        full = self.apigateway.get_api_key(apiKey=key["id"], includeValue=True)
                        if full.get("enabled", True):
                            rate = float(throttle.get("rateLimit", 10_000))
                            keys[full["value"]] = KeyPlan(key["id"], rate, int(throttle.get("burstLimit", 5_000)))
                self._keys, self._keys_loaded = keys, time.monotonic()
            return self._keys.get(value)

    def allow(self, plan: KeyPlan) -> bool:
        with self._lock:
            bucket = self._buckets.setdefault(plan.key_id, TokenBucket(plan.rate, plan.burst))
        return bucket.take()

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        parts = urlsplit(raw_path)
        prefix = f"/{self.stage}"
        if not (parts.path == prefix or parts.path.startswith(prefix + "/")):
            return _message(403, "Missing Authentication Token")
        path = parts.path[len(prefix):] or "/"
        match = next(((r, m) for r in self.routes if r.method == method and (m := r.pattern.match(path))), None)
        if match is None:
            return self.refuse("MISSING_AUTHENTICATION_TOKEN")
        route, found = match
        lower = {k.lower(): v for k, v in headers.items()}
        plan = None
        if route.api_key_required:
            plan = self.key_plan(lower.get("x-api-key", ""))
            if plan is None:  # no key, or one that is not valid: the same answer
                return self.refuse("INVALID_API_KEY")
            if not self.allow(plan):
                return self.refuse("THROTTLED")
        if len(body) > MAX_PAYLOAD_BYTES:
            return self.refuse("REQUEST_TOO_LARGE")
        if route.body_validator is not None and not _valid_body(body, route.body_validator):
            return self.refuse("BAD_REQUEST_BODY")
        if route.mock is not None:
            return answer_mock(route.mock, lower, body, self.responses)
        assert route.function_arn is not None
        event = self._proxy_event(route, found.groupdict(), path, method, headers, parts.query, body, plan)
        try:
            result = self.runtime.invoke(route.function_arn, event)
        except TooManyRequestsException:
            # Not 429: "If the Lambda API rejects the invocation request, API Gateway returns a 500
            # error code" (Lambda developer guide, "Handling Lambda errors with an API Gateway API").
            return self.refuse("DEFAULT_5XX", 500)
        if result.function_error:
            return self.refuse("DEFAULT_5XX", 502)
        return _proxy_response(result.payload) or self.refuse("DEFAULT_5XX", 502)

    def refuse(self, kind: str, status: int | None = None) -> tuple[int, dict, bytes]:
        return refusal(self.responses, kind, status)

    def _proxy_event(self, route: Route, path_params: dict[str, str], path: str, method: str, headers: dict[str, str],
                     query: str, body: bytes, plan: KeyPlan | None) -> dict:
        request_id = str(uuid.uuid4())
        multi_query = parse_qs(query, keep_blank_values=True)
        try:
            text, is_b64 = (body.decode("utf-8"), False) if body else (None, False)
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
        return {
            "resource": route.resource,
            "path": path,
            "httpMethod": method,
            "headers": dict(headers),
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.resource,
                "httpMethod": method,
                "path": f"/{self.stage}{path}",
                "stage": self.stage,
                "requestId": request_id,
                "extendedRequestId": request_id,
                "accountId": self.account,
                "apiId": "local",
                "protocol": "HTTP/1.1",
                "requestTimeEpoch": int(time.time() * 1000),
                "identity": {
                    "sourceIp": "127.0.0.1",
                    "userAgent": headers.get("User-Agent", ""),
                    "apiKey": headers.get("x-api-key") if plan else None,
                    "apiKeyId": plan.key_id if plan else None,
                },
            },
            "body": text,
            "isBase64Encoded": is_b64,
        }


def _valid_body(body: bytes, validator: jsonschema.Validator) -> bool:
    try:
        document = json.loads(body or b"null")
    except (ValueError, RecursionError):
        return False
    return validator.is_valid(document)


def _message(status: int, message: str) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps({"message": message}).encode()


def _proxy_response(payload: bytes) -> tuple[int, dict, bytes] | None:
    """The function's answer as API Gateway relays it (None: a malformed proxy response, a 502)."""
    try:
        response: dict[str, Any] = json.loads(payload)
        status = int(response["statusCode"])
    except (ValueError, KeyError, TypeError):
        return None
    headers = dict(response.get("headers") or {})
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(values)
    body = response.get("body") or ""
    data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return status, headers, data


class _Refused(Exception):
    """A request whose body cannot be taken: its answer, and how much body the client may still send."""

    def __init__(self, status: int, message: str, unread: int | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.unread = unread  # bytes still to come (None: unknown)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-answer is not an error of the gateway; anything else is logged, never printed."""
        import sys

        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            log.warning("gateway: a connection failed", exc_info=error)


class _Handler(BaseHTTPRequestHandler):
    gateway: Gateway
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without this a kept-alive connection waits ~40 ms
    # (Nagle's algorithm against the client's delayed ACK) on every response.
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_S  # set on each socket: a silent client does not hold a thread forever

    def handle_expect_100(self) -> bool:
        """"Expect: 100-continue": a body the gateway would refuse is refused before the client sends it."""
        try:
            self._framing()
        except _Refused:
            return True  # no 100 Continue: _serve answers with the refusal
        return super().handle_expect_100()

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _Refused as refused:
            # Past 10 MB is the API's REQUEST_TOO_LARGE; the rest is HTTP framing, below any API.
            answer = (self.gateway.refuse("REQUEST_TOO_LARGE") if refused.status == 413
                      else _message(refused.status, refused.message))
            self._answer(*answer, close=True)
            self._drain(refused.unread)
            return
        except TimeoutError:
            self._answer(*_message(408, "Request Timeout"), close=True)
            return
        try:
            status, headers, data = self.gateway.handle(self.command, self.path, dict(self.headers.items()), body)
        except Exception:  # the gateway never shows its internals: they go to its log
            log.warning("gateway: request failed", exc_info=True)
            status, headers, data = _message(500, "Internal server error")
        self._answer(status, headers, data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def _framing(self) -> tuple[bool, int]:
        """(chunked, length) of the request's body from its headers; _Refused when they cannot frame one."""
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if encodings:
            if lengths:  # two framings: which one the client meant is anyone's guess (request smuggling)
                raise _Refused(400, "Bad Request")
            codings = [c.strip().lower() for value in encodings for c in value.split(",") if c.strip()]
            if codings == ["chunked"]:
                return True, 0
            if codings and codings[-1] == "chunked":
                raise _Refused(501, "Not Implemented")  # gzip, deflate...: codings the gateway does not decode
            raise _Refused(400, "Bad Request")  # not chunked last: the body has no end
        if not lengths:
            if self.command in BODY_METHODS:  # a body may follow all the same: drained as an unknown one
                raise _Refused(411, "Length Required")
            return False, 0
        values = {value.strip() for value in lengths}
        value = values.pop()
        if values or not re.fullmatch(r"[0-9]{1,19}", value):  # "abc", "-1", "1e3", "5, 6", 20+ digits
            raise _Refused(400, "Bad Request")
        length = int(value)
        if length > MAX_PAYLOAD_BYTES:
            raise _Refused(413, "Request Too Long", unread=length)
        return False, length

    def _read_body(self) -> bytes:
        chunked, length = self._framing()
        if chunked:
            return self._read_chunked()
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client closed before its body was whole
            raise _Refused(400, "Bad Request", unread=0)
        return body

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while size := self._chunk_size():
            if len(body) + size > MAX_PAYLOAD_BYTES:
                raise _Refused(413, "Request Too Long")
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.read(2) != b"\r\n":
                raise _Refused(400, "Bad Request")
            body += chunk
        for _ in range(MAX_TRAILER_LINES):  # trailer fields, up to the empty line
            line = self.rfile.readline(MAX_LINE_BYTES + 1)
            if line in (b"\r\n", b"\n"):
                return bytes(body)
            if not line.endswith(b"\n"):
                break
        raise _Refused(400, "Bad Request")

    def _chunk_size(self) -> int:
        line = self.rfile.readline(MAX_LINE_BYTES + 1)
        size = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
        if not line.endswith(b"\n") or not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size):
            raise _Refused(400, "Bad Request")
        return int(size, 16)

    def _answer(self, status: int, headers: dict, data: bytes, close: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")  # and the server closes it after this answer
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _drain(self, unread: int | None) -> None:
        """After refusing a body: read and drop what the client still sends (bounded in bytes and time).

        Closing a socket with unread data resets the connection, and a client still sending its body
        would see the reset instead of the answer. The answer is complete (write side shut), so a client
        that reads it and closes ends this early.
        """
        if unread == 0:
            return
        budget = DRAIN_MAX_BYTES if unread is None else min(unread, DRAIN_MAX_BYTES)
        deadline = time.monotonic() + LINGER_S
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_IDLE_S)
            while budget > 0 and time.monotonic() < deadline:
                data = self.rfile.read1(min(65_536, budget))
                if not data:
                    break
                budget -= len(data)
        except OSError:  # including the timeout: the client has stopped sending
            pass

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the functions log
        pass
