"""boto3 clients, created on first use and reused across invocations of a warm container.

Created lazily (never at import) so that the environment of the running function decides
region and endpoint; boto3 itself honours AWS_ENDPOINT_URL, which points them at the local
cloud. `reset()` drops them (tests, or a process that changes endpoint).
"""

from functools import lru_cache

import boto3
from botocore.config import Config

# Standard retry mode: boto3 retries throttling a few times itself before we see an error.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=60)


@lru_cache(maxsize=None)
def s3():
    return boto3.client("s3", config=_CONFIG)


@lru_cache(maxsize=None)
def dynamodb():
    """The DynamoDB resource (tables are built from it with `.Table(name)`)."""
    return boto3.resource("dynamodb", config=_CONFIG)


@lru_cache(maxsize=None)
def table(name: str):
    """A DynamoDB table of the resource (building one costs ~2 ms: not on every request)."""
    return dynamodb().Table(name)


@lru_cache(maxsize=None)
def stepfunctions():
    return boto3.client("stepfunctions", config=_CONFIG)


def reset() -> None:
    for factory in (s3, dynamodb, table, stepfunctions):
        factory.cache_clear()
