"""The online store on DynamoDB (the adapter of features.store.OnlineStore).

One item per entity: pk `<model>#<entity>`, sk `LATEST`, the features as a JSON string, and
`expires_at` (epoch seconds), the table's TTL attribute. TTL deletion is lazy, so reads also
skip expired items. Reads go in batches of 100 keys (the BatchGetItem limit), retrying what
DynamoDB leaves unprocessed.

Writes go in batches of 25 items (the BatchWriteItem limit), WRITERS requests at a time (boto3
clients are thread-safe), each written in DynamoDB's own JSON through a plain client (the table
resource would convert every value again). What DynamoDB leaves unprocessed is sent again after
an exponential backoff with full jitter, at most WRITE_ATTEMPTS times; then the write fails as a
RetryableError naming how many entities were left unwritten (a retry writes the same items again).
"""

import json
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from functions import aws
from functions.errors import InvalidInput, RetryableError
from functions.features.keys import entity_key, row_json
from functions.settings import settings
from functions.storage.errors import storage_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import Table

BATCH_GET_LIMIT = 100
UNPROCESSED_RETRIES = 5
BATCH_WRITE_LIMIT = 25
WRITERS = 8  # BatchWriteItem requests in flight at once
WRITE_ATTEMPTS = 8  # sends of one batch while DynamoDB leaves some of its items unprocessed
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


def backoff_s(attempt: int) -> float:
    """Exponential backoff with full jitter (AWS's advice): uniform in [0, min(cap, base * 2^attempt)]."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def writer_client(table: "Table") -> "DynamoDBClient":
    """A plain client of the table's region and endpoint, with a connection for each writer; its requests are
    built here, so botocore's per-value validation of each one is skipped."""
    meta = table.meta.client.meta
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=60,
                    max_pool_connections=WRITERS * 2, parameter_validation=False)
    return boto3.client("dynamodb", region_name=meta.region_name, endpoint_url=meta.endpoint_url, config=config)


class DynamoOnlineStore:
    def __init__(self, table: "Table", client: "DynamoDBClient | None" = None):
        self.table = table
        self.client = client if client is not None else writer_client(table)

    def put_latest(self, model: str, rows: dict[str, dict[str, Any]], *, dataset_id: str, ttl_days: int) -> int:
        now = datetime.now(UTC)
        constant = {"sk": {"S": "LATEST"}, "model": {"S": model}, "dataset_id": {"S": dataset_id},
                    "updated_at": {"S": now.isoformat(timespec="seconds")},
                    "expires_at": {"N": str(int(now.timestamp()) + int(ttl_days) * 86_400)}}

        def batches() -> Iterator[list[dict[str, Any]]]:  # built as they are sent: a few in memory at a time
            batch: list[dict[str, Any]] = []
            for key, row in rows.items():
                batch.append({"PutRequest": {"Item": {"pk": {"S": f"{model}#{key}"}, "entity": {"S": key},
                                                      "features": {"S": row_json(row)}, **constant}}})
                if len(batch) == BATCH_WRITE_LIMIT:
                    yield batch
                    batch = []
            if batch:
                yield batch

        what = f"writing the online features of model {model!r}"
        stop = threading.Event()  # set when a batch fails for good: the others stop sending
        outcomes: list[tuple[int, Exception | None]] = []
        sent = 0
        with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="online-write") as pool:
            in_flight: deque[tuple[Future[int], int]] = deque()
            for batch in batches():
                if stop.is_set():
                    break
                in_flight.append((pool.submit(self._write, batch, what, stop), len(batch)))
                sent += len(batch)
                if len(in_flight) >= WRITERS * 4:
                    future, size = in_flight.popleft()
                    outcomes.append(self._outcome(future.result, size))
            outcomes += [self._outcome(future.result, size) for future, size in in_flight]
        unwritten = len(rows) - sent + sum(left for left, _ in outcomes)
        if unwritten:
            errors = [error for _, error in outcomes if error is not None]
            lasting = next((error for error in errors if not isinstance(error, RetryableError)), None)
            if lasting is not None:  # access denied, a missing table: no retry helps
                raise lasting
            raise RetryableError(f"{what}: {unwritten} of {len(rows)} entities were not written (storage is busy); "
                                 "writing them again is safe, try again")
        return len(rows)

    @staticmethod
    def _outcome(result: Any, size: int) -> tuple[int, Exception | None]:
        """(items left unwritten, the error) of one batch's write."""
        try:
            return result(), None
        except Exception as error:  # noqa: BLE001 - every batch's outcome is counted before one error is raised
            return size, error

    def _write(self, batch: list[dict[str, Any]], what: str, stop: threading.Event) -> int:
        """Send one batch until DynamoDB has taken every item; returns how many it left unwritten (0: none)."""
        pending: Any = batch
        for attempt in range(WRITE_ATTEMPTS):
            if stop.is_set():
                return len(pending)
            try:
                with storage_errors(what):
                    response = self.client.batch_write_item(RequestItems={self.table.name: pending})
            except Exception:
                stop.set()
                raise
            pending = (response.get("UnprocessedItems") or {}).get(self.table.name) or []
            if not pending:
                return 0
            if attempt + 1 < WRITE_ATTEMPTS:
                time.sleep(backoff_s(attempt))  # DynamoDB asks us to slow down
        stop.set()
        return len(pending)

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
