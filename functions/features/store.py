"""The online feature store's port: the latest feature values per entity of a model, expiring by TTL.

Entities are keyed by the canonical string of their id (`entity_key`). features.dynamo
implements it on DynamoDB (reads in batches of 100 keys, as Feast's DynamoDB store does).
"""

from collections.abc import Iterable
from typing import Any, Protocol

import pandas as pd

from functions.features.keys import MAX_ENTITY_BYTES, entity_key, row_json

# A DynamoDB item holds 400 KB: one entity's features (as UTF-8 JSON) leave room for the rest of its item.
MAX_ONLINE_ROW_BYTES = 350_000


def row_bytes(row: dict[str, Any]) -> int:
    return len(row_json(row).encode())


def entity_keys(series: pd.Series) -> pd.Series:
    """`entity_key` of each value (None where it cannot be a key), as an object column; text and integer ids,
    the usual ones, without a Python call per value."""
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind == "string" or (kind == "integer" and pd.api.types.is_integer_dtype(series.dtype)):
        text = series if kind == "string" else series.astype(str)
        # A character takes at most 4 UTF-8 bytes: only ids of more than MAX_ENTITY_BYTES / 4 characters are measured.
        lengths = text.str.len()
        usable = text.notna() & (lengths > 0)
        long = usable & (lengths > MAX_ENTITY_BYTES // 4)
        if long.any():
            usable[long] = [len(str(value).encode()) <= MAX_ENTITY_BYTES for value in text[long]]
        return text.astype(object).where(usable, None)
    return pd.Series([entity_key(value) for value in series.tolist()], index=series.index, dtype=object)


class OnlineStore(Protocol):
    def put_latest(self, model: str, rows: dict[str, dict[str, Any]], *, dataset_id: str, ttl_days: int) -> int:
        """Write each entity's features (entity key -> feature values); returns how many were written."""
        ...

    def get_latest(self, model: str, entity: Any) -> dict[str, Any] | None:
        """The entity's features, or None when unknown or expired (InvalidInput for an unusable id)."""
        ...

    def get_many(self, model: str, entities: Iterable[Any]) -> dict[str, dict[str, Any]]:
        """Features of each known, unexpired entity (missing entities are absent from the result)."""
        ...


def latest_rows(frame: pd.DataFrame, entity_column: str, feature_names: list[str]) -> dict[str, dict[str, Any]]:
    """The last row of each entity in `frame` (file order: a later row of the same entity is newer)."""
    latest: dict[str, dict[str, Any]] = {}
    for entity, row in zip(frame[entity_column].tolist(), frame[feature_names].to_dict("records"), strict=True):
        key = entity_key(entity)
        if key is not None:
            latest[key] = row
    return latest
