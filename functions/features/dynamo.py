"""The online store on DynamoDB (the adapter of features.store.OnlineStore).

One item per entity: pk `<model>#<entity>`, sk `LATEST`, the features as a JSON string, and
`expires_at` (epoch seconds), the table's TTL attribute. TTL deletion is lazy, so reads also
skip expired items. Reads go in batches of 100 keys (the BatchGetItem limit), retrying what
DynamoDB leaves unprocessed.
"""

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from functions import aws
from functions.errors import InvalidInput, RetryableError
from functions.features.store import entity_key, row_json
from functions.settings import settings
from functions.storage.errors import storage_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

BATCH_GET_LIMIT = 100
UNPROCESSED_RETRIES = 5


class DynamoOnlineStore:
    def __init__(self, table: "Table"):
        self.table = table

    def put_latest(self, model: str, rows: dict[str, dict[str, Any]], *, dataset_id: str, ttl_days: int) -> int:
        now = datetime.now(UTC)
        expires_at = int(now.timestamp()) + int(ttl_days) * 86_400
        with (storage_errors(f"writing the online features of model {model!r}"),
              self.table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch):
            for key, row in rows.items():
                batch.put_item(Item={
                    "pk": f"{model}#{key}",
                    "sk": "LATEST",
                    "model": model,
                    "entity": key,
                    "features": row_json(row),
                    "dataset_id": dataset_id,
                    "updated_at": now.isoformat(timespec="seconds"),
                    "expires_at": expires_at,
                })
        return len(rows)

    def get_latest(self, model: str, entity: Any) -> dict[str, Any] | None:
        key = entity_key(entity)
        if key is None:
            raise InvalidInput("the entity id is missing or too long")
        with storage_errors(f"reading the online features of model {model!r}"):
            item = self.table.get_item(Key={"pk": f"{model}#{key}", "sk": "LATEST"}).get("Item")
        return _features(item)

    def get_many(self, model: str, entities: Iterable[Any]) -> dict[str, dict[str, Any]]:
        keys = sorted({k for k in (entity_key(e) for e in entities) if k is not None})
        found: dict[str, dict[str, Any]] = {}
        client = self.table.meta.client
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: Any = {self.table.name: {"Keys": [{"pk": f"{model}#{k}", "sk": "LATEST"}
                                                       for k in keys[start:start + BATCH_GET_LIMIT]]}}
            for attempt in range(UNPROCESSED_RETRIES + 1):
                with storage_errors(f"reading the online features of model {model!r}"):
                    response = client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table.name, []):
                    features = _features(item)
                    if features is not None:
                        found[str(item["entity"])] = features
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))  # DynamoDB asks us to back off
            else:
                raise RetryableError(f"reading the online features of model {model!r}: storage is busy, try again")
        return found


def _features(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if not item or int(item.get("expires_at", 0)) < time.time():
        return None
    return json.loads(item["features"])


@cache
def online_store() -> DynamoOnlineStore:
    return DynamoOnlineStore(aws.table(settings().features_table))
