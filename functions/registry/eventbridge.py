"""The AWS side of registry changes: announcing them on EventBridge (the adapter of
registry.events.EventPublisher), and who makes them (the caller's STS identity).

PutEvents on the default bus of the caller's account and region; a failed entry or call is
retried (twice, with backoff) unless AWS refused it for good (access denied, invalid), then
reported as not sent: a change is never undone because its announcement failed.
"""

import json
import logging
import os
import time
from datetime import datetime
from functools import cache
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from functions.registry.events import SOURCE
from functions.registry.store import UNKNOWN_ACTOR

logger = logging.getLogger(__name__)

DEFAULT_BUS = "default"
ATTEMPTS = 3
BACKOFF_S = 0.2
FINAL_ERRORS = {"AccessDeniedException", "ValidationException", "ResourceNotFoundException"}
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10)


class Announcement(Protocol):
    """What a publisher sends: a registry event, or another part's (monitoring.events) of the same shape."""

    @property
    def detail_type(self) -> str: ...

    @property
    def detail(self) -> dict[str, Any]: ...

    @property
    def time(self) -> str: ...


class EventBridgePublisher:
    def __init__(self, client: Any, bus: str = DEFAULT_BUS, *, attempts: int = ATTEMPTS,
                 backoff_s: float = BACKOFF_S, source: str = SOURCE):
        self.client, self.bus, self.attempts, self.backoff_s = client, bus, attempts, backoff_s
        self.source = source

    def entry(self, event: Announcement) -> dict[str, Any]:
        """The PutEvents entry of an event."""
        return {"Source": self.source, "DetailType": event.detail_type, "EventBusName": self.bus, "Resources": [],
                "Detail": json.dumps(event.detail, sort_keys=True), "Time": datetime.fromisoformat(event.time)}

    def publish(self, event: Announcement) -> bool:
        entry = self.entry(event)
        why = "not sent"
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self.client.put_events(Entries=[entry])
            except ClientError as error:
                why = str(error.response.get("Error", {}).get("Code") or "ClientError")
                if why in FINAL_ERRORS:
                    break
                continue
            except BotoCoreError as error:  # the endpoint did not answer
                why = type(error).__name__
                continue
            if not response.get("FailedEntryCount"):
                return True
            failed = (response.get("Entries") or [{}])[0]
            why = str(failed.get("ErrorCode") or "FailedEntry")
        logger.warning("PutEvents failed", extra={"error": why, "detail_type": event.detail_type, "bus": self.bus})
        return False


def caller_arn(sts: Any) -> str:
    """The ARN of the identity a client's credentials belong to (STS GetCallerIdentity needs no permission)."""
    return str(sts.get_caller_identity()["Arn"])


@cache
def registry_events() -> EventBridgePublisher:
    """The running function's publisher, built once per execution environment."""
    return EventBridgePublisher(boto3.client("events", config=_CONFIG))


@cache
def function_actor() -> str:
    """Who the running function acts as, asked once per execution environment: on AWS its role's session,
    arn:aws:sts::<account>:assumed-role/<role>/<function>; where the identity does not name the function
    (the local cloud runs every function with one identity), the function's name follows it."""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    try:
        arn = caller_arn(boto3.client("sts", config=_CONFIG))
    except (BotoCoreError, ClientError) as error:
        logger.warning("the function's identity is unknown", extra={"error": type(error).__name__})
        return f"function {name}" if name else UNKNOWN_ACTOR
    return arn if not name or arn.endswith(f"/{name}") else f"{arn} (function {name})"


def reset() -> None:
    """Forget the clients and identity (tests, or a process that changes endpoint or credentials)."""
    registry_events.cache_clear()
    function_actor.cache_clear()
