"""Where a captured request is stored, and what its record holds."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from functions.serving.capture import capture_key, capture_record, epoch_ms_of, hour_prefix, write_capture
from functions.storage.objects import sha256
from functions.storage.s3 import data_objects
from tests.fakes import MemoryObjectStore

AT = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)


def test_a_capture_key_is_partitioned_by_utc_day_and_hour_and_starts_with_its_time():
    key = capture_key("churn", AT, unique="u-1")
    assert key == f"captures/churn/dt=2026-03-04/hour=05/{int(AT.timestamp() * 1000):013d}-u-1.json"
    assert epoch_ms_of(key) == int(AT.timestamp() * 1000)
    # Another time zone, the same instant: the same UTC partition.
    elsewhere = AT.astimezone(timezone(timedelta(hours=-8)))
    assert capture_key("churn", elsewhere, unique="u-1") == key
    assert hour_prefix("churn", elsewhere) == "captures/churn/dt=2026-03-04/hour=05/"


@pytest.mark.parametrize("key", ["captures/churn/dt=2026-03-04/hour=05/", "captures/churn/notes.txt",
                                 "captures/churn/dt=2026-03-04/hour=05/abc-1.json"])
def test_a_key_that_is_not_a_capture_has_no_time(key):
    assert epoch_ms_of(key) is None


def test_a_record_holds_inputs_and_answers():
    record = capture_record(model="churn", version=3, request_id="r-1", at=AT, inputs=[{"a": 1}], predictions=[0],
                            probabilities=[[0.9, 0.1]])
    assert record == {"model": "churn", "version": 3, "request_id": "r-1", "timestamp": "2026-03-04T05:06:07.890+00:00",
                      "inputs": [{"a": 1}], "predictions": [0], "probabilities": [[0.9, 0.1]]}
    assert "probabilities" not in capture_record(model="m", version=1, request_id="r", at=AT, inputs=[],
                                                 predictions=[1.5])


def test_write_capture_stores_the_record_under_its_key():
    objects = MemoryObjectStore()
    key = write_capture(objects, model="churn", version=1, request_id="r-1", inputs=[{"plan": "basic"}],
                        predictions=[1], probabilities=[[0.2, 0.8]], at=AT)
    assert key.startswith("captures/churn/dt=2026-03-04/hour=05/") and epoch_ms_of(key) == int(AT.timestamp() * 1000)
    assert objects.keys() == [key]
    assert objects.get_json(key)["inputs"] == [{"plan": "basic"}]
    with pytest.raises(ValueError):  # a record is strict JSON: no NaN reaches monitoring
        write_capture(objects, model="churn", version=1, request_id="r-2", inputs=[{"x": float("nan")}],
                      predictions=[1], at=AT)
    assert objects.keys() == [key]  # ... and nothing half-written


def test_a_capture_on_s3_is_json_with_its_sha256(pipeline_aws):
    key = write_capture(data_objects(), model="churn", version=1, request_id="r-1", inputs=[{"plan": "basic"}],
                        predictions=[1], at=AT)
    stored = pipeline_aws.s3.get_object(Bucket=pipeline_aws.bucket, Key=key)
    body = stored["Body"].read()
    assert stored["ContentType"] == "application/json"
    assert json.loads(body)["inputs"] == [{"plan": "basic"}]
    assert stored["Metadata"]["sha256"] == sha256(body)
