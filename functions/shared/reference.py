"""A model version's reference profile: what its drift checks compare live traffic with.

Built once at training time (Evaluate) and stored as one .npz file among the run's artifacts, with
its sha256; a drift check loads it, never recomputes it. Per column of the signature:

- numeric: a sorted sample of the training column's finite values: the whole column up to
  MAX_SAMPLE rows (100,000), a uniform sample without replacement (seeded) beyond it; the
  column's row, missing and sample counts are recorded;
- categorical: the count of each canonical category string (cut to MAX_CATEGORY_CHARS), the most
  frequent MAX_CATEGORIES of them, the rest counted together as OTHER.

The model's output is profiled the same way on the holdout (what live traffic is: rows the model did
not learn from): the positive class's probability of a binary classifier and a regressor's values as
numeric, a multi-class classifier's predicted labels as categorical.

The file holds arrays only (loaded with allow_pickle=False): no Python object is ever unpickled.
"""

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from functions.shared.transform import categories

FORMAT = 1
MAX_SAMPLE = 100_000
MAX_CATEGORIES = 1_000
MAX_CATEGORY_CHARS = 200  # hostile megabyte strings must not bloat a profile (the dataset's too)
OTHER = "__other__"
OUTPUT = "__output__"  # the name the model's output goes by in a report
FILE_NAME = "reference.npz"


@dataclass(frozen=True)
class NumericReference:
    """A column's sorted reference sample, and how many rows it came from."""

    sample: np.ndarray  # float64, sorted, finite
    rows: int  # rows of the training column
    missing: int  # of them: missing or not finite (not in the sample)
    kind: Literal["numeric"] = "numeric"

    @property
    def sampled(self) -> bool:
        return self.sample.size < self.rows - self.missing


@dataclass(frozen=True)
class CategoricalReference:
    """A column's category counts (in the order of `categories`)."""

    categories: np.ndarray  # str
    counts: np.ndarray  # int64, > 0
    rows: int
    kind: Literal["categorical"] = "categorical"


Column = NumericReference | CategoricalReference


@dataclass(frozen=True)
class Reference:
    columns: dict[str, Column]
    output: Column | None = None
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def numeric_reference(values: Any, *, seed: int, max_sample: int = MAX_SAMPLE) -> NumericReference:
    """The sorted sample of a column's finite values (all of them up to `max_sample`)."""
    column = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    finite = column[np.isfinite(column)]
    if finite.size > max_sample:
        finite = finite[np.random.default_rng(seed).choice(finite.size, size=max_sample, replace=False)]
    missing = int(column.size - np.isfinite(column).sum())
    return NumericReference(sample=np.sort(finite), rows=int(column.size), missing=missing)


def category_strings(values: Any) -> pd.Series:
    """Canonical category strings as the reference stores them (the transformation's, cut to MAX_CATEGORY_CHARS)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    return categories(series.reset_index(drop=True)).astype("str").str.slice(0, MAX_CATEGORY_CHARS)


def categorical_reference(values: Any, *, max_categories: int = MAX_CATEGORIES) -> CategoricalReference:
    """The counts of a column's categories, most frequent first; past `max_categories`, the rest as OTHER."""
    text = category_strings(values)
    counts = text.value_counts(sort=True)
    kept = counts.iloc[:max_categories]
    names, numbers = [str(k) for k in kept.index], kept.to_numpy(dtype=np.int64)
    rest = int(counts.iloc[max_categories:].sum())
    if rest:
        if OTHER in names:
            numbers[names.index(OTHER)] += rest
        else:
            names, numbers = names + [OTHER], np.append(numbers, rest)
    return CategoricalReference(categories=np.asarray(names, dtype=str), counts=np.asarray(numbers, dtype=np.int64),
                                rows=int(len(text)))


