"""Reading the captured requests of a time window from S3.

Firehose delivers the capture lines (functions/serving/capture.py) in batches: GZIP objects of
newline-delimited records, partitioned by model and the records' own UTC day and hour
(captures/<model>/dt=YYYY-MM-DD/hour=HH/), so a window lists only its own hours, and a record
outside the window (the first and last hour are partial) is dropped by its timestamp. Objects
are read newest first (Firehose names them after their delivery time), their records newest
first, up to a row cap: a flood of traffic makes the check look at the latest requests, not run
out of memory.
"""

import gzip
import json
import logging
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.serving.capture import MARKER, OBJECT_SUFFIX, hour_prefix
from functions.storage.objects import ObjectStore

logger = logging.getLogger(__name__)

MAX_ROWS = 100_000
READ_THREADS = 8  # S3 reads are I/O-bound; boto3 clients are thread-safe
BATCH = 16
MAX_OBJECT_BYTES = 256 * 1024 * 1024  # Firehose's largest buffer is 128 MiB before compression


@dataclass
class CaptureWindow:
    instances: list[dict] = field(default_factory=list)
    requests: int = 0
    versions: dict[str, int] = field(default_factory=dict)  # rows per model version
    skipped: int = 0  # unreadable objects and lines, and instances that were not objects
    truncated: bool = False  # True when MAX_ROWS stopped the read
    # The model's outputs, one per instance ({"predictions", "probabilities"}: None when a record has none);
    # None when a record's outputs do not line up with its inputs.
    outputs: dict[str, Any] | None = field(default_factory=lambda: {"predictions": [], "probabilities": []})


def window_prefixes(model: str, now: datetime, hours: int) -> list[str]:
    """The hour partitions that overlap the last `hours` hours before `now`, newest first."""
    now = now.astimezone(UTC)
    start = now - timedelta(hours=hours)
    hour = now.replace(minute=0, second=0, microsecond=0)
    prefixes = []
    while hour + timedelta(hours=1) > start:
        prefixes.append(hour_prefix(model, hour))
        hour -= timedelta(hours=1)
    return prefixes


def list_capture_keys(objects: ObjectStore, model: str, *, now: datetime, hours: int) -> list[str]:
    """Keys of the capture objects of the window's partitions, newest first."""
    keys: list[str] = []
    for prefix in window_prefixes(model, now, hours):
        # Firehose's names: <stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>: in a partition, key order is time order.
        names = (key for key in objects.list_keys(prefix) if key.endswith(OBJECT_SUFFIX))
        keys.extend(sorted((key for key in names if "/" not in key[len(prefix):]), reverse=True))
    return keys


def parse_records(body: bytes) -> tuple[list[dict[str, Any]], int]:
    """The capture records of one delivered object (GZIP or plain), in order, and how many lines were not."""
    try:
        text = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    except (OSError, EOFError, zlib.error):
        return [], 1
    records, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict) and record.get(MARKER) is not None and isinstance(record.get("inputs"), list):
            records.append(record)
        else:
            bad += 1
    return records, bad


def _in_window(record: dict[str, Any], start: datetime, end: datetime) -> bool:
    try:
        at = datetime.fromisoformat(str(record.get("timestamp")))
    except ValueError:
        return False
    return at.tzinfo is not None and start <= at <= end


def _records(objects: ObjectStore, keys: list[str], window: CaptureWindow, start: datetime,
             end: datetime) -> Iterator[dict[str, Any]]:
    """The window's records, newest object first and newest record first within one."""
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for first in range(0, len(keys), BATCH):
            bodies = pool.map(lambda key: objects.get_bytes(key, max_bytes=MAX_OBJECT_BYTES), keys[first:first + BATCH])
            for body in bodies:
                records, bad = parse_records(body)
                window.skipped += bad
                yield from (record for record in reversed(records) if _in_window(record, start, end))


def _add_outputs(window: CaptureWindow, record: dict[str, Any], kept: list[int]) -> None:
    """The outputs of the record's kept rows, in step with window.instances."""
    if window.outputs is None:
        return
    outputs = record.get("outputs")
    outputs = outputs if isinstance(outputs, dict) else {}
    predictions, probabilities = outputs.get("predictions"), outputs.get("probabilities")
    rows = len(record["inputs"])
    if not isinstance(predictions, list) or len(predictions) != rows:
        window.outputs = None
        return
    window.outputs["predictions"].extend(predictions[i] for i in kept)
    if isinstance(probabilities, list) and len(probabilities) == rows and window.outputs["probabilities"] is not None:
        window.outputs["probabilities"].extend(probabilities[i] for i in kept)
    else:
        window.outputs["probabilities"] = None


def window_records(objects: ObjectStore, model: str, *, hours: int, now: datetime) -> Iterator[dict[str, Any]]:
    """Every capture record of `model` made in the last `hours`, newest first (all variants, a split request's
    parts apart): what the quality check joins its labels with."""
    start = now - timedelta(hours=hours)
    keys = list_capture_keys(objects, model, now=now, hours=hours)
    records = _records(objects, keys, CaptureWindow(), start, now)
    yield from (record for record in records if record.get("model") == model)


def read_captures(objects: ObjectStore, model: str, *, hours: int, now: datetime | None = None,
                  max_rows: int = MAX_ROWS, every: Callable[[dict[str, Any]], None] | None = None) -> CaptureWindow:
    """The captured instances of the last `hours` hours (newest first, at most `max_rows`).

    `every`, when given, is called with each of the model's records in the window (all variants, a split
    request's parts apart), in the same reading: the read then goes on past `max_rows` for it alone.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    start = now - timedelta(hours=hours)
    keys = list_capture_keys(objects, model, now=now, hours=hours)
    window = CaptureWindow()
    for record in _records(objects, keys, window, start, now):
        if record.get("model") != model:
            window.skipped += 1
            continue
        if every is not None:
            every(record)
        if window.truncated or record.get("variant") == "shadow":  # a shadow: the inputs of the answer it shadowed
            continue
        kept = [i for i, row in enumerate(record["inputs"]) if isinstance(row, dict)]
        window.skipped += len(record["inputs"]) - len(kept)
        room = max_rows - len(window.instances)
        if room <= 0:
            window.truncated = True
            if every is None:
                break
            continue
        if len(kept) > room:
            kept, window.truncated = kept[:room], True
        rows = [record["inputs"][i] for i in kept]
        window.instances.extend(rows)
        _add_outputs(window, record, kept)
        if not record.get("part"):  # a request split over parts counts once
            window.requests += 1
        version = str(record.get("version"))
        window.versions[version] = window.versions.get(version, 0) + len(rows)
        if window.truncated and every is None:
            break
    if window.skipped:
        logger.warning("unreadable captures skipped", extra={"model": model, "skipped": window.skipped})
    return window
