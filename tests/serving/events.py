"""API Gateway REST proxy events, built by hand the way API Gateway sends them to the function."""

import base64
import json
import re
import uuid

ROUTES = [("/health", r"^/health$"), ("/v1/models/{name}", r"^/v1/models/(?P<name>[^/]+)$"),
          ("/v1/models/{name}/predict", r"^/v1/models/(?P<name>[^/]+)/predict$"),
          ("/v1/models/{name}/feedback", r"^/v1/models/(?P<name>[^/]+)/feedback$")]


def api_event(method: str, path: str, body=None, *, headers: dict | None = None, encoded: bool = False) -> dict:
    """A REST proxy event; `body` may be a dict/list (sent as JSON), str or bytes (sent as is)."""
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode() if encoded else body.decode()
    elif isinstance(body, str) and encoded:
        body = base64.b64encode(body.encode()).decode()
    resource, parameters = path, None
    for template, pattern in ROUTES:
        match = re.match(pattern, path)
        if match:
            resource, parameters = template, match.groupdict() or None
    request_id = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", **(headers or {})}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": request_id,
            "accountId": "123456789012",
            "apiId": "test",
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": 1_700_000_000_000,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest", "apiKeyId": "key-1"},
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


def call(handler, context, method: str, path: str, body=None, **kwargs) -> tuple[int, dict, dict]:
    """Invoke the handler; returns (status, parsed JSON body, headers).

    The REST resolver answers with multiValueHeaders (no "headers"): both are merged, last value wins.
    """
    response = handler(api_event(method, path, body, **kwargs), context)
    payload = response.get("body") or ""
    if response.get("isBase64Encoded"):
        payload = base64.b64decode(payload).decode()
    headers = {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items() if values}
    headers.update(response.get("headers") or {})
    return response["statusCode"], json.loads(payload) if payload else {}, headers


def emf_documents(text: str) -> list[dict]:
    """The CloudWatch embedded-metric documents printed to stdout."""
    documents = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and '"_aws"' in line:
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if "CloudWatchMetrics" in document.get("_aws", {}):
                documents.append(document)
    return documents
