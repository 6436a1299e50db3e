"""Reading and checking a predict request, without AWS: body size and JSON, then the signature."""

import json
import os

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from functions.errors import InvalidInput, PayloadTooLarge, RequestInvalid
from functions.serving.handler import parse_predict_request, read_json_body
from functions.serving.predict import MAX_REPORTED_PROBLEMS, NUMERIC_RANGE, check_instances, validate_instances
from functions.settings import Settings
from functions.shared.limits import MAX_NUMERIC_MAGNITUDE
from functions.spec import ModelSpec
from tests.conftest import CHURN_SPEC
from tests.serving.events import api_event
from tests.serving.helpers import INSTANCE

SIGNATURE = ModelSpec.model_validate(CHURN_SPEC).signature


def config(**variables: str) -> Settings:
    """The function's settings, with some of its environment variables changed."""
    return Settings.from_environment({**os.environ, **variables})


def event(body, *, encoded: bool = False) -> APIGatewayProxyEvent:
    return APIGatewayProxyEvent(api_event("POST", "/v1/models/churn/predict", body, encoded=encoded))


# --- the body ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoded", [False, True])
def test_a_body_is_read_as_json(encoded):
    assert read_json_body(event({"instances": [INSTANCE]}, encoded=encoded), 1000) == {"instances": [INSTANCE]}


@pytest.mark.parametrize("encoded", [False, True])
def test_a_body_of_exactly_the_limit_is_accepted(encoded):
    body = json.dumps("x" * 998)
    assert len(body) == 1000
    assert read_json_body(event(body, encoded=encoded), 1000) == "x" * 998


@pytest.mark.parametrize("body, encoded", [("1" * 1001, False), ("1" * 1001, True), ("é" * 501, False),
                                           ("é" * 501, True), ("{" * 10_000, True)])
def test_a_body_over_the_limit_is_too_large_whatever_it_holds(body, encoded):
    with pytest.raises(PayloadTooLarge, match="larger than 1000 bytes"):
        read_json_body(event(body, encoded=encoded), 1000)


def test_an_oversized_body_is_never_parsed(monkeypatch):
    from functions.serving import handler

    def parse(*args, **kwargs):
        raise AssertionError("an oversized body was parsed")

    monkeypatch.setattr(handler.json, "loads", parse)
    with pytest.raises(PayloadTooLarge):
        read_json_body(event("[" + "1," * 1000 + "1]"), 1000)


@pytest.mark.parametrize("body, encoded, message", [
    (None, False, "has no body"),
    ("", False, "has no body"),
    ("{'instances': []}", False, "not valid JSON"),
    ("[1, 2", False, "not valid JSON"),
    ("[" * 5000 + "]" * 5000, False, "not valid JSON"),  # nesting deeper than the parser recurses
    ("1" * 5000, False, "not valid JSON"),  # an integer with more digits than Python converts
    (b"\xc3\x28", True, "not valid JSON"),  # not UTF-8
    ("\ud800", False, "not valid JSON"),  # a lone surrogate
])
def test_an_unreadable_body_is_invalid_input(body, encoded, message):
    with pytest.raises(InvalidInput, match=message) as raised:
        read_json_body(event(body, encoded=encoded), 100_000)
    assert type(raised.value) is InvalidInput


def test_a_body_that_is_not_base64_is_invalid_input():
    request = api_event("POST", "/v1/models/churn/predict", None)
    request["body"], request["isBase64Encoded"] = "%%%not base64%%%", True
    with pytest.raises(InvalidInput, match="not valid base64"):
        read_json_body(APIGatewayProxyEvent(request), 1000)


# --- the request ------------------------------------------------------------------------------


def test_a_request_carries_a_list_of_instances():
    limited = config(MAX_INSTANCES="2")
    assert parse_predict_request(event({"instances": [INSTANCE, 1]}), limited).instances == [INSTANCE, 1]
    with pytest.raises(PayloadTooLarge, match=r"at most 2 instances \(got 3\)"):
        parse_predict_request(event({"instances": [INSTANCE] * 3}), limited)


@pytest.mark.parametrize("document, where", [
    ({}, "instances: Field required"),
    ({"instances": None}, "instances: Input should be a valid list"),
    ({"instances": "abc"}, "instances: Input should be a valid list"),
    ({"instances": []}, "instances: List should have at least 1 item"),
    ({"instances": [INSTANCE], "extra": 1}, "extra: Extra inputs are not permitted"),
    ([INSTANCE], "body: Input should be a valid dictionary"),
    ('"instances"', "body: Input should be a valid dictionary"),  # a JSON string
])
def test_a_request_without_instances_is_invalid_input(document, where):
    with pytest.raises(InvalidInput, match="the body must be") as raised:
        parse_predict_request(event(document), config())
    assert type(raised.value) is InvalidInput and where in raised.value.message


