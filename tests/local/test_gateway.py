"""The local REST gateway as a client meets it: mock integrations, and bodies framed any way HTTP/1.1 allows.

A gateway is served on a free port from a small template of MOCK routes (no Lambda runtime: nothing
is invoked); a raw socket client sends what a well-behaved HTTP library never would.
"""

import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from local.gateway import MAX_PAYLOAD_BYTES, Gateway, answer_mock, routes_from_template
from local.template import StackTemplate

WAIT_S = 10  # a bound on how long an answer may take, not a measurement

STATUS_RESPONSES = [
    {"StatusCode": "201", "SelectionPattern": "201", "ResponseTemplates": {"application/json": '{"created": true}'}},
    {"StatusCode": "200", "ResponseTemplates": {"application/json": '{"status": "ok"}'},
     "ResponseParameters": {"method.response.header.Cache-Control": "'no-store'"}},
]


def mock_method(http_method: str, resource: str, **integration) -> dict:
    return {"Type": "AWS::ApiGateway::Method", "Properties": {
        "HttpMethod": http_method, "ResourceId": {"Ref": resource}, "AuthorizationType": "NONE",
        "Integration": {"Type": "MOCK", **integration}}}


def mock_template() -> StackTemplate:
    """GET /health as the platform's template has it; POST /status whose body is its mapped request
    (passthrough): {"statusCode": 201} selects the 201 response, so the answer shows the body arrived whole."""
    root = {"Fn::GetAtt": ["Api", "RootResourceId"]}
    return StackTemplate(name="Demo", body={"Outputs": {}, "Resources": {
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "api"}},
        "Health": {"Type": "AWS::ApiGateway::Resource", "Properties": {"PathPart": "health", "ParentId": root}},
        "Status": {"Type": "AWS::ApiGateway::Resource", "Properties": {"PathPart": "status", "ParentId": root}},
        "GetHealth": mock_method("GET", "Health", PassthroughBehavior="NEVER",
                                 RequestTemplates={"application/json": '{"statusCode": 200}'},
                                 IntegrationResponses=STATUS_RESPONSES[1:]),
        "PostStatus": mock_method("POST", "Status", PassthroughBehavior="WHEN_NO_MATCH",
                                  IntegrationResponses=STATUS_RESPONSES),
        "Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {"StageName": "prod"}},
    }})


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    served = Gateway(mock_template(), None, None, "127.0.0.1", 0, idle_timeout_s=0.3)  # mocks only: no runtime
    served.start()
    yield served
    served.stop()


def port_of(gateway: Gateway) -> int:
    return gateway.server.server_address[1]


class Answer:
    def __init__(self, conn: socket.socket, method: str = "GET"):
        response = http.client.HTTPResponse(conn, method=method)
        response.begin()
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.body = response.read()
        self.closed = response.will_close

    def json(self):
        return json.loads(self.body)


def exchange(gateway: Gateway, head: str, body: bytes = b"") -> tuple[Answer, bool]:
    """Send a raw request (head lines without the final blank line, then body); the answer, and whether the
    gateway then closed the connection."""
    with socket.create_connection(("127.0.0.1", port_of(gateway)), timeout=WAIT_S) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
        answer = Answer(conn, head.split(" ", 1)[0])
        return answer, answer.closed and conn.recv(1) == b""


def post(path: str = "/prod/status", *headers: str) -> str:
    return "\n".join([f"POST {path} HTTP/1.1", "Host: localhost", *headers])


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


STATUS_201 = b'{"statusCode": 201}'


# --- mock integrations -------------------------------------------------------------------------


def test_the_platforms_health_route_is_a_mock_answered_without_any_function(template_dict):
    template = StackTemplate(name="MlopsPlatform", body=template_dict, attributes={
        lid: {"Arn": f"arn:aws:lambda:us-east-1:123456789012:function:{lid}", "Ref": lid}
        for lid in template_dict["Resources"]
    })
    stage, routes = routes_from_template(template)
    (health,) = [r for r in routes if r.resource == "/health"]
    assert health.mock is not None and health.function_arn is None and not health.api_key_required
    assert all(r.function_arn for r in routes if r.resource != "/health")

    gateway = Gateway(template, None, None, "127.0.0.1", 0)  # no Lambda runtime at all
    try:
        status, headers, body = gateway.handle("GET", f"/{stage}/health", {}, b"")
    finally:
        gateway.server.server_close()
    assert (status, headers["Content-Type"], json.loads(body)) == (200, "application/json", {"status": "ok"})


