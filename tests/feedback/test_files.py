"""Label files under feedback/<model>/: checked whole, stored row by row once, the result written beside."""

import json

import pytest

from functions.feedback.files import file_model, ingest_file, result_key
from tests.feedback.fakes import FakeFeedbackStore

KEY = "feedback/churn/day-1.csv"


@pytest.fixture
def setup(stores, churn_champion):
    return stores, FakeFeedbackStore(), list(churn_champion.record.classes)


def ingest(stores, feedback, key: str, body: bytes, max_bytes: int = 1 << 20) -> dict:
    stores.objects.put(key, body)
    return ingest_file(stores.objects, feedback, stores.registry, key=key, version_id=None, max_bytes=max_bytes)


def test_a_csv_file_is_stored_and_a_second_delivery_changes_nothing(setup):
    stores, feedback, classes = setup
    body = f"request_id,label,index\nr-1,{classes[0]},0\nr-1,{classes[1]},1\nr-2,{classes[1]},\n".encode()
    result = ingest(stores, feedback, KEY, body)
    assert (result["status"], result["stored"], result["unchanged"], result["conflicts"]) == ("stored", 3, 0, 0)
    assert stores.objects.get_json(result_key(KEY)) == result
    again = ingest(stores, feedback, KEY, body)
    assert (again["stored"], again["unchanged"]) == (0, 3)
    assert {x.source for x in feedback.items.values()} == {KEY}


def test_json_lines_conflicts_are_reported_and_the_rest_stored(setup):
    stores, feedback, classes = setup
    ingest(stores, feedback, "feedback/churn/a.jsonl", json.dumps({"request_id": "r-1", "label": classes[0]}).encode())
    lines = [{"request_id": "r-1", "label": classes[1]}, {"request_id": "r-9", "label": classes[0]}]
    result = ingest(stores, feedback, "feedback/churn/b.jsonl", "\n".join(map(json.dumps, lines)).encode())
    assert (result["stored"], result["conflicts"]) == (1, 1) and "'r-1' row 0" in result["conflicting"][0]
    assert feedback.items[("churn", "r-1", 0)].label == classes[0]


@pytest.mark.parametrize("key, body, reason", [
    (KEY, b"request_id,label\nr-1,not-a-class\n", "row 1: label"),
    (KEY, b"request_id,label\n'; DROP,x\n", "row 1: request_id"),
    (KEY, b"id,label\nr-1,1\n", "header must name request_id and label"),
    (KEY, b"\xff\xfe garbage", "not UTF-8"),
    ("feedback/churn/a.jsonl", b'{"request_id": "r-1"}\nnot json\n[1]\n', "row 1: label: Field required"),
    ("feedback/churn/a.jsonl", b'{"request_id": "r-1", "label": NaN}\n', "row 1: label"),
])
def test_a_file_with_a_bad_row_stores_nothing_and_says_why(setup, key, body, reason):
    stores, feedback, _ = setup
    result = ingest(stores, feedback, key, body)
    assert result["status"] == "refused" and reason in (result["reason"] + " ".join(result.get("errors", [])))
    assert feedback.writes == 0 and stores.objects.get_json(result_key(key))["status"] == "refused"


def test_an_oversized_file_or_an_unknown_model_is_refused(setup):
    stores, feedback, classes = setup
    result = ingest(stores, feedback, KEY, b"request_id,label\n" + b"r,x\n" * 100, max_bytes=64)
    assert result["status"] == "refused" and "larger than 64 bytes" in result["reason"]
    result = ingest(stores, feedback, "feedback/nope/a.csv", b"request_id,label\nr,1\n")
    assert result["status"] == "refused" and "no model spec named 'nope'" in result["reason"]
    assert feedback.writes == 0


@pytest.mark.parametrize("key", ["feedback/a.csv", "feedback/churn/sub/a.csv", "feedback/Bad_Name/a.csv",
                                 "feedback/churn/a.parquet", "other/churn/a.csv"])
def test_keys_that_are_not_label_files_are_refused(key):
    from functions.errors import InvalidInput

    with pytest.raises(InvalidInput):
        file_model(key)
