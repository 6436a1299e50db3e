"""Typed domain errors.

Every expected failure is one of these. The serving API maps them to HTTP statuses in one
place; the training pipeline records their message as the reason a run failed. Messages are
written for the user: they never carry an exception's text or a stack trace.
"""

from typing import Any


def shown(value: object, limit: int = 64) -> str:
    """A value quoted in a message, cut to `limit` characters: what a client sent may be megabytes."""
    text = value if isinstance(value, str) else repr(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


class MlopsError(Exception):
    """Base of all expected failures."""

    status = 500
    code = "InternalError"
    # What a client is told of a server-side failure; the message itself (keys, versions) is for the logs.
    public_message = "internal error"

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(MlopsError):
    status = 400
    code = "InvalidInput"


class SpecInvalid(InvalidInput):
    code = "SpecInvalid"


class DatasetInvalid(InvalidInput):
    """The uploaded file cannot be read or does not meet the model's data contract."""

    status = 422
    code = "DatasetInvalid"


class RequestInvalid(InvalidInput):
    status = 422
    code = "RequestInvalid"


class PayloadTooLarge(InvalidInput):
    status = 413
    code = "PayloadTooLarge"


class NotFound(MlopsError):
    status = 404
    code = "NotFound"


class UnknownModel(NotFound):
    code = "UnknownModel"


class NoChampion(NotFound):
    code = "NoChampion"


class Conflict(MlopsError):
    """A conditional write lost a race or a record already exists."""

    status = 409
    code = "Conflict"


class IntegrityError(MlopsError):
    """A stored artifact does not match the hash recorded for it."""

    code = "IntegrityError"
    public_message = "the model failed its integrity check and is not served; see the logs"


class ObjectTooLarge(MlopsError):
    """A stored object is larger than its reader accepts."""

    def __init__(self, message: str, *, size: int):
        super().__init__(message, details={"size": size})
        self.size = size


class RetryableError(MlopsError):
    """A transient storage failure (throttling, timeouts): the caller may retry."""

    status = 503
    code = "RetryableError"
