"""Predict instances (JSON objects) straight to the model's typed input arrays, without pandas.

The same values as the training transformation (shared.transform.build_features) gives for the
same rows, one (n, 1) array per signature feature: numbers as float (NaN when missing, not a
number or not finite; `dtype` is the model input's, float64 for models converted since double
precision), categories as their canonical strings (shared.transform.category: None is MISSING, an
integral float loses its '.0'). tests/shared/test_instances.py feeds the same rows through both.
The common case (numbers that are numbers, categories that are strings, as the predict API's
signature check guarantees) costs one numpy call per feature.
"""

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from functions.spec import Feature

# A number written as text, as pandas.to_numeric reads one: ASCII digits and whitespace only (Python's float()
# also takes '1_000', other scripts' digits and Unicode spaces, which pandas, hence training, does not).
NUMERIC_TEXT = re.compile(r"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)\s*",
                          re.ASCII | re.IGNORECASE)  # ASCII: \s and \d are [ \t\n\r\f\v] and [0-9]
MISSING = "__missing__"  # a categorical value that is absent (training's and serving's: shared.transform uses it)


def feature_arrays(instances: Sequence[Mapping[str, Any]], features: Sequence[Feature],
                   numeric_dtypes: Sequence[Any] | None = None) -> list[np.ndarray]:
    """One (len(instances), 1) array per feature, in order; `numeric_dtypes[i]` for a numeric feature i."""
    arrays = []
    for index, feature in enumerate(features):
        values = [instance.get(feature.name) for instance in instances]
        if feature.type == "numeric":
            dtype = numeric_dtypes[index] if numeric_dtypes is not None else np.float64
            arrays.append(numbers(values, dtype).reshape(-1, 1))
        else:
            arrays.append(categories(values).reshape(-1, 1))
    return arrays


@dataclass(frozen=True)
class Coded:
    """A column held as codes into its distinct values (a Parquet dictionary column): code -1 is a missing value.

    Checking and converting the few distinct values, then taking them by code, costs a numpy gather
    where a column of strings costs a Python object per row.
    """

    codes: np.ndarray  # integers, one per row
    values: np.ndarray  # object array of the distinct values

    def __len__(self) -> int:
        return len(self.codes)

    def value(self, row: int) -> Any:
        code = int(self.codes[row])
        return None if code < 0 else self.values[code]

    def decoded(self) -> np.ndarray:
        """The column as an object array of its values (None where missing)."""
        values = np.append(np.asarray(self.values, dtype=object), np.array([None], dtype=object))
        return values[np.asarray(self.codes)]  # code -1: the last, None


def column_arrays(columns: Mapping[str, Any], features: Sequence[Feature],
                  numeric_dtypes: Sequence[Any] | None = None) -> list[np.ndarray]:
    """The same arrays as `feature_arrays` from whole columns (1-D numpy arrays or array-likes, one per feature).

    A numeric column of numbers and a categorical column of strings (what the predict API's column
    check lets through) are converted without a Python call per value.
    """
    arrays = []
    for index, feature in enumerate(features):
        given = columns[feature.name]
        if isinstance(given, Coded) and feature.type != "numeric":
            canonical = np.append(categories(given.values.tolist()), np.array([MISSING], dtype=object))
            arrays.append(canonical[given.codes].reshape(-1, 1))  # code -1: the last, MISSING
            continue
        column = given.decoded() if isinstance(given, Coded) else np.asarray(given)
        if feature.type == "numeric":
            dtype = numeric_dtypes[index] if numeric_dtypes is not None else np.float64
            if column.dtype.kind in "iuf":
                values = column.astype(np.float64, copy=False)
                finite = np.isfinite(values)
                if not finite.all():
                    values = np.where(finite, values, np.nan)  # a copy: the caller's column stays as it was
                arrays.append(values.astype(dtype, copy=False).reshape(-1, 1))
            else:
                arrays.append(numbers(column.tolist(), dtype).reshape(-1, 1))
        elif column.dtype.kind == "U":
            arrays.append(column.astype(object).reshape(-1, 1))
        elif column.dtype == object and set(map(type, column)) <= {str}:  # text already: canonical as it is
            arrays.append(column.reshape(-1, 1))
        else:
            arrays.append(categories(column.tolist()).reshape(-1, 1))
    return arrays


def numbers(values: list[Any], dtype: Any = np.float64) -> np.ndarray:
    """`values` as floats; what is missing, not a number or not finite becomes NaN."""
    try:
        if any(isinstance(value, str) for value in values):
            raise ValueError("text is read as pandas reads it")  # numpy would read it as float() does
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        array = np.array([_number(value) for value in values], dtype=np.float64)
    if not np.isfinite(array).all():
        array[~np.isfinite(array)] = np.nan
    return array.astype(dtype, copy=False)


def _number(value: Any) -> float:
    if isinstance(value, str):  # as pandas.to_numeric reads a numeric string
        return float(value) if NUMERIC_TEXT.fullmatch(value) else math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def categories(values: list[Any]) -> np.ndarray:
    """`values` as canonical category strings (an object array, as ONNX string inputs take)."""
    array = np.empty(len(values), dtype=object)
    array[:] = [value if type(value) is str else category(value) for value in values]
    return array


def category(value: object) -> str:
    """The canonical string of one categorical value, JSON's or numpy's (shared.transform.category builds on it)."""
    if value is None:
        return MISSING
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return MISSING
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return str(float(value))
    if isinstance(value, (np.integer, np.bool_)):
        return str(value.item())
    return str(value)
