"""DynamoDB items: records converted to and from items in one place, and paginated reads.

A record is a pydantic model; its fields decide how values are stored and read back: numbers
as DynamoDB numbers (read back as int or float by the field's type, never guessed), free-form
fields marked `StoredAsJson` as JSON text (their content may hold anything JSON holds).
"""

import json
import math
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from functions.errors import Conflict, RetryableError
from functions.jsonable import jsonable
from functions.storage.errors import storage_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

R = TypeVar("R", bound=BaseModel)


class StoredAsJson:
    """Field marker: `Annotated[dict[str, Any], StoredAsJson()]` is kept as a JSON string."""


def _as_json(record_type: type[BaseModel], name: str) -> bool:
    field = record_type.model_fields.get(name)
    return field is not None and any(isinstance(m, StoredAsJson) for m in field.metadata)


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def attribute(value: Any) -> Any:
    """A Python value as boto3's DynamoDB serializer takes it (floats as Decimal, NaN and infinity dropped)."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int, Decimal)):
        return value
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, dict):
        # Left out, not null: a map of floats (metrics) must read back as one.
        return {str(k): attribute(v) for k, v in value.items() if not _non_finite(v)}
    if isinstance(value, (list, tuple)):
        return [attribute(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {attribute(v) for v in value}
    return attribute(jsonable(value))


def attributes(record_type: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """Field values of `record_type` as item attributes, each validated against its field's type."""
    unknown = sorted(set(values) - set(record_type.model_fields))
    if unknown:
        raise KeyError(f"{record_type.__name__} has no field(s) {', '.join(unknown)}")
    result = {}
    for name, value in values.items():
        adapter = _adapter(record_type, name)
        value = adapter.dump_python(adapter.validate_python(value), mode="python", exclude_none=True)
        if _as_json(record_type, name) and value is not None:
            result[name] = json.dumps(jsonable(value), sort_keys=True, allow_nan=False)
        else:
            result[name] = attribute(value)
    return result


@cache
def _adapter(record_type: type[BaseModel], name: str) -> TypeAdapter[Any]:
    return TypeAdapter(record_type.model_fields[name].annotation or Any)


def to_item(record: BaseModel, **keys: str) -> dict[str, Any]:
    """The item of `record` under `keys` (pk, sk); fields that are None or an empty set are left out."""
    values = record.model_dump(mode="python", exclude_none=True)
    # DynamoDB refuses an empty set; read back, the field takes its default.
    values = {name: value for name, value in values.items() if not (isinstance(value, (set, frozenset)) and not value)}
    return {**attributes(type(record), values), **keys}


def from_item(record_type: type[R], item: dict[str, Any]) -> R:
    """The record an item holds (its key attributes and unknown attributes are ignored)."""
    values = {}
    for name, value in item.items():
        if name in record_type.model_fields:
            values[name] = json.loads(value) if _as_json(record_type, name) and isinstance(value, str) else value
    return record_type.model_validate(values)


def query_all(table: "Table", what: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item a query (or, without KeyConditionExpression, a scan) returns, page after page."""
    read = table.query if "KeyConditionExpression" in kwargs else table.scan
    items: list[dict[str, Any]] = []
    with storage_errors(what):
        while True:
            page = read(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def transact(table: "Table", items: list[dict[str, Any]], what: str, conflict: str | None = None) -> None:
    """One TransactWriteItems: Conflict when a condition failed, RetryableError when DynamoDB was busy."""
    from botocore.exceptions import ClientError

    # The resource's client takes Python values (it serializes them), not the low-level shapes its stubs name.
    transaction: list[Any] = items
    with storage_errors(what):
        try:
            table.meta.client.transact_write_items(TransactItems=transaction)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = {r.get("Code") for r in error.response.get("CancellationReasons", [])}
            if "ConditionalCheckFailed" in reasons:
                raise Conflict(conflict or f"{what}: the record changed or already exists") from error
            if reasons & {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}:
                raise RetryableError(f"{what}: storage is busy, try again") from error
            raise
