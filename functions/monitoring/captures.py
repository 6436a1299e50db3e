"""Reading the captured requests of a time window from S3.

Captures are partitioned by hour (captures/<model>/dt=YYYY-MM-DD/hour=HH/), so a window lists
only its own hours, and an object's time is in its name (<epoch_ms>-<uuid>.json), so objects
outside the window are skipped without being read. Newest first, up to a row cap: a flood of
traffic makes the check look at the latest requests, not run out of memory.
"""

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.serving.capture import epoch_ms_of, hour_prefix
from functions.storage.objects import ObjectStore

logger = logging.getLogger(__name__)

MAX_ROWS = 100_000
READ_THREADS = 8  # S3 reads are I/O-bound; boto3 clients are thread-safe
BATCH = 64


@dataclass
class CaptureWindow:
    instances: list[dict] = field(default_factory=list)
    requests: int = 0
    versions: dict[str, int] = field(default_factory=dict)  # rows per model version
    skipped: int = 0  # unreadable capture objects, and instances that were not objects
    truncated: bool = False  # True when MAX_ROWS stopped the read


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
    """Keys of the captures made in the window, newest first."""
    start_ms = int((now - timedelta(hours=hours)).timestamp() * 1000)
    end_ms = int(now.timestamp() * 1000)
    keys: list[str] = []
    for prefix in window_prefixes(model, now, hours):
        found = [key for key in objects.list_keys(prefix) if start_ms <= (epoch_ms_of(key) or -1) <= end_ms]
        keys.extend(sorted(found, reverse=True))  # names start with a zero-padded time
    return keys


def _read(objects: ObjectStore, key: str) -> dict[str, Any] | None:
    body = objects.get_bytes(key)
    try:
        record = json.loads(body)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("inputs"), list):
        return None
    return record


def read_captures(objects: ObjectStore, model: str, *, hours: int, now: datetime | None = None,
                  max_rows: int = MAX_ROWS) -> CaptureWindow:
    """The captured instances of the last `hours` hours (newest first, at most `max_rows`)."""
    now = now or datetime.now(UTC)
    keys = list_capture_keys(objects, model, now=now, hours=hours)
    window = CaptureWindow()
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for start in range(0, len(keys), BATCH):
            for record in pool.map(lambda key: _read(objects, key), keys[start:start + BATCH]):
                if record is None:
                    window.skipped += 1
                    continue
                rows = [row for row in record["inputs"] if isinstance(row, dict)]
                window.skipped += len(record["inputs"]) - len(rows)
                room = max_rows - len(window.instances)
                if room <= 0:
                    window.truncated = True
                    break
                if len(rows) > room:
                    rows, window.truncated = rows[:room], True
                window.instances.extend(rows)
                window.requests += 1
                version = str(record.get("version"))
                window.versions[version] = window.versions.get(version, 0) + len(rows)
                if window.truncated:
                    break
            if window.truncated:
                break
    if window.skipped:
        logger.warning("unreadable captures skipped", extra={"model": model, "skipped": window.skipped})
    return window
