"""The datasets table on DynamoDB (the adapter of data.store.DatasetStore): pk MODEL#<model>, sk DATASET#<id>
for a dataset version, RUNKEY#<run key> for the run that holds a run identity."""

from functools import cache
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from functions import aws
from functions.errors import Conflict, NotFound
from functions.records import DatasetVersion, now_iso
from functions.settings import settings
from functions.storage.dynamo import from_item, query_all, to_item
from functions.storage.errors import storage_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


class DynamoDatasetStore:
    def __init__(self, table: "Table"):
        self.table = table

    def put_dataset(self, dataset: DatasetVersion) -> bool:
        key = {"pk": f"MODEL#{dataset.model}", "sk": f"DATASET#{dataset.dataset_id}"}
        what = f"recording dataset {dataset.dataset_id[:12]} of model {dataset.model!r}"
        try:
            with storage_errors(what):
                self.table.put_item(Item=to_item(dataset, **key), ConditionExpression="attribute_not_exists(pk)")
        except Conflict:
            if not dataset.runs:  # nothing to add (and DynamoDB refuses an empty set)
                return False
            with storage_errors(what):
                self.table.update_item(Key=key, UpdateExpression="ADD #runs :runs",
                                       ExpressionAttributeNames={"#runs": "runs"},
                                       ExpressionAttributeValues={":runs": set(dataset.runs)})
            return False
        return True

    def get_dataset(self, model: str, dataset_id: str) -> DatasetVersion:
        with storage_errors(f"reading dataset {dataset_id[:12]} of model {model!r}"):
            item = self.table.get_item(
                Key={"pk": f"MODEL#{model}", "sk": f"DATASET#{dataset_id}"}, ConsistentRead=True
            ).get("Item")
        if not item:
            raise NotFound(f"model {model!r} has no dataset {dataset_id[:12]}")
        return from_item(DatasetVersion, item)

    def list_datasets(self, model: str) -> list[DatasetVersion]:
        items = query_all(self.table, f"listing the datasets of model {model!r}",
                          KeyConditionExpression=Key("pk").eq(f"MODEL#{model}") & Key("sk").begins_with("DATASET#"))
        return sorted((from_item(DatasetVersion, i) for i in items), key=lambda d: d.created_at)

    def identified_run(self, model: str, run_key: str) -> str | None:
        with storage_errors(f"reading the run of identity {run_key[:12]} of model {model!r}"):
            item = self.table.get_item(Key={"pk": f"MODEL#{model}", "sk": f"RUNKEY#{run_key}"},
                                       ConsistentRead=True).get("Item")
        return str(item["run_id"]) if item else None

    def claim_identity(self, model: str, run_key: str, run_id: str, *, expected: str | None) -> bool:
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if expected is not None:
            condition = {"ConditionExpression": "run_id = :expected",
                         "ExpressionAttributeValues": {":expected": expected}}
        try:
            with storage_errors(f"claiming identity {run_key[:12]} of model {model!r} for run {run_id}"):
                self.table.put_item(Item={"pk": f"MODEL#{model}", "sk": f"RUNKEY#{run_key}", "run_id": run_id,
                                          "claimed_at": now_iso()}, **condition)
        except Conflict:
            return self.identified_run(model, run_key) == run_id  # a retried claim whose reply was lost
        return True


@cache
def dataset_store() -> DynamoDatasetStore:
    return DynamoDatasetStore(aws.table(settings().datasets_table))