def test_a_mock_selects_its_response_from_the_mapped_status_code():
    routes = {r.resource: r for r in routes_from_template(mock_template())[1]}
    health, status = routes["/health"].mock, routes["/status"].mock
    assert health is not None and status is not None

    assert answer_mock(health, {}, b"") == (200, {"Content-Type": "application/json", "Cache-Control": "no-store"},
                                            b'{"status": "ok"}')
    assert answer_mock(health, {"content-type": "application/json; charset=utf-8"}, b"x")[0] == 200
    # No template for the request's content type, and no passthrough: API Gateway's 415.
    assert answer_mock(health, {"content-type": "text/plain"}, b"")[0] == 415
    # Passthrough: the body is the mapped request.
    assert answer_mock(status, {}, STATUS_201) == (201, {"Content-Type": "application/json"}, b'{"created": true}')
    assert answer_mock(status, {}, b'{"statusCode": 204}')[0] == 200  # no pattern matches: the default response
    assert answer_mock(status, {}, b"not a mapping")[:1] == (500,)  # a mock request without a statusCode


def test_a_mock_template_the_gateway_cannot_render_is_refused_when_loading_routes():
    body = mock_template().body
    body["Resources"]["GetHealth"]["Properties"]["Integration"]["IntegrationResponses"] = [
        {"StatusCode": "200", "ResponseTemplates": {"application/json": '{"id": "$context.requestId"}'}}]
    with pytest.raises(ValueError, match="GET /health: the local gateway serves static mapping templates only"):
        routes_from_template(StackTemplate(name="Demo", body=body))


def test_a_mock_is_served_over_http(gateway):
    answer, _ = exchange(gateway, "GET /prod/health HTTP/1.1\nHost: localhost")
    assert (answer.status, answer.json(), answer.headers["cache-control"]) == (200, {"status": "ok"}, "no-store")
    answer, _ = exchange(gateway, "HEAD /prod/health HTTP/1.1\nHost: localhost")  # no HEAD method: API Gateway's 403
    assert answer.status == 403 and int(answer.headers["content-length"]) > 0 and answer.body == b""  # headers only


# --- framing the body --------------------------------------------------------------------------


def test_a_body_with_its_length_is_read_and_the_connection_kept(gateway):
    with socket.create_connection(("127.0.0.1", port_of(gateway)), timeout=WAIT_S) as conn:
        for _ in range(2):
            request = post("/prod/status", f"Content-Length: {len(STATUS_201)}") + "\n\n"
            conn.sendall(request.replace("\n", "\r\n").encode() + STATUS_201)
            answer = Answer(conn)
            assert (answer.status, answer.json(), answer.closed) == (201, {"created": True}, False)


@pytest.mark.parametrize("length", ["abc", "-1", "+5", "1e3", "0x10", "5, 5", " ", "9" * 40])
def test_a_content_length_that_is_not_a_length_is_400_and_the_connection_closed(gateway, length):
    answer, closed = exchange(gateway, post("/prod/status", f"Content-Length: {length}"), b"12345")
    assert (answer.status, answer.json()) == (400, {"message": "Bad Request"}), length
    assert answer.headers["connection"] == "close" and closed, length


def test_two_different_content_lengths_are_400(gateway):
    answer, closed = exchange(gateway, post("/prod/status", "Content-Length: 5", "Content-Length: 6"), b"123456")
    assert answer.status == 400 and closed


def test_a_post_without_a_length_is_411(gateway):
    for body in [b"", b'{"statusCode": 201}']:  # a body sent anyway is dropped, not answered by a reset
        answer, closed = exchange(gateway, post(), body)
        assert (answer.status, answer.json()) == (411, {"message": "Length Required"}) and closed
    answer, _ = exchange(gateway, "GET /prod/health HTTP/1.1\nHost: localhost")  # a GET needs none
    assert answer.status == 200


