"""The datasets table on DynamoDB (the adapter of data.store.DatasetStore): pk MODEL#<model>, sk DATASET#<id>."""

from functools import cache
from typing import TYPE_CHECKING

from boto3.dynamodb.conditions import Key

from functions import aws
from functions.errors import Conflict, NotFound
from functions.records import DatasetVersion
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


@cache
def dataset_store() -> DynamoDatasetStore:
    return DynamoDatasetStore(aws.table(settings().datasets_table))
