"""How the online store keys and stores an entity's features, without pandas (the predict function reads the
store and never imports pandas): the canonical string of an entity id, and a row as compact JSON."""

import json
import math
import sys
from typing import Any

from functions.jsonable import jsonable

MAX_ENTITY_BYTES = 1024  # partition keys may hold 2048 bytes; leave room for the model name


def row_json(row: dict[str, Any]) -> str:
    """An entity's features as the online store keeps them: compact JSON, text as UTF-8 (not \\u escapes)."""
    return json.dumps(jsonable(row), ensure_ascii=False, separators=(",", ":"))


def entity_key(value: Any) -> str | None:
    """The canonical string of an entity id, or None when it cannot be a key (missing, too long)."""
    pandas = sys.modules.get("pandas")  # pd.NA exists only where pandas was imported
    if value is None or (pandas is not None and value is pandas.NA) or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if hasattr(value, "item"):  # a numpy scalar: its Python value's text
        value = value.item()
    text = str(value)
    if not text or len(text.encode()) > MAX_ENTITY_BYTES:
        return None
    return text
