"""Capture of every predict request and its answers, for monitoring.

One JSON object per request under captures/<model>/dt=YYYY-MM-DD/hour=HH/<epoch_ms>-<uuid>.json
(UTC), so a drift check lists only the hours it needs and can tell an object's time from
its name without reading it.
"""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from functions.storage.objects import ObjectStore

PREFIX = "captures"


def hour_prefix(model: str, hour: datetime) -> str:
    hour = hour.astimezone(UTC)
    return f"{PREFIX}/{model}/dt={hour:%Y-%m-%d}/hour={hour:%H}/"


def capture_key(model: str, at: datetime, unique: str | None = None) -> str:
    epoch_ms = int(at.timestamp() * 1000)
    return f"{hour_prefix(model, at)}{epoch_ms:013d}-{unique or uuid.uuid4()}.json"


def epoch_ms_of(key: str) -> int | None:
    """The capture time recorded in a key's name (None when the name is not a capture's)."""
    name = key.rsplit("/", 1)[-1]
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def capture_record(*, model: str, version: int, request_id: str, at: datetime, inputs: list[Any],
                   predictions: list[Any], probabilities: list[list[float]] | None = None) -> dict[str, Any]:
    record = {
        "model": model,
        "version": version,
        "request_id": request_id,
        "timestamp": at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "inputs": inputs,
        "predictions": predictions,
    }
    if probabilities is not None:
        record["probabilities"] = probabilities
    return record


def write_capture(objects: ObjectStore, *, model: str, version: int, request_id: str, inputs: list[Any],
                  predictions: list[Any], probabilities: list[list[float]] | None = None,
                  at: datetime | None = None) -> str:
    """Store one request and its answers; returns the key."""
    at = at or datetime.now(UTC)
    key = capture_key(model, at)
    record = capture_record(model=model, version=version, request_id=request_id, at=at, inputs=inputs,
                            predictions=predictions, probabilities=probabilities)
    body = json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
    objects.put_bytes(key, body, content_type="application/json")
    return key
