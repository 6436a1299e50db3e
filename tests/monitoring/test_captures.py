"""Reading the captures of a window: its hour partitions, newest first, up to a row cap."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from functions.errors import RetryableError
from functions.monitoring.captures import list_capture_keys, read_captures, window_prefixes
from functions.serving.capture import capture_record, hour_prefix
from functions.storage.objects import ObjectStore
from tests.fakes import MemoryObjectStore, throttled
from tests.monitoring.helpers import capture, deliver

NOW = datetime(2026, 1, 1, 1, 15, tzinfo=UTC)


@pytest.fixture(params=["memory", "s3"])
def objects(request) -> ObjectStore:
    """The captures' bucket: in memory, and on S3 (moto) through the adapter the check uses."""
    if request.param == "memory":
        return MemoryObjectStore()
    from functions.storage.s3 import data_objects

    request.getfixturevalue("pipeline_aws")
    return data_objects()


def test_a_window_lists_the_hours_it_overlaps_newest_first():
    assert window_prefixes("churn", NOW, 2) == [
        "captures/churn/dt=2026-01-01/hour=01/",
        "captures/churn/dt=2026-01-01/hour=00/",
        "captures/churn/dt=2025-12-31/hour=23/",
    ]
    on_the_hour = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    assert window_prefixes("churn", on_the_hour, 1) == ["captures/churn/dt=2026-01-01/hour=01/",
                                                        "captures/churn/dt=2026-01-01/hour=00/"]
    assert len(window_prefixes("churn", NOW, 24)) == 25
    # Another time zone, the same instant: the same UTC partitions.
    assert window_prefixes("churn", NOW.astimezone(timezone(timedelta(hours=5))), 2) == window_prefixes("churn", NOW, 2)


def test_captures_are_read_newest_first_up_to_the_cap(objects):
    rows = [{"tenure_months": float(i)} for i in range(10)]
    old = capture(objects, NOW - timedelta(minutes=90), rows[:4], per_request=4)
    newer = capture(objects, NOW - timedelta(minutes=10), rows[4:7], version=2)
    newest = capture(objects, NOW - timedelta(minutes=5), rows[7:], version=2)
    capture(objects, NOW - timedelta(minutes=1), rows, model="other")  # another model's traffic

    assert list_capture_keys(objects, "churn", now=NOW, hours=2) == newest + newer + old

    window = read_captures(objects, "churn", hours=2, now=NOW)
    assert window.requests == 3 and window.truncated is False and window.skipped == 0
    assert sorted(r["tenure_months"] for r in window.instances) == list(range(10))
    assert window.versions == {"2": 6, "1": 4}

    capped = read_captures(objects, "churn", hours=2, now=NOW, max_rows=5)
    assert capped.truncated is True and len(capped.instances) == 5
    assert {r["tenure_months"] for r in capped.instances} == {7, 8, 9, 4, 5}  # the newest requests first
    assert capped.versions == {"2": 5}

    seen: list[dict] = []  # what the same reading shows the quality join: every record of the model, past the cap
    also = read_captures(objects, "churn", hours=2, now=NOW, max_rows=5, every=seen.append)
    assert (also.instances, also.versions, also.requests) == (capped.instances, capped.versions, capped.requests)
    assert sorted(row["tenure_months"] for record in seen for row in record["inputs"]) == list(range(10))


@pytest.mark.parametrize("operation", ["list_keys", "get_bytes"])
def test_busy_storage_fails_the_read_as_retryable(operation):
    objects = MemoryObjectStore()
    capture(objects, NOW - timedelta(minutes=5), [{"tenure_months": 1.0}] * 3, per_request=1)
    objects.faults.inject(operation, throttled())

    # Not a smaller window: a check on part of the traffic would be a wrong answer, not a degraded one.
    with pytest.raises(RetryableError):
        read_captures(objects, "churn", hours=2, now=NOW)
    assert read_captures(objects, "churn", hours=2, now=NOW).requests == 3  # the retry reads them all


def test_one_delivered_object_holds_many_records_read_newest_first_and_a_split_request_counts_once(objects):
    def line(minutes: int, value: float, **extra) -> str:
        at = NOW - timedelta(minutes=minutes)
        record = capture_record(model="churn", version=1, request_id=f"r-{minutes}", at=at,
                                inputs=[{"tenure_months": value}], predictions=[0])
        return json.dumps({**record, **extra})

    lines = [line(10, 1.0), line(5, 2.0, part=0, parts=2), line(5, 3.0, part=1, parts=2), line(1, 4.0),
             line(2, 5.0, variant="shadow")]
    deliver(objects, hour_prefix("churn", NOW), lines, NOW)

    window = read_captures(objects, "churn", hours=2, now=NOW)
    assert [r["tenure_months"] for r in window.instances] == [4.0, 3.0, 2.0, 1.0]  # a shadow's rows count once
    assert window.requests == 3 and window.skipped == 0

    newest = read_captures(objects, "churn", hours=2, now=NOW, max_rows=1)
    assert newest.instances == [{"tenure_months": 4.0}] and newest.truncated is True


def test_the_window_carries_each_kept_instances_outputs_in_step(objects):
    def line(minutes: int, rows: list, predictions: list, probabilities: list | None) -> str:
        at = NOW - timedelta(minutes=minutes)
        return json.dumps(capture_record(model="churn", version=1, request_id=f"r-{minutes}", at=at, inputs=rows,
                                         predictions=predictions, probabilities=probabilities))

    deliver(objects, hour_prefix("churn", NOW), [
        line(10, [{"a": 1}, "not a row", {"a": 2}], [0, 1, 1], [[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]),
        line(5, [{"a": 3}], [1], [[0.2, 0.8]]),
    ], NOW)
    window = read_captures(objects, "churn", hours=2, now=NOW)
    assert window.instances == [{"a": 3}, {"a": 1}, {"a": 2}]
    assert window.outputs == {"predictions": [1, 0, 1], "probabilities": [[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]]}
    assert read_captures(objects, "churn", hours=2, now=NOW, max_rows=2).outputs == {
        "predictions": [1, 0], "probabilities": [[0.2, 0.8], [0.9, 0.1]]}

    deliver(objects, hour_prefix("churn", NOW), [line(1, [{"a": 4}], [0], None)], NOW + timedelta(seconds=1))
    assert read_captures(objects, "churn", hours=2, now=NOW).outputs == {"predictions": [0, 1, 0, 1],
                                                                          "probabilities": None}
    deliver(objects, hour_prefix("churn", NOW), [line(0, [{"a": 5}, {"a": 6}], [0], None)], NOW + timedelta(seconds=2))
    assert read_captures(objects, "churn", hours=2, now=NOW).outputs is None  # outputs that do not line up
