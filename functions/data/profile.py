"""Reading an uploaded dataset, and its statistical profile.

The profile is stored with the dataset version; drift checks compare live traffic with it
(numeric columns: quantiles for Kolmogorov-Smirnov, decile bins for PSI; categorical
columns: value frequencies for PSI). Categorical values are profiled as the canonical
strings of the feature transformation, so profile and live features speak the same language.
"""

import csv
import io
import re
import warnings
from collections import Counter

import numpy as np
import pandas as pd

from functions.errors import DatasetInvalid, shown
from functions.features.transform import MISSING, categories

TOP_CATEGORIES = 50
OTHER = "__other__"
MAX_CATEGORY_CHARS = 200  # hostile values (megabyte strings) must not bloat the profile
# Checked before the table is parsed: a file of a million columns would take the function's whole
# time to parse and profile. A profile of even 3,000 of the narrowest columns does not fit its item.
MAX_COLUMNS = 5_000
MAX_CELLS = 50_000_000  # rows x columns of a Parquet file: about what a 256 MB CSV holds


def read_dataset(data: bytes, key: str) -> pd.DataFrame:
    """The rows of an uploaded file (.csv or .parquet, by its key); DatasetInvalid when unusable."""
    name = key.rsplit("/", 1)[-1]
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in {"csv", "parquet"}:
        raise DatasetInvalid(f"the dataset {name!r} is neither a .csv nor a .parquet file")
    if not data or data.isspace():  # not data.strip(): that copies the whole file
        raise DatasetInvalid(f"the dataset {name!r} is empty: the file has no content")
    if suffix == "csv":
        frame = _read_csv(data, name)
    else:
        try:
            import pyarrow.parquet as pq

            metadata = pq.read_metadata(io.BytesIO(data))
        except Exception as error:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise DatasetInvalid(f"the dataset {name!r} is not a readable Parquet file") from error
        _check_width(metadata.num_columns, name)
        # The size limit is on the compressed file: a few MB of Parquet can hold billions of values.
        if metadata.num_rows * metadata.num_columns > MAX_CELLS:
            raise DatasetInvalid(f"the dataset {name!r} holds {metadata.num_rows} rows of {metadata.num_columns} "
                                 f"columns; at most {MAX_CELLS} values are supported")
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as error:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise DatasetInvalid(f"the dataset {name!r} is not a readable Parquet file") from error
    frame.columns = [str(c) for c in frame.columns]
    if len(frame.columns) == 0:
        raise DatasetInvalid(f"the dataset {name!r} is empty: it has no columns")
    if len(frame) == 0:
        raise DatasetInvalid(f"the dataset {name!r} is empty: it has a header but no rows")
    return frame


def _check_width(columns: int, name: str) -> None:
    if columns > MAX_COLUMNS:
        raise DatasetInvalid(f"the dataset {name!r} has {columns} columns; at most {MAX_COLUMNS} are supported")


def _check_header(data: bytes, name: str) -> None:
    """Width and duplicate names, from the header record alone (pandas would rename duplicates x.1)."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    try:
        header = next((row for row in csv.reader(text) if row), [])
    except UnicodeDecodeError as error:
        raise DatasetInvalid(f"the dataset {name!r} is not a UTF-8 text CSV file") from error
    except csv.Error as error:
        raise DatasetInvalid(f"the dataset {name!r} does not start with a readable CSV header") from error
    _check_width(len(header), name)
    repeated = [n for n, count in Counter(n for n in header if n.strip()).items() if count > 1]
    if repeated:
        names = ", ".join(shown(n, 40) for n in repeated[:5])
        raise DatasetInvalid(f"the dataset {name!r} has duplicate column names: {names}")


def _read_csv(data: bytes, name: str) -> pd.DataFrame:
    _check_header(data, name)
    try:
        with warnings.catch_warnings():
            # index_col=False: rows with a trailing comma must not shift every value one column left
            # (pandas would take the first column as the index); more fields than names is an error.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(io.BytesIO(data), encoding="utf-8", low_memory=False, index_col=False)
    except pd.errors.EmptyDataError as error:
        raise DatasetInvalid(f"the dataset {name!r} is empty: the file has no header or rows") from error
    except UnicodeDecodeError as error:
        raise DatasetInvalid(f"the dataset {name!r} is not a UTF-8 text CSV file") from error
    except pd.errors.ParserWarning as error:
        raise DatasetInvalid(
            f"the dataset {name!r} has rows with more fields than its header: check for unquoted commas"
        ) from error
    except (pd.errors.ParserError, ValueError) as error:
        # Name the line when the parser gives it; never pass the parser's own text along.
        line = re.search(r"(?:line|row) (\d+)", str(error))
        where = f" near line {line.group(1)}" if line else ""
        raise DatasetInvalid(
            f"the dataset {name!r} is not a readable CSV file{where}: "
            "check for unbalanced quotes or rows with the wrong number of fields"
        ) from error


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
    values = categories(series).map(lambda v: v[:MAX_CATEGORY_CHARS])
    fractions = values.value_counts(normalize=True, sort=True)
    top = fractions.iloc[:TOP_CATEGORIES]
    result = {str(k): _num(v) for k, v in top.items()}
    rest = float(fractions.iloc[TOP_CATEGORIES:].sum())
    if rest > 0:
        result[OTHER] = _num(rest)
    return result


def _num(value) -> float | None:
    value = float(value)
    return round(value, 10) if np.isfinite(value) else None


__all__ = ["MISSING", "OTHER", "profile_frame", "read_dataset"]
