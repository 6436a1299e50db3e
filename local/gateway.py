"""The REST API of the template, served on 127.0.0.1 as API Gateway serves it.

Routes, API-key requirements, request validators, body models and Lambda proxy
integrations come from the template's AWS::ApiGateway::* resources. Requests and errors
follow API Gateway: `/<stage>/<path>`, 403 "Missing Authentication Token" for unknown
routes, 403 "Forbidden" without a valid key, 429 when a key's usage plan throttles,
413 past 10 MB, 400 "Invalid request body" when the body fails the method's model,
502 when the function fails, 500 when Lambda throttles it. The proxy event is the REST API
(v1) format.
"""

import base64
import json
import re
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

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


@dataclass
class Route:
    method: str
    resource: str  # "/v1/models/{name}/predict"
    pattern: re.Pattern
    function_arn: str
    api_key_required: bool
    body_validator: jsonschema.Validator | None  # the method's request model (API Gateway models are draft 4)


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
        uri = template.resolve(props["Integration"]["Uri"])
        function_arn = uri.split("/functions/")[1].rsplit("/invocations", 1)[0]
        validator = validators.get(props.get("RequestValidatorId", {}).get("Ref", ""), {}).get("Properties", {})
        model_ref = props.get("RequestModels", {}).get("application/json", {})
        schema = models.get(model_ref.get("Ref", "")) if validator.get("ValidateRequestBody") else None
        validator = jsonschema.Draft4Validator(schema) if schema is not None else None
        api_key_required = bool(props.get("ApiKeyRequired"))
        routes.append(Route(props["HttpMethod"], resource, pattern, function_arn, api_key_required, validator))
    return stage, routes


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
                 port: int) -> None:
        self.stage, self.routes = routes_from_template(template)
        self.runtime = runtime
        self.apigateway = apigateway_client
        self.account = template.account
        self._keys: dict[str, KeyPlan] = {}
        self._keys_loaded = 0.0
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"gateway": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
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
            return _message(403, "Missing Authentication Token")
        route, found = match
        lower = {k.lower(): v for k, v in headers.items()}
        plan = None
        if route.api_key_required:
            plan = self.key_plan(lower.get("x-api-key", ""))
            if plan is None:
                return _message(403, "Forbidden")
            if not self.allow(plan):
                return _message(429, "Too Many Requests")
        if len(body) > MAX_PAYLOAD_BYTES:
            return _message(413, "Request Too Long")
        if route.body_validator is not None and not _valid_body(body, route.body_validator):
            return _message(400, "Invalid request body")
        event = self._proxy_event(route, found.groupdict(), path, method, headers, parts.query, body, plan)
        try:
            result = self.runtime.invoke(route.function_arn, event)
        except TooManyRequestsException:
            # Not 429: "If the Lambda API rejects the invocation request, API Gateway returns a 500
            # error code" (Lambda developer guide, "Handling Lambda errors with an API Gateway API").
            return _message(500, "Internal server error")
        if result.function_error:
            return _message(502, "Internal server error")
        return _proxy_response(result.payload)

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


def _proxy_response(payload: bytes) -> tuple[int, dict, bytes]:
    try:
        response: dict[str, Any] = json.loads(payload)
        status = int(response["statusCode"])
    except (ValueError, KeyError, TypeError):
        return _message(502, "Internal server error")
    headers = dict(response.get("headers") or {})
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(values)
    body = response.get("body") or ""
    data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return status, headers, data


class _Handler(BaseHTTPRequestHandler):
    gateway: Gateway
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without this a kept-alive connection waits ~40 ms
    # (Nagle's algorithm against the client's delayed ACK) on every response.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            status, headers, data = _message(413, "Request Too Long")
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length else b""
            try:
                status, headers, data = self.gateway.handle(self.command, self.path, dict(self.headers.items()), body)
            except Exception:  # noqa: BLE001 - the gateway never shows its internals
                status, headers, data = _message(500, "Internal server error")
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in {"content-length", "connection"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the functions log
        pass
