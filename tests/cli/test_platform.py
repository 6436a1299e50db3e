"""The CLI's view of a deployed stack (`--stack NAME`): its outputs, read through CloudFormation."""

import json

import boto3
import pytest
from moto import mock_aws

from cli.platform import STACK_OUTPUTS, Platform, PlatformError


def test_the_stack_outputs_everything_the_cli_needs(template_dict):
    assert set(STACK_OUTPUTS) <= set(template_dict["Outputs"])


def _deploy(outputs: dict) -> None:
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName="Mlops", TemplateBody=json.dumps(template))


@pytest.fixture
def aws_account():
    with mock_aws():
        yield


def test_a_deployed_stack_is_described_by_its_outputs_and_api_key(aws_account):
    key = boto3.client("apigateway").create_api_key(name="clients", enabled=True, value="k" * 30)
    _deploy({name: f"{name}-value" for name in STACK_OUTPUTS} | {"ApiKeyId": key["id"]})
    platform = Platform.deployed("Mlops")
    assert platform.outputs["DataBucketName"] == "DataBucketName-value"
    assert platform.outputs["ApiKey"] == "k" * 30
    assert platform.endpoint is None, "a deployed stack is reached at AWS's own endpoints"


def test_an_unknown_stack_is_a_clear_error(aws_account):
    with pytest.raises(PlatformError, match="no stack named 'Nope'"):
        Platform.deployed("Nope")


def test_a_stack_that_is_not_ours_is_a_clear_error(aws_account):
    _deploy({"Something": "else"})
    with pytest.raises(PlatformError, match="not an MLOps platform stack"):
        Platform.deployed("Mlops")


def test_the_api_client_honours_throttling_as_the_aws_sdks_do():
    """429 answers (API Gateway throttled the key) are retried after Retry-After; then the answer is returned."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Throttling(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers["x-api-key"])
            self.rfile.read(int(self.headers["Content-Length"]))
            status = 429 if len(seen) < 3 else 200
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        outputs = {"ApiUrl": f"http://127.0.0.1:{server.server_address[1]}/prod/", "ApiKey": "key"}
        response = Platform(outputs, boto3.Session(region_name="us-east-1")).api("POST", "/v1/models/m/predict", {})
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    assert seen == ["key", "key", "key"], "two throttled attempts, then the answer"
