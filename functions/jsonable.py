"""One conversion of Python and numpy values to what JSON (and DynamoDB) can hold."""

import math
from typing import Any


def jsonable(value: Any) -> Any:
    """`value` with numpy scalars and arrays as plain Python, sets as sorted lists, NaN and infinity as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return jsonable(value.tolist())
    raise TypeError(f"a {type(value).__name__} cannot be stored as JSON")