def build_reference(features: pd.DataFrame, kinds: dict[str, str], *, output: Any = None,
                    output_kind: str | None = None, seed: int = 0, max_sample: int = MAX_SAMPLE) -> Reference:
    """The reference of `features` (columns named in `kinds`: "numeric" or "categorical") and of `output`."""
    columns: dict[str, Column] = {}
    for index, (name, kind) in enumerate(kinds.items()):
        columns[name] = (numeric_reference(features[name], seed=seed + index, max_sample=max_sample)
                         if kind == "numeric" else categorical_reference(features[name]))
    out: Column | None = None
    if output is not None:
        out = (numeric_reference(output, seed=seed - 1, max_sample=max_sample) if output_kind == "numeric"
               else categorical_reference(output))
    return Reference(columns=columns, output=out, seed=seed, meta={"max_sample": max_sample})


def _column_meta(column: Column) -> dict[str, Any]:
    if isinstance(column, NumericReference):
        return {"kind": "numeric", "rows": column.rows, "missing": column.missing, "sample": int(column.sample.size)}
    return {"kind": "categorical", "rows": column.rows, "categories": int(column.categories.size)}


def _put(arrays: dict[str, np.ndarray], prefix: str, column: Column) -> None:
    if isinstance(column, NumericReference):
        arrays[f"{prefix}.sample"] = column.sample
    else:
        arrays[f"{prefix}.categories"] = column.categories
        arrays[f"{prefix}.counts"] = column.counts


def to_bytes(reference: Reference) -> bytes:
    """The reference as an .npz file: a JSON header (names, kinds, counts) and one array per column part."""
    names = list(reference.columns)
    meta = {"format": FORMAT, "seed": reference.seed, **reference.meta, "names": names,
            "columns": [_column_meta(reference.columns[n]) for n in names],
            "output": None if reference.output is None else _column_meta(reference.output)}
    arrays: dict[str, np.ndarray] = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for index, name in enumerate(names):
        _put(arrays, f"c{index}", reference.columns[name])
    if reference.output is not None:
        _put(arrays, "output", reference.output)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _column(files: Any, prefix: str, meta: dict[str, Any]) -> Column:
    if meta["kind"] == "numeric":
        return NumericReference(sample=np.asarray(files[f"{prefix}.sample"], dtype=np.float64), rows=int(meta["rows"]),
                                missing=int(meta["missing"]))
    return CategoricalReference(categories=np.asarray(files[f"{prefix}.categories"], dtype=str),
                                counts=np.asarray(files[f"{prefix}.counts"], dtype=np.int64), rows=int(meta["rows"]))


def from_bytes(data: bytes) -> Reference:
    """A reference written by `to_bytes` (ValueError when it is not one)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as files:
            meta = json.loads(files["meta"].tobytes().decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"reference format {meta.get('format')!r} is not {FORMAT}")
            columns = {name: _column(files, f"c{index}", column)
                       for index, (name, column) in enumerate(zip(meta["names"], meta["columns"], strict=True))}
            output = None if meta.get("output") is None else _column(files, "output", meta["output"])
    except (OSError, EOFError, KeyError, TypeError, AttributeError, UnicodeDecodeError, zipfile.BadZipFile,
            json.JSONDecodeError) as error:
        raise ValueError(f"not a reference profile ({type(error).__name__})") from error
    extra = {k: v for k, v in meta.items() if k not in {"format", "seed", "names", "columns", "output"}}
    return Reference(columns=columns, output=output, seed=int(meta.get("seed", 0)), meta=extra)


def output_values(task: str, predictions: Any, probabilities: Any, classes: list[Any] | None) -> tuple[Any, str]:
    """The model output a reference profiles, and its kind: a binary classifier's positive-class probability
    (the last class's column), a multi-class classifier's labels (as categories), a regressor's values."""
    if task == "classification":
        if probabilities is not None and classes is not None and len(classes) == 2:
            proba = np.asarray(probabilities, dtype=np.float64)
            if proba.ndim == 2 and proba.shape[1] == 2:
                return proba[:, 1], "numeric"
        return list(predictions), "categorical"
    return np.asarray(predictions, dtype=np.float64), "numeric"
