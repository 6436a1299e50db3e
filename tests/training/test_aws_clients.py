"""boto3 clients are created on first use, honour AWS_ENDPOINT_URL, and are reused."""

from functions import aws


def test_clients_are_lazy_cached_and_follow_the_endpoint(monkeypatch):
    aws.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4599")
    try:
        client = aws.s3()
        assert client.meta.endpoint_url == "http://127.0.0.1:4599"
        assert aws.s3() is client
        assert aws.stepfunctions().meta.endpoint_url == "http://127.0.0.1:4599"
        assert aws.dynamodb().meta.client.meta.endpoint_url == "http://127.0.0.1:4599"
    finally:
        aws.reset()
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert aws.s3().meta.endpoint_url.startswith("https://s3")
    aws.reset()
