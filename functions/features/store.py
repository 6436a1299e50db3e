"""Feature stores: offline (Parquet on S3, per run) and online (latest values per entity, DynamoDB).

The online store keeps one item per entity: pk `<model>#<entity>`, sk `LATEST`, the built
features as a JSON string, and `expires_at` (epoch seconds), the table's TTL attribute. TTL
deletion is lazy, so reads also skip expired items. Reads go in batches of 100 keys (the
BatchGetItem limit), retrying what DynamoDB leaves unprocessed.
"""

import io
import json
import math
import time
from datetime import datetime, timezone
from typing import Any, Iterable

import pandas as pd

from functions import aws
from functions.errors import InvalidInput, RetryableError
from functions.settings import settings
from functions.storage import sha256, storage_errors

BATCH_GET_LIMIT = 100
MAX_ENTITY_BYTES = 1024  # partition keys may hold 2048 bytes; leave room for the model name
UNPROCESSED_RETRIES = 5


def entity_key(value: Any) -> str | None:
    """The canonical string of an entity id, or None when it cannot be a key (missing, too long)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if hasattr(value, "item"):
        value = value.item()
    text = str(value)
    if not text or len(text.encode()) > MAX_ENTITY_BYTES:
        return None
    return text


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value.item() if hasattr(value, "item") else value


class OnlineStore:
    """Latest feature values per entity of a model (a boto3 DynamoDB Table resource is injected)."""

    def __init__(self, table):
        self.table = table

    def put_latest(self, model: str, frame: pd.DataFrame, entity_column: str, feature_names: list[str], *,
                   dataset_id: str, ttl_days: int) -> int:
        """Write the last row of each entity in `frame`; returns how many entities were written."""
        now = datetime.now(timezone.utc)
        expires_at = int(now.timestamp()) + int(ttl_days) * 86_400
        latest: dict[str, dict] = {}
        for entity, row in zip(frame[entity_column].tolist(), frame[feature_names].to_dict("records")):
            key = entity_key(entity)
            if key is not None:
                latest[key] = row  # file order: a later row of the same entity is newer
        with storage_errors(f"writing the online features of model {model!r}"):
            with self.table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
                for key, row in latest.items():
                    batch.put_item(Item={
                        "pk": f"{model}#{key}",
                        "sk": "LATEST",
                        "model": model,
                        "entity": key,
                        "features": json.dumps({k: _json_value(v) for k, v in row.items()}),
                        "dataset_id": dataset_id,
                        "updated_at": now.isoformat(timespec="seconds"),
                        "expires_at": expires_at,
                    })
        return len(latest)

    def get_latest(self, model: str, entity: Any) -> dict | None:
        key = entity_key(entity)
        if key is None:
            raise InvalidInput("the entity id is missing or too long")
        with storage_errors(f"reading the online features of model {model!r}"):
            item = self.table.get_item(Key={"pk": f"{model}#{key}", "sk": "LATEST"}).get("Item")
        return _features(item)

    def get_many(self, model: str, entities: Iterable[Any]) -> dict[str, dict]:
        """Features of each known, unexpired entity (missing entities are absent from the result)."""
        keys = sorted({k for k in (entity_key(e) for e in entities) if k is not None})
        found: dict[str, dict] = {}
        client = self.table.meta.client
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request = {self.table.name: {"Keys": [{"pk": f"{model}#{k}", "sk": "LATEST"}
                                                  for k in keys[start:start + BATCH_GET_LIMIT]]}}
            for attempt in range(UNPROCESSED_RETRIES + 1):
                with storage_errors(f"reading the online features of model {model!r}"):
                    response = client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table.name, []):
                    features = _features(item)
                    if features is not None:
                        found[item["entity"]] = features
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))  # DynamoDB asks us to back off
            else:
                raise RetryableError(f"reading the online features of model {model!r}: storage is busy, try again")
        return found


def _features(item: dict | None) -> dict | None:
    if not item or int(item.get("expires_at", 0)) < time.time():
        return None
    return json.loads(item["features"])


def online_store() -> OnlineStore:
    return OnlineStore(aws.table(settings().features_table))


# --- offline store: Parquet frames on S3

def write_frame(s3, bucket: str, key: str, frame: pd.DataFrame) -> str:
    """Write `frame` as Parquet; returns the sha256 of the bytes written."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    data = buffer.getvalue()
    digest = sha256(data)
    with storage_errors(f"writing {key}"):
        s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"sha256": digest})
    return digest


def read_frame(s3, bucket: str, key: str) -> pd.DataFrame:
    with storage_errors(f"reading {key}"):
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return pd.read_parquet(io.BytesIO(data))
