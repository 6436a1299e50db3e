"""A failed state machine step's error, read as Step Functions hands it to a Catch: {"Error", "Cause"}."""

import json
from dataclasses import dataclass
from typing import Any

from functions.errors import MlopsError


@dataclass(frozen=True)
class StepError:
    name: str  # the Error: a Lambda error type, States.Timeout, SageMaker.xxx...
    error_type: str  # the Lambda function's errorType when the Cause is its JSON, else `name`
    cause: dict[str, Any]  # the Cause as JSON ({} when it is not)
    domain_message: str | None  # a domain error's own message (MlopsError): what a user may read


def step_error(error: dict[str, Any] | None) -> StepError:
    error = error or {}
    name = str(error.get("Error", ""))
    cause: Any = error.get("Cause")
    if isinstance(cause, str):
        try:
            cause = json.loads(cause)
        except ValueError:
            cause = {}
    cause = cause if isinstance(cause, dict) else {}
    error_type = str(cause.get("errorType") or name)
    message = cause.get("errorMessage")
    domain = (" ".join(message.split()) if error_type in domain_errors() and isinstance(message, str)
              and message.strip() else None)
    return StepError(name=name, error_type=error_type, cause=cause, domain_message=domain)


def domain_errors() -> frozenset[str]:
    """The names of every MlopsError class imported so far (not cached: a module may define one later)."""
    names, pending = set(), [MlopsError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return frozenset(names)
