"""moto for adapter tests: only the bucket or table a test needs, through boto3 clients made once.

A client made inside mock_aws loads its service model again (about 0.1 s each test): these are made
once per process, outside any mock, and used inside each test's own mock_aws (whose state ends with
it). Also: AWS failures injected below the adapter, through botocore's own exceptions.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ReadTimeoutError
from moto import mock_aws

from tests.conftest import PIPELINE_BUCKET, client_error

BUCKET = PIPELINE_BUCKET


@cache
def _clients() -> tuple[Any, Any]:
    # moto is imported above: clients made from here on carry its request hook.
    return boto3.client("s3"), boto3.resource("dynamodb")


@contextmanager
def moto_bucket(*, versioned: bool = True) -> Iterator[Any]:
    """moto with the data bucket (versioned, as deployed); yields the S3 client."""
    s3, _ = _clients()
    with mock_aws():
        s3.create_bucket(Bucket=BUCKET)
        if versioned:
            s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield s3


@contextmanager
def moto_table(name: str) -> Iterator[Any]:
    """moto with one table keyed as the platform's tables are (pk, sk); yields the boto3 Table."""
    _, dynamodb = _clients()
    with mock_aws():
        yield dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def fail_once(monkeypatch, target: Any, method: str, code: str, operation: str = "Call") -> None:
    """The next call of `target.method` is refused by AWS with `code`; later calls go through."""
    _patch_once(monkeypatch, target, method, lambda real, kwargs: _raise(client_error(code, operation)))


def lose_reply_once(monkeypatch, target: Any, method: str) -> None:
    """The next call of `target.method` is done by AWS, but its reply never arrives (a read timeout)."""
    def done_then_timeout(real: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        real(**kwargs)
        _raise(ReadTimeoutError(endpoint_url="https://aws.invalid"))

    _patch_once(monkeypatch, target, method, done_then_timeout)


def _raise(error: Exception) -> None:
    raise error


def _patch_once(monkeypatch, target: Any, method: str, first: Callable[[Callable[..., Any], dict[str, Any]], Any]):
    real = getattr(target, method)
    calls: list[dict[str, Any]] = []

    def call(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return first(real, kwargs) if len(calls) == 1 else real(**kwargs)

    monkeypatch.setattr(target, method, call)
