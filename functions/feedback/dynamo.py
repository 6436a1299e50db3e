"""The feedback table (the adapter of feedback.store.FeedbackStore).

Partition `MODEL#<model>`, sort key `LABEL#<request id>#<row>`: a row's label is one item, so a
conditional write decides whether it is new. An index `received` (partition pk, sort key
received_at) lets the quality check read the labels that arrived in its window, not the whole
partition. The label is kept as JSON text, so a class keeps its exact type (True, 1 and "1" differ).
"""

import json
import time
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from functions import aws
from functions.errors import Conflict, RetryableError
from functions.feedback.labels import conflict, same_value
from functions.feedback.settings import feedback_settings
from functions.feedback.store import Outcome, StoredLabel
from functions.storage.dynamo import query_all, transact
from functions.storage.errors import storage_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

RECEIVED_INDEX = "received"
BATCH_GET = 100  # BatchGetItem's limit


def _pk(model: str) -> str:
    return f"MODEL#{model}"


def _key(model: str, request_id: str, index: int) -> dict[str, str]:
    return {"pk": _pk(model), "sk": f"LABEL#{request_id}#{index}"}


def _item(label: StoredLabel) -> dict[str, Any]:
    return {**_key(label.model, label.request_id, label.index), "model": label.model,
            "request_id": label.request_id, "row": label.index, "label": json.dumps(label.label, allow_nan=False),
            "received_at": label.received_at, "source": label.source}


def _label(item: dict[str, Any]) -> StoredLabel:
    return StoredLabel(model=item["model"], request_id=item["request_id"], index=int(item["row"]),
                       label=json.loads(item["label"]), received_at=item["received_at"], source=item.get("source",
                                                                                                       "api"))


class DynamoFeedbackStore:
    def __init__(self, table: "Table"):
        self.table = table

    def _existing(self, labels: list[StoredLabel]) -> dict[tuple[str, int], Any]:
        """The labels already stored for these rows (consistent reads)."""
        found: dict[tuple[str, int], Any] = {}
        client = self.table.meta.client
        for first in range(0, len(labels), BATCH_GET):
            keys: list[Any] = [_key(x.model, x.request_id, x.index) for x in labels[first:first + BATCH_GET]]
            request: dict[str, Any] = {self.table.name: {"Keys": keys, "ConsistentRead": True,
                                                          "ProjectionExpression": "request_id, #row, label",
                                                          "ExpressionAttributeNames": {"#row": "row"}}}
            for attempt in range(8):  # unprocessed keys come back under throttling: read them again, backing off
                if attempt:
                    time.sleep(min(0.05 * 2**attempt, 1.0))
                with storage_errors("reading stored labels"):
                    page = client.batch_get_item(RequestItems=request)
                items: list[Any] = page.get("Responses", {}).get(self.table.name, [])  # Python values (the resource)
                for item in items:
                    found[(str(item["request_id"]), int(item["row"]))] = json.loads(item["label"])
                request = page.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise RetryableError("reading stored labels: storage is busy, try again")
        return found

    def put_labels(self, labels: list[StoredLabel]) -> list[Outcome]:
        existing = self._existing(labels)
        clashes = [x.key for x in labels if x.key in existing and not same_value(existing[x.key], x.label)]
        if clashes:
            raise conflict(clashes)
        new = [x for x in labels if x.key not in existing]
        if new:
            transact(self.table, [{"Put": {"TableName": self.table.name, "Item": _item(x),
                                           "ConditionExpression": "attribute_not_exists(pk)"}} for x in new],
                     "storing labels", conflict="another request labelled these rows meanwhile; send the labels "
                                                "again (the same labels are then accepted unchanged)")
        return ["unchanged" if x.key in existing else "stored" for x in labels]

    def put_label(self, label: StoredLabel) -> Outcome:
        try:
            with storage_errors("storing a label"):
                self.table.put_item(Item=_item(label), ConditionExpression="attribute_not_exists(pk)")
        except Conflict:
            existing = self._existing([label])
            if label.key in existing and same_value(existing[label.key], label.label):
                return "unchanged"
            raise conflict([label.key]) from None
        return "stored"

    def labels_since(self, model: str, since: datetime) -> list[StoredLabel]:
        start = since.astimezone(UTC).isoformat(timespec="microseconds")
        items = query_all(self.table, f"reading the labels of model {model!r}", IndexName=RECEIVED_INDEX,
                          KeyConditionExpression=Key("pk").eq(_pk(model)) & Key("received_at").gte(start))
        return [_label(item) for item in items]


@cache
def feedback_store() -> DynamoFeedbackStore:
    """The store of the running function (table name from its settings), built once per execution environment."""
    return DynamoFeedbackStore(aws.table(feedback_settings().feedback_table))