def test_a_body_over_10_mb_is_413_read_to_the_end_and_answered_cleanly(gateway):
    """The client sends the whole body before it reads: the gateway drops it, so the client is not reset."""
    body = b"x" * (MAX_PAYLOAD_BYTES + 1)
    answer, closed = exchange(gateway, post("/prod/status", f"Content-Length: {len(body)}"), body)
    assert (answer.status, answer.json()) == (413, {"message": "Request Too Long"}) and closed


def test_a_body_over_10_mb_announced_with_expect_100_continue_is_refused_before_it_is_sent(gateway):
    with socket.create_connection(("127.0.0.1", port_of(gateway)), timeout=WAIT_S) as conn:
        head = post("/prod/status", f"Content-Length: {MAX_PAYLOAD_BYTES + 1}", "Expect: 100-continue")
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n")
        answer = Answer(conn)  # without sending a byte of the body
        assert answer.status == 413 and answer.closed
    with socket.create_connection(("127.0.0.1", port_of(gateway)), timeout=WAIT_S) as conn:
        head = post("/prod/status", f"Content-Length: {len(STATUS_201)}", "Expect: 100-continue")
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n")
        conn.sendall(STATUS_201)
        assert Answer(conn).status == 201


def test_a_chunked_body_is_decoded(gateway):
    body = chunked(STATUS_201[:5], STATUS_201[5:6], STATUS_201[6:])
    answer, _ = exchange(gateway, post("/prod/status", "Transfer-Encoding: chunked"), body)
    assert (answer.status, answer.json()) == (201, {"created": True})
    # Chunk extensions and trailer fields are allowed, and ignored.
    body = b"%x;name=value\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(STATUS_201), STATUS_201)
    answer, _ = exchange(gateway, post("/prod/status", "Transfer-Encoding: Chunked"), body)
    assert answer.status == 201


MALFORMED_CHUNKS = {"not hex": b"zz\r\n{}\r\n0\r\n\r\n", "negative": b"-1\r\n", "short": b"5\r\n{}\r\n0\r\n\r\n",
                    "no CRLF": b"2\r\n{}XX0\r\n\r\n", "long line": b"1" * 10_000 + b"\r\n"}


@pytest.mark.parametrize("body", MALFORMED_CHUNKS.values(), ids=MALFORMED_CHUNKS.keys())
def test_a_malformed_chunked_body_is_400(gateway, body):
    answer, closed = exchange(gateway, post("/prod/status", "Transfer-Encoding: chunked"), body)
    assert (answer.status, answer.json()) == (400, {"message": "Bad Request"}) and closed


def test_a_chunked_body_over_10_mb_is_413_and_answered_cleanly(gateway):
    piece = b"x" * (1024 * 1024)
    body = chunked(*[piece] * 11)
    answer, closed = exchange(gateway, post("/prod/status", "Transfer-Encoding: chunked"), body)
    assert (answer.status, answer.json()) == (413, {"message": "Request Too Long"}) and closed


@pytest.mark.parametrize("headers, status", [
    (["Transfer-Encoding: chunked", "Content-Length: 5"], 400),  # two framings: refused, never guessed
    (["Transfer-Encoding: gzip, chunked"], 501),  # a coding the gateway does not decode
    (["Transfer-Encoding: gzip"], 400),  # not chunked last: the body has no end
])
def test_framing_the_gateway_cannot_trust_is_refused(gateway, headers, status):
    answer, closed = exchange(gateway, post("/prod/status", *headers), chunked(STATUS_201))
    assert answer.status == status and closed


def test_a_client_that_stops_mid_body_gets_408_after_the_idle_timeout(gateway):
    answer, closed = exchange(gateway, post("/prod/status", "Content-Length: 100"), b"{")  # then silence
    assert (answer.status, answer.json()) == (408, {"message": "Request Timeout"}) and closed


def test_requests_on_other_connections_are_answered_while_one_client_is_silent(gateway):
    with socket.create_connection(("127.0.0.1", port_of(gateway)), timeout=WAIT_S) as silent:
        silent.sendall(b"POST /prod/status HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        answers = []
        worker = threading.Thread(target=lambda: answers.append(exchange(gateway, "GET /prod/health HTTP/1.1")))
        worker.start()
        worker.join(WAIT_S)
        assert answers and answers[0][0].status == 200
