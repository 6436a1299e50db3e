"""The one feature transformation, used by training, serving and monitoring (no skew).

`build_features` turns raw rows (a training file or predict instances) into the model input:
the spec's features, in order, numeric as float64 (NaN when missing or not finite) and
categorical as Python strings (MISSING when absent), whatever types the rows came with.
The canonical category string and MISSING are shared.instances' (the predict path's, which
imports no pandas), so both paths give a category the same string.
"""

import numpy as np
import pandas as pd

from functions.errors import DatasetInvalid, InvalidInput
from functions.shared import instances
from functions.shared.instances import MISSING
from functions.spec import ModelSpec


def category(value: object) -> str:
    """The canonical string of one categorical value (shared.instances.category; pandas' NA and NaT are MISSING).

    The same category must give the same string whether it comes from a CSV (where a column
    with gaps is read as float: 2.0) or a JSON request (2), so integral floats lose their '.0'.
    """
    if value is pd.NA or value is pd.NaT:
        return MISSING
    return instances.category(value)


def categories(series: pd.Series) -> pd.Series:
    """A column as canonical category strings (object dtype, so scikit-learn sees plain str).

    A column of text, integers or booleans (the usual ones) is converted without a Python call per
    value, with the same result as `category` on each.
    """
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind == "string" or (kind in {"integer", "boolean"} and series.dtype.kind in "iub"):
        text = series if kind == "string" else series.astype(str)
        return pd.Series(text.to_numpy(dtype=object, na_value=MISSING), index=series.index, dtype=object)
    return pd.Series([category(v) for v in series.to_numpy(dtype=object)], index=series.index, dtype=object)


def numbers(series: pd.Series) -> pd.Series:
    """A column as float64; what is missing, not a number or infinite becomes NaN."""
    if series.dtype == bool:
        series = series.astype(np.float64)
    values = pd.to_numeric(series, errors="coerce")
    values = pd.Series(np.asarray(values, dtype=np.float64), index=series.index)
    return values.where(np.isfinite(values))


def build_features(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The model input for `frame`: exactly spec.feature_names, in order, same index."""
    missing = [name for name in spec.feature_names if name not in frame.columns]
    if missing:
        raise InvalidInput(f"missing feature column(s): {', '.join(missing)}")
    columns = {}
    for feature in spec.features:
        column = frame[feature.name]
        columns[feature.name] = numbers(column) if feature.type == "numeric" else categories(column)
    return pd.DataFrame(columns, index=frame.index)[spec.feature_names]


def model_input(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Features (through the one transformation) and the target: what training and evaluation read."""
    if spec.target not in frame.columns:
        raise DatasetInvalid(f"the target column {spec.target!r} is missing")
    features = build_features(frame, spec)
    features[spec.target] = frame[spec.target].to_numpy()
    return features