def test_a_hostile_key_is_not_echoed_whole_in_a_request_error():
    with pytest.raises(InvalidInput) as raised:
        parse_predict_request(event({"instances": [1], "k" * 10_000: 1}), config())
    assert "k" * 64 in raised.value.message and "k" * 65 not in raised.value.message


# --- the signature ----------------------------------------------------------------------------


def test_instances_that_match_the_signature_have_no_problem():
    assert check_instances([INSTANCE, {**INSTANCE, "tenure_months": 0, "monthly_charges": -1.5e3, "plan": ""}],
                           SIGNATURE) == []


@pytest.mark.parametrize("instance, field, problem", [
    ({**INSTANCE, "tenure_months": "3"}, "tenure_months", "must be a number, not a string"),
    ({**INSTANCE, "tenure_months": True}, "tenure_months", "must be a number, not a boolean"),
    ({**INSTANCE, "tenure_months": None}, "tenure_months", "must be a number, not null"),
    ({**INSTANCE, "tenure_months": {}}, "tenure_months", "must be a number, not an object"),
    ({**INSTANCE, "tenure_months": float("nan")}, "tenure_months", "must be a finite number"),
    ({**INSTANCE, "tenure_months": float("-inf")}, "tenure_months", "must be a finite number"),
    ({**INSTANCE, "tenure_months": 1e308}, "tenure_months",
     f"is out of range: the model takes numbers {NUMERIC_RANGE}"),
    ({**INSTANCE, "tenure_months": -1e308}, "tenure_months", "is out of range"),
    ({**INSTANCE, "tenure_months": 3.5e38}, "tenure_months", "is out of range"),  # just past float32
    ({**INSTANCE, "tenure_months": -(10**39)}, "tenure_months", "is out of range"),  # an int, compared exactly
    ({**INSTANCE, "tenure_months": 10**400}, "tenure_months", "is out of range"),  # past any float
    ({**INSTANCE, "plan": 1.5}, "plan", "must be a string, not a number"),
    ({**INSTANCE, "plan": True}, "plan", "must be a string, not a boolean"),
    ({**INSTANCE, "plan": ["basic"]}, "plan", "must be a string, not an array"),
    ({**INSTANCE, "plan": "x" * 257}, "plan", "must be a string of at most 256 characters (got 257)"),
    ({**INSTANCE, "plan": "\ud800"}, "plan", "must be valid Unicode text: character 0 is a lone UTF-16 surrogate "
                                              "(U+D800)"),
    ({**INSTANCE, "plan": "basic\udfff"}, "plan", "must be valid Unicode text: character 5 is a lone UTF-16"),
    ({**INSTANCE, "plan": "\udc00\ud800"}, "plan", "must be valid Unicode text: character 0"),  # a pair reversed
    ({k: v for k, v in INSTANCE.items() if k != "support_calls"}, "support_calls", "is missing"),
    ({**INSTANCE, "churned": 1}, "churned", "is not a feature of this model"),
    ("basic", "*", "must be an object of features, not a string"),
])
def test_each_way_an_instance_misses_the_signature_is_named(instance, field, problem):
    (found,) = check_instances([INSTANCE, instance], SIGNATURE)
    assert (found.instance, found.field) == (1, field) and found.problem.startswith(problem)


def test_a_string_of_the_maximum_length_is_accepted():
    assert check_instances([{**INSTANCE, "plan": "x" * 256}], SIGNATURE) == []


def test_numbers_within_the_models_input_range_are_accepted():
    edges = [MAX_NUMERIC_MAGNITUDE, -MAX_NUMERIC_MAGNITUDE, 3.4e38, 2**60, -(2**64) - 1, 10**38, 1e-320, -0.0]
    assert check_instances([{**INSTANCE, "tenure_months": value} for value in edges], SIGNATURE) == []
    assert NUMERIC_RANGE == "between -3.4028234663852886e+38 and 3.4028234663852886e+38"  # float32's, stated exactly


def test_any_valid_unicode_text_is_accepted():
    texts = ["\U0001f600", "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16"), "é" * 256, "\u0000",
             "\ufffe", "\u202etxt", "\x1b[31m", "a\nb", "null", "__missing__"]
    assert check_instances([{**INSTANCE, "plan": text} for text in texts], SIGNATURE) == []


def test_the_error_names_the_first_problems_and_counts_the_rest():
    instances = [{"wrong": i} for i in range(5)]  # 4 missing + 1 extra each: 25 problems
    with pytest.raises(RequestInvalid) as raised:
        validate_instances(instances, SIGNATURE)
    error = raised.value
    assert error.status == 422 and error.code == "RequestInvalid"
    assert error.message.count("instance ") == MAX_REPORTED_PROBLEMS
    assert error.message.endswith(f"and {25 - MAX_REPORTED_PROBLEMS} more problem(s)")
    assert len(error.details["problems"]) == MAX_REPORTED_PROBLEMS
    assert error.details["problems"][0] == {"instance": 0, "field": "tenure_months", "problem": "is missing"}
