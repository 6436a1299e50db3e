"""Drift of live inputs against the training profile: pure functions, no AWS.

Numeric features: the Population Stability Index over the profile's decile bins, and a
two-sample Kolmogorov-Smirnov test against the profile's quantiles (the reference sample).
Categorical features: PSI over the profile's category frequencies. Live values go through the
same canonical forms as training (functions.shared.transform), so "2" and 2.0 mean the same.
"""

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from functions.data.profile import MAX_CATEGORY_CHARS, OTHER
from functions.shared.transform import categories, numbers
from functions.spec import Feature

# A bin that is empty on one side would make PSI infinite; a small floor keeps it finite and
# still large (the usual convention).
EPSILON = 1e-4
MIN_SAMPLES = 30  # below this, PSI and KS are noise: report the numbers, decide nothing


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.clip(np.asarray(expected, dtype=np.float64), EPSILON, None)
    actual = np.clip(np.asarray(actual, dtype=np.float64), EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def bin_fractions(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Fractions of `values` in the bins of `edges`, the outer bins open-ended.

    Inner bins are [e_i, e_i+1) and the last one closed, like numpy.histogram (which built the
    profile), so the training data itself gets back exactly its profile fractions; values
    outside the training range fall in the outer bins instead of being dropped.
    """
    bounds = np.asarray(edges, dtype=np.float64)
    n_bins = len(bounds) - 1
    if n_bins < 1 or len(values) == 0:
        return np.zeros(max(n_bins, 0))
    index = np.clip(np.searchsorted(bounds, values, side="right") - 1, 0, n_bins - 1)
    return np.bincount(index, minlength=n_bins) / len(values)


def psi(reference_edges: Sequence[float], reference_fractions: Sequence[float], values: Iterable) -> float | None:
    """PSI of numeric `values` against the profile's bins; None when either side has nothing."""
    return _numeric_psi(reference_edges, reference_fractions, _finite(values))


def _numeric_psi(reference_edges: Sequence[float], reference_fractions: Sequence[float],
                 live: np.ndarray) -> float | None:
    if len(reference_edges) < 2 or len(reference_fractions) != len(reference_edges) - 1 or live.size == 0:
        return None
    return _psi(np.asarray(reference_fractions, dtype=np.float64), bin_fractions(reference_edges, live))


def categorical_psi(reference_frequencies: Mapping[str, float], values: Iterable) -> float | None:
    """PSI of categorical `values` against the profile's frequencies.

    Categories the profile does not list count as its "__other__" bucket: a category never
    seen in training therefore shows up as drift.
    """
    live = [c[:MAX_CATEGORY_CHARS] for c in categories(pd.Series(list(values), dtype=object))]
    if not reference_frequencies or not live:
        return None
    known = set(reference_frequencies)
    counts: dict[str, int] = {}
    for value in live:
        bucket = value if value in known else OTHER
        counts[bucket] = counts.get(bucket, 0) + 1
    buckets = sorted(known | set(counts))
    expected = np.array([float(reference_frequencies.get(b) or 0.0) for b in buckets])
    actual = np.array([counts.get(b, 0) / len(live) for b in buckets])
    return _psi(expected, actual)


def ks(reference_quantiles: Sequence[float], values: Iterable) -> tuple[float | None, float | None]:
    """Two-sample KS statistic and p-value of `values` against the profile's quantiles."""
    return _ks(reference_quantiles, _finite(values))


def _ks(reference_quantiles: Sequence[float], live: np.ndarray) -> tuple[float | None, float | None]:
    reference = np.asarray([q for q in reference_quantiles if q is not None], dtype=np.float64)
    if live.size == 0 or reference.size == 0:
        return None, None
    result = stats.ks_2samp(live, reference)
    return float(result.statistic), float(result.pvalue)


def _finite(values: Iterable) -> np.ndarray:
    """The values as floats, without what is missing, not a number or infinite (as training)."""
    series = numbers(pd.Series(list(values), dtype=object))
    return series.dropna().to_numpy(dtype=np.float64)


def feature_drift(profile_column: Mapping, values: Sequence, *, psi_threshold: float, ks_pvalue: float,
                  min_samples: int = MIN_SAMPLES) -> dict:
    """The drift of one feature: {"kind","samples","psi","ks_stat","ks_pvalue","drifted"} (+ "note").

    The profile's kind decides the test: a column profiled as numbers is compared as numbers.
    """
    kind = profile_column.get("kind")
    result: dict = {"kind": kind, "samples": len(values), "psi": None, "ks_stat": None, "ks_pvalue": None,
                    "drifted": False}
    if kind == "numeric":
        live = _finite(values)
        result["samples"] = int(live.size)
        result["psi"] = _numeric_psi(profile_column.get("bin_edges") or [], profile_column.get("bin_fractions") or [],
                                     live)
        result["ks_stat"], result["ks_pvalue"] = _ks(profile_column.get("quantiles") or [], live)
    elif kind == "categorical":
        result["psi"] = categorical_psi(profile_column.get("frequencies") or {}, values)
    else:
        result["note"] = "the training profile has no distribution for this feature"
        return _rounded(result)
    if result["psi"] is None and result["ks_pvalue"] is None:
        result["note"] = "no comparable values (none live, or none in the training profile)"
    elif result["samples"] < min_samples:
        result["note"] = f"too few samples to decide ({result['samples']} < {min_samples})"
    else:
        psi_drift = result["psi"] is not None and result["psi"] > psi_threshold
        ks_drift = result["ks_pvalue"] is not None and result["ks_pvalue"] < ks_pvalue
        result["drifted"] = bool(psi_drift or ks_drift)
    return _rounded(result)


def _rounded(result: dict) -> dict:
    for name in ("psi", "ks_stat", "ks_pvalue"):
        value = result.get(name)
        if value is not None:
            result[name] = round(value, 6) if math.isfinite(value) else None
    return result


def drift_report(*, model: str, version: int | None, signature: Sequence[Feature], profile: Mapping,
                 instances: Sequence[Mapping], window_hours: int, psi_threshold: float, ks_pvalue: float,
                 min_samples: int = MIN_SAMPLES) -> dict:
    """The drift report of a model: every signature feature of `instances` against `profile`.

    {"model","version","window_hours","samples","drifted","features": {name: {...}}, "thresholds", "note"?}
    """
    report: dict = {
        "model": model,
        "version": version,
        "window_hours": window_hours,
        "samples": len(instances),
        "drifted": False,
        "thresholds": {"psi": psi_threshold, "ks_pvalue": ks_pvalue, "min_samples": min_samples},
        "features": {},
    }
    if not instances:
        report["note"] = f"no captured requests in the last {window_hours} hours: nothing to compare"
        return report
    columns = profile.get("columns") or {}
    for feature in signature:
        name = feature.name
        values = [instance.get(name) for instance in instances]
        column = columns.get(name)
        if column is None:
            report["features"][name] = {"kind": feature.type, "samples": len(values), "psi": None,
                                        "ks_stat": None, "ks_pvalue": None, "drifted": False,
                                        "note": "the training profile has no such column"}
            continue
        report["features"][name] = feature_drift(column, values, psi_threshold=psi_threshold, ks_pvalue=ks_pvalue,
                                                 min_samples=min_samples)
    report["drifted"] = any(f["drifted"] for f in report["features"].values())
    if len(instances) < min_samples:
        report["note"] = f"only {len(instances)} captured rows (< {min_samples}): drift is not decided"
    return report


def max_psi(report: Mapping) -> float:
    """The largest PSI of the report's features (0 when there is none): the DriftScore metric."""
    scores = [f["psi"] for f in (report.get("features") or {}).values() if f.get("psi") is not None]
    return max(scores, default=0.0)
