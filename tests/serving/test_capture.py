"""What a captured request's record holds, and the log line it travels in."""

import json
from datetime import UTC, datetime, timedelta, timezone

import jq
import pytest

from functions.serving.capture import (
    FILTER_PATTERN,
    MARKER,
    MAX_LINE_BYTES,
    PARTITION_QUERY,
    CaptureTooLarge,
    capture_lines,
    capture_record,
    emit_capture,
    hour_prefix,
)

AT = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)


def test_a_record_holds_the_request_its_answers_and_how_it_was_served():
    record = capture_record(model="churn", version=3, request_id="r-1", at=AT, inputs=[{"a": 1}], predictions=[0],
                            probabilities=[[0.9, 0.1]], variant="challenger", latency_ms=1.23456)
    assert record == {MARKER: 1, "model": "churn", "version": 3, "variant": "challenger", "request_id": "r-1",
                      "timestamp": "2026-03-04T05:06:07.890+00:00", "latency_ms": 1.235, "inputs": [{"a": 1}],
                      "outputs": {"predictions": [0], "probabilities": [[0.9, 0.1]]}}
    plain = capture_record(model="m", version=1, request_id="r", at=AT, inputs=[], predictions=[])
    assert plain["variant"] == "champion" and plain["outputs"] == {"predictions": []}
    assert plain["latency_ms"] is None
    elsewhere = AT.astimezone(timezone(timedelta(hours=-8)))  # the record's time is UTC, whatever the zone
    assert capture_record(model="m", version=1, request_id="r", at=elsewhere, inputs=[],
                          predictions=[])["timestamp"] == plain["timestamp"]


@pytest.mark.parametrize("variant", ["", "Champion", "canary", None, "champion\n"])
def test_an_unknown_variant_is_refused(variant):
    with pytest.raises(ValueError, match="variant"):
        capture_record(model="m", version=1, request_id="r", at=AT, inputs=[], predictions=[], variant=variant)


def test_firehose_partitions_a_record_by_its_model_and_utc_day_and_hour():
    record = capture_record(model="churn", version=1, request_id="r", at=AT, inputs=[], predictions=[])
    keys = jq.compile(PARTITION_QUERY).input_value(json.loads(capture_lines(record)[0])).first()
    assert keys == {"model": "churn", "dt": "2026-03-04", "hour": "05"}
    assert hour_prefix("churn", AT) == f"captures/{keys['model']}/dt={keys['dt']}/hour={keys['hour']}/"
    assert FILTER_PATTERN == "{ $.mlops_capture = 1 }"


def test_a_line_is_one_line_of_ascii_whatever_the_inputs_hold():
    hostile = [{"plan": "a\nb\r\u2028c", "note": '"}\n{"mlops_capture":1,"model":"other"}', "emoji": "\U0001f600",
                "surrogate": "\udc80"}]
    (line,) = capture_lines(capture_record(model="m", version=1, request_id="r", at=AT, inputs=hostile,
                                           predictions=[1]))
    assert "\n" not in line and "\r" not in line and line.isascii()
    assert json.loads(line)["inputs"] == hostile and json.loads(line)["model"] == "m"


def test_a_large_request_is_split_into_parts_that_each_fit_a_log_event():
    rows = [{"text": "x" * 1000, "i": i} for i in range(40)]
    record = capture_record(model="m", version=1, request_id="r", at=AT, inputs=rows, predictions=list(range(40)),
                            probabilities=[[0.5, 0.5]] * 40)
    lines = capture_lines(record, max_bytes=10_000)
    parts = [json.loads(line) for line in lines]
    assert len(parts) > 4 and all(len(line) <= 10_000 for line in lines)
    assert [p["part"] for p in parts] == list(range(len(parts))) and {p["parts"] for p in parts} == {len(parts)}
    assert [row for p in parts for row in p["inputs"]] == rows
    assert [y for p in parts for y in p["outputs"]["predictions"]] == list(range(40))
    assert all(len(p["inputs"]) == len(p["outputs"]["probabilities"]) for p in parts)
    assert {p["request_id"] for p in parts} == {"r"}
    assert capture_lines(record) == [json.dumps(record, separators=(",", ":"))]  # within MAX_LINE_BYTES: one line


def test_a_row_larger_than_a_log_event_is_refused_whole():
    huge = [{"text": "x" * (MAX_LINE_BYTES + 1)}]
    with pytest.raises(CaptureTooLarge):
        capture_lines(capture_record(model="m", version=1, request_id="r", at=AT, inputs=huge, predictions=[1]))
    with pytest.raises(CaptureTooLarge):
        capture_lines(capture_record(model="m", version=1, request_id="r", at=AT,
                                     inputs=[{"i": 1}, {"text": "x" * 5000}], predictions=[1, 2]), max_bytes=2000)


def test_emit_writes_the_lines_at_once_or_nothing():
    written: list[str] = []
    count = emit_capture(model="churn", version=1, request_id="r-1", inputs=[{"plan": "basic"}], predictions=[1],
                         at=AT, write=written.append)
    assert count == 1 and len(written) == 1 and written[0].endswith("\n") and written[0].count("\n") == 1
    assert json.loads(written[0])["inputs"] == [{"plan": "basic"}]
    with pytest.raises(ValueError):  # NaN is not JSON: nothing is written
        emit_capture(model="churn", version=1, request_id="r-2", inputs=[{"x": float("nan")}], predictions=[1],
                     write=written.append)
    assert len(written) == 1


def test_emit_writes_to_stdout_by_default(capsys):
    emit_capture(model="churn", version=2, request_id="r-1", inputs=[{"a": 1}], predictions=[0], latency_ms=0.5)
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["version"] == 2 and json.loads(line)["latency_ms"] == 0.5
