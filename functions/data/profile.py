"""The statistical profile of a dataset version.

The profile is stored with the dataset version; drift checks compare live traffic with it
(numeric columns: quantiles for Kolmogorov-Smirnov, decile bins for PSI; categorical
columns: value frequencies for PSI). Categorical values are profiled as the canonical
strings of the feature transformation, so profile and live features speak the same language.
"""


from typing import Any

import numpy as np
import pandas as pd

from functions.shared.reference import MAX_CATEGORY_CHARS, OTHER
from functions.shared.transform import MISSING, categories

TOP_CATEGORIES = 50


def profile_frame(frame: pd.DataFrame, quantile_points: int = 101) -> dict:
    """Rows and, per column: dtype, missing count, kind, and its distribution (see module doc)."""
    columns = {}
    for name in frame.columns:
        series = frame[name]
        missing = int(series.isna().sum())
        if _is_numeric(series):
            columns[str(name)] = {"dtype": str(series.dtype), "missing": missing, "kind": "numeric",
                                  **_numeric_profile(series, quantile_points)}
        else:
            columns[str(name)] = {"dtype": str(series.dtype), "missing": missing, "kind": "categorical",
                                  "frequencies": _frequencies(series)}
    return {"rows": int(len(frame)), "columns": columns}


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _numeric_profile(series: pd.Series, quantile_points: int) -> dict:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "quantiles": [], "bin_edges": [],
                "bin_fractions": []}
    with np.errstate(over="ignore", invalid="ignore"):  # mean/std of +-1e308 overflow: stored as null
        return _distribution(values, quantile_points)


def _quantiles(values: np.ndarray, points: int) -> np.ndarray:
    """Quantiles that stay finite and ordered even when max - min overflows (values near +-1.8e308)."""
    if np.isfinite(values.max() - values.min()):
        return np.quantile(values, np.linspace(0, 1, points))
    return np.quantile(values / 2, np.linspace(0, 1, points)) * 2


def _distribution(values: np.ndarray, quantile_points: int) -> dict:
    edges = _quantiles(values, 11)
    counts, _ = np.histogram(values, bins=edges)
    return {
        "mean": _num(values.mean()),
        "std": _num(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": _num(values.min()),
        "max": _num(values.max()),
        "quantiles": [_num(q) for q in _quantiles(values, quantile_points)],
        "bin_edges": [_num(e) for e in edges],
        "bin_fractions": [_num(c / values.size) for c in counts],
    }


def _frequencies(series: pd.Series) -> dict:
    # As text columns (Arrow-backed where pandas has them): cut and counted without a Python call per value.
    text = series.fillna(MISSING) if isinstance(series.dtype, pd.StringDtype) else categories(series).astype("str")
    values = text.str.slice(0, MAX_CATEGORY_CHARS)
    fractions = values.value_counts(normalize=True, sort=True)
    top = fractions.iloc[:TOP_CATEGORIES]
    result = {str(k): _num(v) for k, v in top.items()}
    rest = float(fractions.iloc[TOP_CATEGORIES:].sum())
    if rest > 0:
        result[OTHER] = _num(rest)
    return result


def _num(value: Any) -> float | None:
    value = float(value)
    return round(value, 10) if np.isfinite(value) else None
