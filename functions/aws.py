"""boto3 clients, created on first use and reused across invocations of a warm container.

Created lazily (never at import) so that the environment of the running function decides
region and endpoint; boto3 itself honours AWS_ENDPOINT_URL, which points them at the local
cloud. `reset()` drops them (tests, or a process that changes endpoint).
"""

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBServiceResource
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

# Standard retry mode: boto3 retries throttling a few times itself before we see an error.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=60)


@cache
def s3() -> "S3Client":
    return boto3.client("s3", config=_CONFIG)


@cache
def dynamodb() -> "DynamoDBServiceResource":
    """The DynamoDB resource (tables are built from it with `.Table(name)`)."""
    return boto3.resource("dynamodb", config=_CONFIG)


@cache
def table(name: str) -> "Table":
    """A DynamoDB table of the resource (building one costs ~2 ms: not on every request)."""
    return dynamodb().Table(name)


@cache
def stepfunctions() -> "SFNClient":
    return boto3.client("stepfunctions", config=_CONFIG)


def reset() -> None:
    for factory in (s3, dynamodb, table, stepfunctions):
        factory.cache_clear()
