"""Capture: what the predict request pays to record itself, now against before.

ours:      functions.serving.capture.emit_capture: the record as one JSON line written to the process's
           standard output (a pipe, as Lambda's runtime reads it; a thread drains it), for a one-row
           and a 100-row request of the churn signature.
baseline:  what the handler did before (issue 8 item 2): the same record as a JSON object put to S3
           through the S3 adapter, one PutObject per request, on moto's S3 in-process (no network:
           on AWS a PutObject adds a round trip of several milliseconds on top).
goal:      at most 0.1 of the PutObject's time.
"""

import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from bench.measure import compare, emit, note
from functions.storage.objects import ObjectStore

INSTANCE = {"tenure_months": 3.0, "monthly_charges": 80.5, "support_calls": 2, "plan": "basic"}
REPEAT = 31
NUMBER = 50


def _pipe_writer() -> TextIO:
    """A write function to a pipe whose other end a thread drains, as Lambda's runtime drains stdout."""
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w", buffering=1)  # line-buffered, as a function's stdout

    def drain() -> None:
        while os.read(read_fd, 1 << 16):
            pass

    threading.Thread(target=drain, daemon=True).start()
    return stream


def run() -> None:
    import boto3
    from moto import mock_aws

    from functions.storage.s3 import S3ObjectStore

    stream = _pipe_writer()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        for rows in (1, 100):
            _measure(rows, stream.write, S3ObjectStore(s3, "bench"))


def _measure(rows: int, write: Callable[[str], object], objects: ObjectStore) -> None:
    from functions.serving.capture import capture_record, emit_capture, hour_prefix

    inputs = [INSTANCE] * rows
    predictions, probabilities = [0] * rows, [[0.8, 0.2]] * rows
    count = iter(range(10**9))

    def ours() -> None:
        emit_capture(model="churn", version=1, request_id="r", inputs=inputs, predictions=predictions,
                     probabilities=probabilities, latency_ms=1.0, write=write)

    def before() -> None:
        at = datetime.now(UTC)
        record = capture_record(model="churn", version=1, request_id="r", at=at, inputs=inputs,
                                predictions=predictions, probabilities=probabilities, latency_ms=1.0)
        key = f"{hour_prefix('churn', at)}{next(count)}.json"
        objects.put_bytes(key, json.dumps(record, separators=(",", ":"), allow_nan=False).encode(),
                          content_type="application/json")

    ours_ms, before_ms = compare(ours, before, repeat=REPEAT, number=NUMBER if rows == 1 else 10)
    note(f"capture of a {rows}-row request: log line {ours_ms * 1000:.1f} us, "
         f"PutObject (moto, in-process) {before_ms * 1000:.1f} us")
    emit("capture", f"capture_{rows}_row{'s' if rows > 1 else ''}_ms", ours_ms, before_ms, "<= 0.1")
