"""Drift of a live window against a version's reference profile: pure functions, no AWS.

Statistics, chosen per column type and sample size (Evidently's defaults; a spec's `monitoring:`
section overrides them, see functions.spec.MonitoringSpec):

- when either side is small (at most `small_sample` = 1,000 values): a p-value test, the
  two-sample Kolmogorov-Smirnov test for numeric columns, Pearson's chi-squared test of the live
  category counts against the reference frequencies for categorical ones;
- above it, where p-values flag shifts too small to matter: a distance with an effect-size
  threshold, the Wasserstein distance divided by the reference sample's standard deviation
  (threshold 0.1) for numeric columns, the Jensen-Shannon distance (natural log, threshold 0.1)
  of the category frequencies for categorical ones;
- the Population Stability Index is reported for every column (reference deciles or categories).

Each statistic equals scipy's (ks_2samp, wasserstein_distance, chisquare, jensenshannon) on the live
values and the stored reference sample, computed without re-sorting the reference: live values are
sorted once and placed in it with searchsorted, categories are encoded once (pandas' hash table)
and counted with bincount.

Decisions. A p-value test flags a column when p < pvalue / m, m the number of columns the check
decides with a p-value test (Bonferroni): the chance that any column of unshifted traffic is
flagged stays below `pvalue` (0.01 by default), whatever the number of columns. A distance flags a
column when it reaches its threshold. Below `min_samples` (30) live values nothing is decided.
The report says, per column, what it measured and why it decided; `drifted` is true when any
column, or the model's output, drifted (what the alarm and the retraining watch); `dataset_drift`
when the share of drifted feature columns reaches `drift_share` (0.5), as Evidently defines it.
Numbers are stored at full precision; what is not a finite number is stored as null with a note.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import rel_entr

from functions.shared.reference import (
    OTHER,
    OUTPUT,
    CategoricalReference,
    Column,
    NumericReference,
    Reference,
    category_strings,
)
from functions.shared.transform import numbers
from functions.spec import DEFAULT_DRIFT_PVALUE, DEFAULT_PSI_THRESHOLD, Feature, MonitoringSpec

try:  # scipy's own exact two-sample KS distribution (what ks_2samp calls), without re-sorting the samples
    from scipy.stats._stats_py import _attempt_exact_2kssamp
except ImportError:  # pragma: no cover - a scipy without it: ks_2samp itself answers
    _attempt_exact_2kssamp = None

EPSILON = 1e-4  # PSI's floor for an empty bin (the usual convention): finite, still large
MAX_EXACT_KS = 10_000  # scipy's ks_2samp: exact p-values up to this many values a side, asymptotic beyond
WASSERSTEIN_STD_FLOOR = 1e-3  # a constant reference column (std 0) scales by this, as Evidently does
PSI_BINS = 10


# --- statistics (each equal to scipy's on the same inputs) ---------------------------------------------------


def ks(reference: np.ndarray, live: np.ndarray) -> tuple[float, float]:
    """scipy.stats.ks_2samp(live, reference) (two-sided, method auto): statistic and p-value.

    `reference` is sorted. The supremum of F_live - F_ref is reached at a live value and that of
    F_ref - F_live just before one, so only the live values are looked up: O(m log n).
    """
    return _ks_sorted(reference, np.sort(live))


def _ks_sorted(reference: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    m, n = x.size, reference.size
    if m == 0 or n == 0:
        raise ValueError("both samples need a value")
    above = np.searchsorted(x, x, side="right") / m - np.searchsorted(reference, x, side="right") / n
    below = np.searchsorted(x, x, side="left") / m - np.searchsorted(reference, x, side="left") / n
    max_s, min_s = float(above.max()), float(np.clip(-below.min(), 0, 1))
    d = min_s if min_s > max_s else max_s
    if max(m, n) <= MAX_EXACT_KS and _attempt_exact_2kssamp is not None:
        success, d_exact, prob = _attempt_exact_2kssamp(m, n, math.gcd(m, n), d, "two-sided")
        if success:
            return float(d_exact), float(np.clip(prob, 0, 1))
    if _attempt_exact_2kssamp is None and max(m, n) <= MAX_EXACT_KS:  # pragma: no cover
        result = stats.ks_2samp(x, reference)
        return float(result.statistic), float(result.pvalue)
    big, small = sorted([float(m), float(n)], reverse=True)
    en = big * small / (big + small)
    return d, float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))


def wasserstein(reference: np.ndarray, live: np.ndarray) -> float:
    """scipy.stats.wasserstein_distance(live, reference), `reference` sorted: the live values are merged into it.

    Between two successive merged values the CDFs are constant; where values tie the step is 0, so
    cumulative counts stand for scipy's searchsorted(..., 'right') on every term that counts.
    """
    return _wasserstein_sorted(reference, np.sort(live))


def _wasserstein_sorted(reference: np.ndarray, x: np.ndarray) -> float:
    m, n = x.size, reference.size
    if m == 0 or n == 0:
        raise ValueError("both samples need a value")
    # The smaller side is placed in the larger with searchsorted (live values before equal reference ones).
    is_live = np.zeros(m + n, dtype=bool)
    merged = np.empty(m + n, dtype=np.float64)
    if m <= n:
        at = np.searchsorted(reference, x, side="left") + np.arange(m)
        is_live[at] = True
        merged[at] = x
        merged[~is_live] = reference
    else:
        at = np.searchsorted(x, reference, side="right") + np.arange(n)
        is_live[:] = True
        is_live[at] = False
        merged[at] = reference
        merged[is_live] = x
    # F_live - F_ref after the k-th merged value: live/m - (k - live)/n = live (1/m + 1/n) - k/n, in place.
    gap = np.cumsum(is_live[:-1], dtype=np.float64)
    gap *= 1.0 / m + 1.0 / n
    gap -= np.arange(1, m + n, dtype=np.float64) / n
    np.abs(gap, out=gap)
    return float(np.vecdot(gap, np.diff(merged)))


def chisquare(reference_counts: np.ndarray, live_counts: np.ndarray) -> tuple[float, float]:
    """scipy.stats.chisquare(live_counts, reference_counts * m / n): statistic and p-value (Evidently's test).

    A category the reference never saw (expected 0) makes the statistic infinite and p 0, as in scipy.
    """
    m, n = float(live_counts.sum()), float(reference_counts.sum())
    expected = reference_counts * (m / n)
    observed = live_counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (observed - expected) ** 2 / expected
    terms[(expected == 0) & (observed == 0)] = 0.0  # neither side has it: no category
    statistic = float(terms.sum())
    return statistic, float(stats.chi2.sf(statistic, int(((expected > 0) | (observed > 0)).sum()) - 1))


def jensenshannon(reference_counts: np.ndarray, live_counts: np.ndarray) -> float:
    """scipy.spatial.distance.jensenshannon(reference / n, live / m) (natural logarithm)."""
    p = reference_counts / reference_counts.sum()
    q = live_counts / live_counts.sum()
    p, q = p / np.sum(p), q / np.sum(q)
    mid = (p + q) / 2.0
    return float(np.sqrt((np.sum(rel_entr(p, mid)) + np.sum(rel_entr(q, mid))) / 2.0))


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.clip(expected, EPSILON, None)
    actual = np.clip(actual, EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_numeric(reference: np.ndarray, live: np.ndarray) -> float:
    """PSI over the reference sample's deciles (outer bins open-ended), `reference` sorted."""
    return _psi_sorted(reference, np.sort(live))


def _bin_fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Bin i holds edges[i-1] <= v < edges[i], so count(bins <= i) is searchsorted(values, edges[i], 'left').
    below = np.concatenate(([0], np.searchsorted(values, edges, side="left"), [values.size]))
    return np.diff(below) / values.size


def _psi_sorted(reference: np.ndarray, x: np.ndarray) -> float:
    edges = np.quantile(reference, np.linspace(0, 1, PSI_BINS + 1)[1:-1])
    return _psi(_bin_fractions(reference, edges), _bin_fractions(x, edges))


def psi_counts(reference_counts: np.ndarray, live_counts: np.ndarray) -> float:
    return _psi(reference_counts / reference_counts.sum(), live_counts / live_counts.sum())


# --- live values against a reference column --------------------------------------------------------------------


def live_numbers(values: Any) -> tuple[np.ndarray, int]:
    """The finite values of a live column (as training reads them) and how many were not."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    if series.dtype.kind in "fiu":  # already numbers (the usual window): no conversion pass
        column = series.to_numpy(dtype=np.float64)
    else:
        column = numbers(series).to_numpy(dtype=np.float64, na_value=np.nan)
    finite = column[np.isfinite(column)]
    return finite, int(column.size - finite.size)


def category_counts(reference: CategoricalReference, values: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Reference and live counts over the same buckets, and how many live values the reference never saw.

    Categories are encoded once (a hash lookup per distinct value, no Python call per value). Values
    the reference never saw count in its OTHER bucket when it has one, else in a bucket of their own.
    """
    codes = _reference_codes(reference, values)
    live = np.bincount(codes + 1, minlength=reference.categories.size + 1)
    unseen = int(live[0])
    other = np.flatnonzero(reference.categories == OTHER)
    if other.size:
        live[other[0] + 1] += unseen
    if other.size or not unseen:
        return reference.counts, live[1:], unseen
    return np.append(reference.counts, 0), np.append(live[1:], unseen), unseen


def _reference_codes(reference: CategoricalReference, values: Any) -> np.ndarray:
    """Each live value's index among the reference's categories (-1: never seen).

    The column is hashed once (pandas.factorize); only its distinct values are put in canonical form
    and looked up. Python's equality makes True, 1 and 1.0 one key, so a column mixing booleans with
    numbers, whose canonical forms differ ("True" and "1"), is put in canonical form value by value.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    known = pd.Index(reference.categories)
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in {"mixed", "mixed-integer"}:
        return np.asarray(known.get_indexer(category_strings(series)), dtype=np.int64)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    # The missing values' code -1 picks the last entry: the canonical form of a missing value.
    distinct = category_strings(pd.Series([*uniques, None], dtype=object))
    return np.asarray(known.get_indexer(distinct), dtype=np.int64)[codes]


@dataclass
class Measured:
    """One column's statistics, before the check decides."""

    kind: str
    test: str
    statistic: float | None
    pvalue: float | None
    psi: float | None
    samples: int
    reference_samples: int
    missing: int = 0
    unseen: int = 0
    note: str | None = None


def _test_for(kind: str, config: MonitoringSpec, live: int, reference: int) -> str:
    chosen = config.numeric_test if kind == "numeric" else config.categorical_test
    if chosen != "auto":
        return chosen
    small = min(live, reference) <= config.small_sample
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    return "chisquare" if small else "jensenshannon"


def measure(reference: Column, values: Any, config: MonitoringSpec) -> Measured:
    """The statistics of `values` against one reference column (no decision yet)."""
    if isinstance(reference, NumericReference):
        live, missing = live_numbers(values)
        sample = reference.sample
        result = Measured(kind="numeric", test=_test_for("numeric", config, live.size, sample.size), statistic=None,
                          pvalue=None, psi=None, samples=int(live.size), reference_samples=int(sample.size),
                          missing=missing)
        if live.size == 0 or sample.size == 0:
            result.note = "no comparable values (none live, or none in the reference)"
            return result
        live.sort()  # once, for every statistic (our own copy)
        result.psi = _psi_sorted(sample, live)
        if result.test == "ks":
            result.statistic, result.pvalue = _ks_sorted(sample, live)
        elif result.test == "wasserstein":
            result.statistic = _wasserstein_sorted(sample, live) / max(float(np.std(sample)), WASSERSTEIN_STD_FLOOR)
        else:
            result.statistic = result.psi
        return result
    ref_counts, live_counts, unseen = category_counts(reference, values)
    total = int(live_counts.sum())
    result = Measured(kind="categorical", test=_test_for("categorical", config, total, int(reference.counts.sum())),
                      statistic=None, pvalue=None, psi=None, samples=total, reference_samples=int(ref_counts.sum()),
                      unseen=unseen)
    if total == 0 or ref_counts.sum() == 0:
        result.note = "no comparable values (none live, or none in the reference)"
        return result
    result.psi = psi_counts(ref_counts, live_counts)
    if result.test == "chisquare":
        result.statistic, result.pvalue = chisquare(ref_counts, live_counts)
    elif result.test == "jensenshannon":
        result.statistic = jensenshannon(ref_counts, live_counts)
    else:
        result.statistic = result.psi
    if unseen:
        result.note = f"{unseen} live values of categories the training data never had"
    return result


# --- the report -------------------------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _threshold(test: str, config: MonitoringSpec) -> float:
    return {"wasserstein": config.wasserstein_threshold, "jensenshannon": config.jensenshannon_threshold,
            "psi": config.psi_threshold or DEFAULT_PSI_THRESHOLD}[test]


def decide(measured: Measured, config: MonitoringSpec, tested: int) -> dict[str, Any]:
    """A column's report entry: what was measured, against which threshold, and whether it drifted."""
    entry: dict[str, Any] = {
        "kind": measured.kind, "test": measured.test, "statistic": _finite(measured.statistic),
        "pvalue": measured.pvalue, "threshold": None, "drifted": False, "psi": _finite(measured.psi),
        "samples": measured.samples, "reference_samples": measured.reference_samples,
    }
    if measured.kind == "numeric":
        entry["missing"] = measured.missing
    else:
        entry["unseen"] = measured.unseen
    notes = [measured.note] if measured.note else []
    if measured.statistic is not None and not math.isfinite(measured.statistic):
        notes.append("the statistic is infinite (stored as null)")
    if measured.pvalue is not None and math.isnan(measured.pvalue):
        entry["pvalue"] = None
        notes.append("one category on both sides: nothing to test")
    elif measured.statistic is None:
        pass
    elif measured.samples < config.min_samples:
        notes.append(f"too few samples to decide ({measured.samples} < {config.min_samples})")
    elif measured.test in {"ks", "chisquare"}:
        entry["threshold"] = (config.pvalue or DEFAULT_DRIFT_PVALUE) / max(tested, 1)
        entry["drifted"] = bool(measured.pvalue is not None and measured.pvalue < entry["threshold"])
    else:
        entry["threshold"] = _threshold(measured.test, config)
        entry["drifted"] = bool(measured.statistic >= entry["threshold"])
    if notes:
        entry["note"] = "; ".join(notes)
    return entry


def _decidable(measured: Measured, config: MonitoringSpec) -> bool:
    return (measured.test in {"ks", "chisquare"} and measured.pvalue is not None and not math.isnan(measured.pvalue)
            and measured.samples >= config.min_samples)


def window_frame(instances: Sequence[Mapping], names: Sequence[str]) -> pd.DataFrame:
    """The captured instances as columns (pandas builds them in C; missing keys become missing values)."""
    if not instances:
        return pd.DataFrame({name: pd.Series([], dtype=object) for name in names})
    return pd.DataFrame.from_records(instances, columns=list(names), coerce_float=False)


def drift_report(*, model: str, version: int | None, signature: Sequence[Feature], reference: Reference,
                 live: pd.DataFrame, window_hours: int, config: MonitoringSpec,
                 outputs: Any = None) -> dict[str, Any]:
    """The drift report of a live window (one column per signature feature) against a reference.

    `outputs`: the model's live output (as the reference profiles it), or None when the window has none.
    """
    rows = len(live)
    report: dict[str, Any] = {
        "model": model, "version": version, "window_hours": window_hours, "samples": rows,
        "drifted": False, "dataset_drift": False, "drift_share": 0.0, "prediction_drift": False,
        "thresholds": config.model_dump(), "features": {}, "prediction": None,
    }
    if rows == 0:
        report["note"] = f"no captured requests in the last {window_hours} hours: nothing to compare"
        return report
    measured: dict[str, Measured | None] = {}
    for feature in signature:
        column = reference.columns.get(feature.name)
        if column is None or feature.name not in live.columns:
            measured[feature.name] = None
            continue
        measured[feature.name] = measure(column, live[feature.name], config)
    output: Measured | None = None
    if outputs is not None and reference.output is not None:
        output = measure(reference.output, outputs, config)
    tested = sum(_decidable(m, config) for m in [*measured.values(), output] if m is not None)
    for name, result in measured.items():
        if result is None:
            kind = next(f.type for f in signature if f.name == name)
            report["features"][name] = {"kind": kind, "test": None, "statistic": None, "pvalue": None,
                                        "threshold": None, "drifted": False, "psi": None, "samples": rows,
                                        "reference_samples": 0, "note": "the reference has no such column"}
        else:
            report["features"][name] = decide(result, config, tested)
    if output is not None:
        report["prediction"] = {"name": OUTPUT, **decide(output, config, tested)}
        report["prediction_drift"] = report["prediction"]["drifted"]
    else:
        why = ("the window carries no model outputs comparable with the reference's" if reference.output is not None
               else "the reference has no model output")
        report["prediction_note"] = f"prediction drift not checked: {why}"
    drifted = sum(f["drifted"] for f in report["features"].values())
    report["drift_share"] = drifted / len(signature) if signature else 0.0
    report["dataset_drift"] = bool(signature) and report["drift_share"] >= config.drift_share
    report["drifted"] = bool(drifted or report["prediction_drift"])
    if rows < config.min_samples:
        report["note"] = f"only {rows} captured rows (< {config.min_samples}): drift is not decided"
    return report


def max_psi(report: Mapping) -> float:
    """The largest PSI of the report's features (0 when there is none): the DriftScore metric."""
    scores = [f["psi"] for f in (report.get("features") or {}).values() if f.get("psi") is not None]
    return max(scores, default=0.0)
