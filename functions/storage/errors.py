"""Where the adapters touch AWS, its errors become domain errors.

Throttling and timeouts become RetryableError; a failed condition check becomes Conflict;
callers never parse AWS error strings.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

from functions.errors import Conflict, MlopsError, NotFound, RetryableError

_RETRYABLE = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "ServiceUnavailable",
    "InternalServerError",
    "InternalError",
    "RequestTimeout",
    "TransactionConflictException",
}
# NoSuchVersion: a version id of another key is as absent as a missing key.
_NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "ResourceNotFoundException", "404", "NotFound"}


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Translate AWS client errors raised while doing `what` into domain errors."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            raise Conflict(f"{what}: the record changed or already exists") from error
        if code in _RETRYABLE:
            raise RetryableError(f"{what}: storage is busy, try again") from error
        if code in _NOT_FOUND:
            raise NotFound(f"{what}: not found") from error
        raise MlopsError(f"{what}: storage error ({code or 'unknown'})") from error
    except (ConnectionError, ReadTimeoutError) as error:
        raise RetryableError(f"{what}: storage timed out, try again") from error
    except BotoCoreError as error:
        raise MlopsError(f"{what}: storage client error") from error
