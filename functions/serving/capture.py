"""Capture of every predict request and its answers, for monitoring, off the request path.

A capture is one JSON line on the function's standard output, which Lambda already sends to
the function's CloudWatch Logs group: no network call while the client waits. A subscription
filter on that group (FILTER_PATTERN: the MARKER field) hands the capture lines, and only them,
to a Data Firehose delivery stream, which extracts the messages, partitions them by model and by
the capture's UTC day and hour (the JQ query PARTITION_QUERY), batches and GZIP-compresses them
into S3: captures/<model>/dt=YYYY-MM-DD/hour=HH/<stream>-<version>-<time>-<uuid>.gz, each object
newline-delimited capture records (infra/capture.py).

A line stays under CloudWatch Logs' event size limit: the rows of a large request are split
over several records (part i of n, the same request id), so no record is ever cut short.
"""

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

PREFIX = "captures"
ERRORS_PREFIX = f"{PREFIX}/_errors"  # no model name starts with "_"
OBJECT_SUFFIX = ".gz"  # the delivery stream's FileExtension: its objects are GZIP
MARKER = "mlops_capture"
SCHEMA = 1  # the MARKER's value: the shape of the record below
FILTER_PATTERN = f"{{ $.{MARKER} = {SCHEMA} }}"
# Firehose's partition keys, from the record itself: its model and the UTC day and hour it was made.
PARTITION_QUERY = "{model: .model, dt: .timestamp[0:10], hour: .timestamp[11:13]}"
VARIANTS = ("champion", "challenger", "shadow")
# CloudWatch Logs takes events up to 256 KiB (less 26 bytes of overhead); Lambda cuts longer lines.
MAX_LINE_BYTES = 256 * 1024 - 1024


class CaptureTooLarge(ValueError):
    """One row alone makes a record larger than a log event can be."""


def hour_prefix(model: str, hour: datetime) -> str:
    hour = hour.astimezone(UTC)
    return f"{PREFIX}/{model}/dt={hour:%Y-%m-%d}/hour={hour:%H}/"


def capture_record(*, model: str, version: int, request_id: str, at: datetime, inputs: list[Any],
                   predictions: list[Any], probabilities: list[list[float]] | None = None,
                   variant: str = "champion", latency_ms: float | None = None) -> dict[str, Any]:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)} (got {variant!r})")
    outputs: dict[str, Any] = {"predictions": predictions}
    if probabilities is not None:
        outputs["probabilities"] = probabilities
    return {
        MARKER: SCHEMA,
        "model": model,
        "version": version,
        "variant": variant,
        "request_id": request_id,
        "timestamp": at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "latency_ms": None if latency_ms is None else round(latency_ms, 3),
        "inputs": inputs,
        "outputs": outputs,
    }


def capture_lines(record: dict[str, Any], max_bytes: int = MAX_LINE_BYTES) -> list[str]:
    """The record as JSON lines of at most `max_bytes`: its rows split over parts when it is larger.

    ASCII only (non-ASCII escaped), so a line's length is its size and no character is a newline.
    Raises ValueError for NaN or infinity (not JSON), CaptureTooLarge when one row does not fit.
    """
    line = json.dumps(record, separators=(",", ":"), allow_nan=False)
    if len(line) <= max_bytes:
        return [line]
    rows = len(record["inputs"])
    if rows <= 1:
        raise CaptureTooLarge(f"one row makes a capture record of {len(line)} bytes (at most {max_bytes})")
    parts: list[dict[str, Any]] = []
    _split(record, 0, rows, max_bytes, parts)
    return [json.dumps({**part, "part": i, "parts": len(parts)}, separators=(",", ":"), allow_nan=False)
            for i, part in enumerate(parts)]


def _split(record: dict[str, Any], start: int, stop: int, max_bytes: int, parts: list[dict[str, Any]]) -> None:
    part = {**record, "inputs": record["inputs"][start:stop],
            "outputs": {name: values[start:stop] for name, values in record["outputs"].items()}}
    room = max_bytes - len(',"part":99999,"parts":99999')
    if len(json.dumps(part, separators=(",", ":"))) <= room:
        parts.append(part)
    elif stop - start <= 1:
        raise CaptureTooLarge(f"one row makes a capture record larger than {max_bytes} bytes")
    else:
        middle = (start + stop) // 2
        _split(record, start, middle, max_bytes, parts)
        _split(record, middle, stop, max_bytes, parts)


def emit_capture(*, model: str, version: int, request_id: str, inputs: list[Any], predictions: list[Any],
                 probabilities: list[list[float]] | None = None, variant: str = "champion",
                 latency_ms: float | None = None, at: datetime | None = None,
                 write: Callable[[str], Any] | None = None) -> int:
    """Write the request and its answers as capture lines (to stdout unless `write` is given); returns
    how many lines. Raises ValueError (NaN, a row too large) or OSError (stdout closed): nothing is written."""
    record = capture_record(model=model, version=version, request_id=request_id, at=at or datetime.now(UTC),
                            inputs=inputs, predictions=predictions, probabilities=probabilities, variant=variant,
                            latency_ms=latency_ms)
    lines = capture_lines(record)
    (write or sys.stdout.write)("".join(f"{line}\n" for line in lines))  # one write: the lines stay together
    return len(lines)
