"""POST /v1/models/{name}/feedback: labels checked against the champion, stored once, all or nothing."""

import pytest

from functions.errors import RetryableError
from functions.feedback.labels import MAX_LABELS
from functions.serving import handler
from tests.feedback.fakes import FakeFeedbackStore
from tests.serving.helpers import INSTANCE, PREDICT, assert_clean

FEEDBACK = "/v1/models/churn/feedback"


@pytest.fixture
def feedback(monkeypatch, api) -> FakeFeedbackStore:
    store = FakeFeedbackStore()
    monkeypatch.setattr(handler, "feedback_store", lambda: store)
    return store


@pytest.fixture
def classes(churn_champion) -> list:
    return list(churn_champion.record.classes)


def test_a_label_for_a_served_prediction_is_stored(api, feedback, classes):
    status, body, _ = api.call("POST", PREDICT, {"instances": [INSTANCE, INSTANCE]})
    assert status == 200
    request_id = body["request_id"]
    status, body, _ = api.call("POST", FEEDBACK, {"request_id": request_id, "label": classes[1]})
    assert (status, body) == (200, {"model": "churn", "received": 1, "stored": 1, "unchanged": 0})
    status, body, _ = api.call("POST", FEEDBACK, {"labels": [{"request_id": request_id, "index": 1,
                                                              "label": classes[0]}]})
    assert status == 200 and body["stored"] == 1
    stored = {(x.request_id, x.index): x.label for x in feedback.items.values()}
    assert stored == {(request_id, 0): classes[1], (request_id, 1): classes[0]}


def test_the_same_label_again_is_unchanged_and_another_one_is_a_conflict(api, feedback, classes):
    label = {"request_id": "r-1", "label": classes[0]}
    assert api.call("POST", FEEDBACK, label)[0] == 200
    status, body, _ = api.call("POST", FEEDBACK, label)
    assert (status, body["stored"], body["unchanged"]) == (200, 0, 1)
    # A batch with one conflicting row stores nothing, not even its new rows.
    status, body, _ = api.call("POST", FEEDBACK, {"labels": [{"request_id": "r-2", "label": classes[0]},
                                                             {"request_id": "r-1", "label": classes[1]}]})
    assert status == 409 and body["error"]["code"] == "Conflict" and "'r-1' row 0" in body["error"]["message"]
    assert {x.request_id for x in feedback.items.values()} == {"r-1"}
    assert feedback.items[("churn", "r-1", 0)].label == classes[0]


def test_unknown_request_ids_are_accepted_and_counted_at_check_time(api, feedback, classes):
    status, body, _ = api.call("POST", FEEDBACK, {"request_id": "never-served", "label": classes[0]})
    assert status == 200 and body["stored"] == 1


@pytest.mark.parametrize("body, status, code", [
    ({"request_id": "r", "label": "not-a-class"}, 422, "RequestInvalid"),
    ({"request_id": "r", "label": None}, 400, "InvalidInput"),
    ({"request_id": "r", "label": [1]}, 400, "InvalidInput"),
    ({"request_id": "r", "label": {"a": 1}}, 400, "InvalidInput"),
    ({"request_id": "r"}, 400, "InvalidInput"),
    ({"label": 1}, 400, "InvalidInput"),
    ({"request_id": "r", "label": 1, "extra": 1}, 400, "InvalidInput"),
    ({"request_id": "r", "label": 1, "index": -1}, 400, "InvalidInput"),
    ({"request_id": "r", "label": 1, "index": "x"}, 400, "InvalidInput"),
    ({"request_id": "", "label": 1}, 400, "InvalidInput"),
    ({"request_id": "a b", "label": 1}, 400, "InvalidInput"),
    ({"request_id": "r#1", "label": 1}, 400, "InvalidInput"),
    ({"request_id": "x" * 129, "label": 1}, 400, "InvalidInput"),
    ({"request_id": "'; DROP TABLE labels; --", "label": 1}, 400, "InvalidInput"),
    ({"request_id": "\ud800", "label": 1}, 400, "InvalidInput"),
    ({"request_id": "r", "label": "x" * 257}, 400, "InvalidInput"),
    ({"labels": []}, 400, "InvalidInput"),
    ({"labels": "r"}, 400, "InvalidInput"),
    ({"labels": [{"request_id": "r", "label": 1}], "request_id": "r"}, 400, "InvalidInput"),
    ([{"request_id": "r", "label": 1}], 400, "InvalidInput"),
    ("null", 400, "InvalidInput"),
    ("{not json", 400, "InvalidInput"),
    ("", 400, "InvalidInput"),
    ({"labels": [{"request_id": f"r{i}", "label": 1} for i in range(MAX_LABELS + 1)]}, 413, "PayloadTooLarge"),
])
def test_malformed_labels_are_refused_and_nothing_is_written(api, feedback, classes, body, status, code):
    answer, error, _ = api.call("POST", FEEDBACK, body)
    assert (answer, error["error"]["code"]) == (status, code), error
    assert feedback.writes == 0


def test_a_label_of_the_wrong_type_for_the_classes_is_refused(api, feedback, classes):
    other = "1" if not isinstance(classes[0], str) else 1
    status, body, _ = api.call("POST", FEEDBACK, {"request_id": "r", "label": other})
    assert status == 422 and "one of the model's classes" in body["error"]["message"]
    status, body, _ = api.call("POST", FEEDBACK, {"request_id": "r", "label": True})
    assert status == 422 or classes[0] is True or classes[1] is True
    assert feedback.writes == 0


def test_one_row_labelled_twice_in_a_body_is_refused_unless_it_is_the_same_label(api, feedback, classes):
    twice = {"labels": [{"request_id": "r", "label": classes[0]}, {"request_id": "r", "label": classes[1]}]}
    status, body, _ = api.call("POST", FEEDBACK, twice)
    assert status == 400 and "two different labels" in body["error"]["message"] and feedback.writes == 0
    same = {"labels": [{"request_id": "r", "label": classes[0]}, {"request_id": "r", "label": classes[0]}]}
    status, body, _ = api.call("POST", FEEDBACK, same)
    assert (status, body["received"], body["stored"]) == (200, 2, 1)


def test_an_oversized_body_is_refused_before_it_is_parsed(api, feedback, configure):
    configure(max_request_bytes=100)
    status, body, _ = api.call("POST", FEEDBACK, {"request_id": "r", "label": "x" * 200})
    assert (status, body["error"]["code"]) == (413, "PayloadTooLarge") and feedback.writes == 0


def test_unknown_models_and_models_without_a_champion_are_404(api, feedback, stores, churn_champion):
    status, body, _ = api.call("POST", "/v1/models/nope/feedback", {"request_id": "r", "label": 1})
    assert (status, body["error"]["code"]) == (404, "UnknownModel")
    status, body, _ = api.call("POST", "/v1/models/Bad_Name/feedback", {"request_id": "r", "label": 1})
    assert status in (400, 404) and feedback.writes == 0


def test_storage_trouble_is_a_503_with_retry_after_and_says_nothing_inside(api, feedback, classes):
    feedback.fail = RetryableError("storing labels: storage is busy, try again")
    status, body, headers = api.call("POST", FEEDBACK, {"request_id": "r", "label": classes[0]})
    assert status == 503 and headers.get("Retry-After") == "1"
    feedback.fail = RuntimeError("secret-table-name")
    status, text = api.respond("POST", FEEDBACK, {"request_id": "r", "label": classes[0]})
    assert status == 500
    assert_clean(text, "secret-table-name")
