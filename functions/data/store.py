"""The datasets table: one item per dataset version (model + content sha256), with its lineage.

The same content uploaded twice is one item: the put is conditional, and a repeat only adds
the run id to the item's `runs` set.
"""

import json

from functions import aws
from functions.errors import Conflict, NotFound
from functions.registry.store import from_item, now_iso, to_item
from functions.settings import settings
from functions.storage import storage_errors


class DatasetStore:
    """Data access for the datasets table (a boto3 DynamoDB Table resource is injected)."""

    def __init__(self, table):
        self.table = table

    def put_dataset(self, model: str, dataset_id: str, *, bucket: str, key: str, version_id: str | None,
                    rows: int, columns: dict, profile: dict, run_id: str) -> bool:
        """Record a dataset version used by `run_id`; False when the same content was already recorded."""
        item = {
            "pk": f"MODEL#{model}",
            "sk": f"DATASET#{dataset_id}",
            "model": model,
            "dataset_id": dataset_id,
            "bucket": bucket,
            "key": key,
            "version_id": version_id,
            "rows": int(rows),
            "columns": to_item(columns),
            "profile": json.dumps(profile, allow_nan=False),
            "created_at": now_iso(),
            "runs": {run_id},
        }
        try:
            with storage_errors(f"recording dataset {dataset_id[:12]} of model {model!r}"):
                self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except Conflict:
            self.add_run(model, dataset_id, run_id)
            return False
        return True

    def add_run(self, model: str, dataset_id: str, run_id: str) -> None:
        with storage_errors(f"recording the lineage of dataset {dataset_id[:12]}"):
            self.table.update_item(
                Key={"pk": f"MODEL#{model}", "sk": f"DATASET#{dataset_id}"},
                UpdateExpression="ADD #runs :run",
                ExpressionAttributeNames={"#runs": "runs"},
                ExpressionAttributeValues={":run": {run_id}},
            )

    def get_dataset(self, model: str, dataset_id: str) -> dict:
        """The dataset version, its profile decoded."""
        with storage_errors(f"reading dataset {dataset_id[:12]} of model {model!r}"):
            item = self.table.get_item(
                Key={"pk": f"MODEL#{model}", "sk": f"DATASET#{dataset_id}"}, ConsistentRead=True
            ).get("Item")
        if not item:
            raise NotFound(f"model {model!r} has no dataset {dataset_id[:12]}")
        return _decode(item)

    def list_datasets(self, model: str) -> list[dict]:
        items, kwargs = [], {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": f"MODEL#{model}", ":prefix": "DATASET#"},
        }
        with storage_errors(f"listing the datasets of model {model!r}"):
            while True:
                page = self.table.query(**kwargs)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted((_decode(i) for i in items), key=lambda d: d.get("created_at", ""))


def _decode(item: dict) -> dict:
    record = {k: from_item(v) for k, v in item.items() if k not in {"pk", "sk"}}
    if isinstance(record.get("profile"), str):
        record["profile"] = json.loads(record["profile"])
    return record


def dataset_store() -> DatasetStore:
    return DatasetStore(aws.table(settings().datasets_table))
