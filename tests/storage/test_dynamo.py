"""Records to and from DynamoDB items: numbers read back by field type, JSON fields, NaN, sets, pages."""

import json
from decimal import Decimal
from typing import Annotated, Any

import numpy as np
import pytest
from boto3.dynamodb.conditions import Attr, Key
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions.errors import RetryableError
from functions.records import DatasetVersion, Run
from functions.storage.dynamo import StoredAsJson, attribute, attributes, from_item, query_all, to_item
from tests.conftest import failing_with
from tests.storage.moto_aws import moto_table


class Sample(BaseModel):
    model_config = ConfigDict(frozen=True)

    count: int
    ratio: float
    scores: dict[str, float] = Field(default_factory=dict)
    sizes: dict[str, int] = Field(default_factory=dict)
    content: Annotated[dict[str, Any], StoredAsJson()] = Field(default_factory=dict)
    tags: set[str] = Field(default_factory=set)
    note: str | None = None
    limit: float | None = None


@pytest.fixture
def table():
    with moto_table("records") as table:
        yield table


def through_dynamodb(table, record: BaseModel) -> dict[str, Any]:
    """The item as DynamoDB gives it back (numbers as Decimal, sets as sets)."""
    table.put_item(Item=to_item(record, pk="p", sk="s"))
    return table.get_item(Key={"pk": "p", "sk": "s"})["Item"]


def test_numbers_are_read_back_as_their_field_types(table):
    record = Sample(count=3, ratio=2.0, scores={"auc": 1.0, "f1": 0.25}, sizes={"train": 160})
    item = through_dynamodb(table, record)
    assert item["count"] == Decimal(3) and item["ratio"] == Decimal(2)  # DynamoDB keeps no int/float distinction
    back = from_item(Sample, item)
    assert back == record
    assert type(back.count) is int and type(back.ratio) is float
    assert type(back.scores["auc"]) is float and type(back.sizes["train"]) is int


def test_the_platforms_records_keep_their_number_types(table):
    dataset = DatasetVersion(model="m", dataset_id="d" * 64, bucket="b", key="k", rows=200, columns={"x": "float64"},
                             profile={"rows": 200}, runs={"r1"})
    back = from_item(DatasetVersion, through_dynamodb(table, dataset))
    assert back == dataset and type(back.rows) is int
    run = Run(model="m", run_id="r1", bucket="b", key="k", code_version="1", metrics={"roc_auc": 1.0},
              model_version=3, promoted=True)
    back_run = from_item(Run, through_dynamodb(table, run))
    assert back_run == run and type(back_run.metrics["roc_auc"]) is float and type(back_run.model_version) is int


def test_json_fields_are_stored_as_text_and_keep_what_json_holds(table):
    content = {"b": [1, 1.5, None, "x"], "a": {"nested": True}, "n": np.int64(7)}
    item = to_item(Sample(count=1, ratio=1.0, content=content))
    assert isinstance(item["content"], str) and json.loads(item["content"])["n"] == 7
    assert list(json.loads(item["content"])) == ["a", "b", "n"]  # sorted: the same content, the same text
    back = from_item(Sample, through_dynamodb(table, Sample(count=1, ratio=1.0, content=content))).content
    assert back == {"b": [1, 1.5, None, "x"], "a": {"nested": True}, "n": 7}
    assert type(back["b"][0]) is int and type(back["b"][1]) is float  # unlike a DynamoDB map, JSON keeps both


def test_nan_and_infinity_are_dropped(table):
    record = Sample(count=1, ratio=1.0, scores={"auc": float("nan"), "r2": float("-inf"), "f1": 0.5},
                    limit=float("nan"), content={"gap": float("nan")})
    item = to_item(record)
    assert item["scores"] == {"f1": Decimal("0.5")} and item.get("limit") is None
    assert json.loads(item["content"]) == {"gap": None}
    back = from_item(Sample, through_dynamodb(table, record))
    assert back.scores == {"f1": 0.5} and back.limit is None and back.content == {"gap": None}
    assert attribute(float("inf")) is None and attribute([1.5, float("nan")]) == [Decimal("1.5"), None]


def test_sets_are_dynamodb_sets_and_an_empty_set_is_left_out(table):
    tagged = Sample(count=1, ratio=1.0, tags={"r1", "r2"})
    assert to_item(tagged)["tags"] == {"r1", "r2"}
    assert from_item(Sample, through_dynamodb(table, tagged)).tags == {"r1", "r2"}
    untagged = Sample(count=1, ratio=1.0)
    assert "tags" not in to_item(untagged)  # DynamoDB refuses an empty set
    assert from_item(Sample, through_dynamodb(table, untagged)).tags == set()


def test_keys_are_added_none_is_left_out_and_unknown_attributes_are_ignored():
    item = to_item(Sample(count=1, ratio=1.0), pk="MODEL#m", sk="SAMPLE")
    assert item["pk"] == "MODEL#m" and item["sk"] == "SAMPLE" and "note" not in item and "limit" not in item
    assert from_item(Sample, {**item, "legacy": "x"}) == Sample(count=1, ratio=1.0)


def test_attributes_are_checked_against_their_fields():
    assert attributes(Run, {"model_version": "3", "metrics": {"auc": 1}}) == {
        "model_version": 3, "metrics": {"auc": Decimal("1.0")}}
    with pytest.raises(KeyError, match="Run has no field\\(s\\) colour"):
        attributes(Run, {"colour": "red"})
    with pytest.raises(ValidationError):
        attributes(Run, {"model_version": "three"})


def test_query_all_reads_every_page(table):
    for i in range(5):
        table.put_item(Item={"pk": "MODEL#m", "sk": f"RUN#{i}"})
    table.put_item(Item={"pk": "MODEL#other", "sk": "RUN#9"})
    queried = query_all(table, "listing", KeyConditionExpression=Key("pk").eq("MODEL#m"), Limit=2)
    assert [item["sk"] for item in queried] == [f"RUN#{i}" for i in range(5)]
    scanned = query_all(table, "listing", FilterExpression=Attr("sk").begins_with("RUN#"), Limit=2)
    assert len(scanned) == 6  # without a key condition it scans


def test_a_throttled_query_is_retryable(table, monkeypatch):
    monkeypatch.setattr(table, "query", failing_with("ProvisionedThroughputExceededException", "Query"))
    with pytest.raises(RetryableError, match="listing the runs"):
        query_all(table, "listing the runs", KeyConditionExpression=Key("pk").eq("MODEL#m"))
