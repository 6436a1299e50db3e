"""Reading the captures of a window: its hour partitions, newest first, up to a row cap."""

from datetime import datetime, timedelta, timezone

from functions.monitoring.captures import list_capture_keys, read_captures, window_prefixes
from tests.monitoring.helpers import capture

NOW = datetime(2026, 1, 1, 1, 15, tzinfo=timezone.utc)


def test_a_window_lists_the_hours_it_overlaps_newest_first():
    assert window_prefixes("churn", NOW, 2) == [
        "captures/churn/dt=2026-01-01/hour=01/",
        "captures/churn/dt=2026-01-01/hour=00/",
        "captures/churn/dt=2025-12-31/hour=23/",
    ]
    on_the_hour = datetime(2026, 1, 1, 1, 0, tzinfo=timezone.utc)
    assert window_prefixes("churn", on_the_hour, 1) == ["captures/churn/dt=2026-01-01/hour=01/",
                                                        "captures/churn/dt=2026-01-01/hour=00/"]
    assert len(window_prefixes("churn", NOW, 24)) == 25
    # Another time zone, the same instant: the same UTC partitions.
    assert window_prefixes("churn", NOW.astimezone(timezone(timedelta(hours=5))), 2) == window_prefixes("churn", NOW, 2)


def test_captures_are_read_newest_first_up_to_the_cap(pipeline_aws):
    rows = [{"tenure_months": float(i)} for i in range(10)]
    old = capture(pipeline_aws, NOW - timedelta(minutes=90), rows[:4], per_request=4)
    newer = capture(pipeline_aws, NOW - timedelta(minutes=10), rows[4:7], version=2)
    newest = capture(pipeline_aws, NOW - timedelta(minutes=5), rows[7:], version=2)
    capture(pipeline_aws, NOW - timedelta(minutes=1), rows, model="other")  # another model's traffic

    assert list_capture_keys(pipeline_aws.s3, pipeline_aws.bucket, "churn", now=NOW, hours=2) == newest + newer + old

    window = read_captures(pipeline_aws.s3, pipeline_aws.bucket, "churn", hours=2, now=NOW)
    assert window.requests == 3 and window.truncated is False and window.skipped == 0
    assert sorted(r["tenure_months"] for r in window.instances) == list(range(10))
    assert window.versions == {"2": 6, "1": 4}

    capped = read_captures(pipeline_aws.s3, pipeline_aws.bucket, "churn", hours=2, now=NOW, max_rows=5)
    assert capped.truncated is True and len(capped.instances) == 5
    assert {r["tenure_months"] for r in capped.instances} == {7, 8, 9, 4, 5}  # the newest requests first
    assert capped.versions == {"2": 5}
