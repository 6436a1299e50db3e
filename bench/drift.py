"""Drift: the check's statistics at 10k, 100k and 1M captured rows x 25 columns, and whether they are right.

Data: 20 numeric features (normal, skewed gamma, Poisson counts with ties, rounded normals) and 5
categorical ones (3 to 8 categories); a reference profile of 100,000 training rows
(functions.shared.reference); live windows drawn from the same population, the first feature moved
by 0.25 standard deviations where a shift is wanted.

Figures (each one JSON line):
- drift_ms_<rows>x25: ours (functions.monitoring.drift.drift_report on the window's columns against the
  stored reference) against a plain per-column scipy loop computing the same statistics on the same
  data (ks_2samp or wasserstein_distance / std, chisquare or jensenshannon, PSI with numpy.quantile and
  numpy.histogram; pandas value_counts for categories); goal at 1M rows: time ratio <= 0.33 (3x the
  cells per second). The cells per second are in the note.
- drift_from_instances_ms_<rows>x25 (10k, 100k): the same from the captured instances (a list of
  JSON objects), both sides building columns with pandas first.
- evidently_ms_<rows>x25 and evidently_same_tests_ms_<rows>x25: Evidently 0.7's DataDriftPreset
  (its defaults; then with our tests) on the same data, in its own venv (EVIDENTLY_PYTHON, default
  /tmp/evidently-venv/bin/python), timed there; skipped with a note when it is absent. Goal: ours <= 1/100
  of its default preset at 1M rows.
- drift_peak_memory_mb_1M: tracemalloc's peak during our check against the window's in-memory size
  (pandas memory_usage(deep=True)); goal ratio <= 2.
- drift_time_exponent: the slope of log(time) over log(rows) between 100k and 1M, ours and the scipy loop
  (n log n is 1.08 over that span; arrays that outgrow the caches add to it).
- false alarms and detection over 200 windows per size: `drifted` (any column, or the output, drifted:
  what the alarm and the retraining watch; dataset drift at a share of 0.5 can only be rarer) on
  unshifted data at 30 to 100k rows (goal <= 0.05), and on windows of 1,000 to 100k rows with the
  0.25-sd shift, the shifted column's own flag (goal >= 0.95; `drifted` is at least as often true). The
  baseline is the same report decided without the Bonferroni correction (each column at p < 0.05, as
  Evidently does per column).
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from bench.measure import compare, emit, note
from functions.monitoring.drift import drift_report, window_frame
from functions.shared.reference import NumericReference, Reference, build_reference
from functions.spec import Feature, MonitoringSpec

ROWS = (10_000, 100_000, 1_000_000)
REFERENCE_ROWS = 100_000
KINDS = {**{f"n{i}": "numeric" for i in range(20)}, **{f"c{i}": "categorical" for i in range(5)}}
SHIFTED = "n0"
SHIFT_SD = 0.25
CONFIG = MonitoringSpec().with_defaults(pvalue=0.01, psi_threshold=0.2)
FALSE_ALARM_SIZES = (30, 100, 300, 1_000, 3_000, 10_000, 100_000)
DETECTION_SIZES = (1_000, 3_000, 10_000, 100_000)
REPETITIONS = 200
EVIDENTLY_PYTHON = os.environ.get("EVIDENTLY_PYTHON", "/tmp/evidently-venv/bin/python")
CATEGORIES = [["basic", "standard", "premium"], [f"region-{i}" for i in range(8)]]


def synthetic_frame(rows: int, kinds: dict[str, str], *, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """`rows` rows of the population; the first numeric column moved by `shift` standard deviations."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    numeric = categorical = 0
    for name, kind in kinds.items():
        if kind == "numeric":
            form = numeric % 4
            if form == 0:
                values = rng.normal(shift if numeric == 0 else 0.0, 1.0, rows)
            elif form == 1:
                values = rng.gamma(2.0, 2.0, rows)
            elif form == 2:
                values = rng.poisson(3.0, rows).astype(np.float64)
            else:
                values = rng.normal(50.0, 10.0, rows).round(1)
            columns[name] = values
            numeric += 1
        else:
            names = CATEGORIES[categorical % 2]
            weights = np.geomspace(1.0, 0.2, len(names))
            columns[name] = rng.choice(np.asarray(names, dtype=object), rows, p=weights / weights.sum())
            categorical += 1
    return pd.DataFrame(columns)


def signature(kinds: dict[str, str]) -> list[Feature]:
    return [Feature(name=name, type=kind) for name, kind in kinds.items()]  # type: ignore[arg-type]


def _uncorrected(report: dict[str, Any]) -> bool:
    """The report decided as Evidently decides a column: p < 0.05 each, distances at their thresholds."""
    for entry in report["features"].values():
        if entry.get("threshold") is None:
            continue
        if entry["pvalue"] is not None and entry["pvalue"] < 0.05:
            return True
        if entry["pvalue"] is None and entry["drifted"]:
            return True
    return False


def alarm_rates(reference: Reference, kinds: dict[str, str], *, sizes: Iterable[int], repetitions: int,
                shift: float, seed: int, config: MonitoringSpec = CONFIG) -> dict[int, dict[str, float]]:
    """Per window size, the share of `repetitions` seeded windows in which the check flags: `drifted`,
    `dataset_drift`, the shifted column, and the uncorrected rule."""
    features = signature(kinds)
    first = next(name for name, kind in kinds.items() if kind == "numeric")
    rates: dict[int, dict[str, float]] = {}
    for size in sizes:
        counts = {"drifted": 0, "dataset_drift": 0, "shifted_column": 0, "uncorrected": 0}
        for repetition in range(repetitions):
            live = synthetic_frame(size, kinds, seed=seed + size * 1000 + repetition, shift=shift)
            report = drift_report(model="bench", version=1, signature=features, reference=reference, live=live,
                                  window_hours=24, config=config)
            counts["drifted"] += report["drifted"]
            counts["dataset_drift"] += report["dataset_drift"]
            counts["shifted_column"] += report["features"][first]["drifted"]
            counts["uncorrected"] += _uncorrected(report)
        rates[size] = {name: count / repetitions for name, count in counts.items()}
    return rates


# --- the baseline: a plain per-column scipy loop computing the same statistics ---------------------------------


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def scipy_loop(reference_columns: dict[str, Any], live: pd.DataFrame, config: MonitoringSpec) -> dict[str, Any]:
    """What a user writes: per column, pandas to clean it, scipy for the test, numpy for PSI."""
    results = {}
    for name, ref in reference_columns.items():
        if isinstance(ref, np.ndarray):
            cur = pd.to_numeric(live[name], errors="coerce").dropna().to_numpy(np.float64)
            edges = np.quantile(ref, np.linspace(0, 1, 11))
            expected = np.histogram(ref, bins=edges)[0] / ref.size
            actual = np.histogram(np.clip(cur, edges[0], edges[-1]), bins=edges)[0] / cur.size
            if min(cur.size, ref.size) <= config.small_sample:
                statistic = float(stats.ks_2samp(cur, ref).pvalue)
            else:
                statistic = float(stats.wasserstein_distance(cur, ref) / max(np.std(ref), 1e-3))
        else:
            counts = live[name].astype(str).value_counts()
            keys = ref.index.union(counts.index)
            ref_counts = ref.reindex(keys, fill_value=0).to_numpy(np.float64)
            cur_counts = counts.reindex(keys, fill_value=0).to_numpy(np.float64)
            expected, actual = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
            if min(cur_counts.sum(), ref_counts.sum()) <= config.small_sample:
                statistic = float(stats.chisquare(cur_counts, ref_counts * cur_counts.sum() / ref_counts.sum()).pvalue)
            else:
                statistic = float(jensenshannon(expected, actual))
        results[name] = (statistic, _psi(expected, actual))
    return results


def reference_columns(reference: Reference) -> dict[str, Any]:
    """The stored reference as the loop reads it: the numeric samples, the category counts as Series."""
    return {name: column.sample if isinstance(column, NumericReference)
            else pd.Series(column.counts, index=column.categories) for name, column in reference.columns.items()}


# --- Evidently, in its own venv ----------------------------------------------------------------------------------

EVIDENTLY_SCRIPT = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
reference = pd.read_parquet(sys.argv[1]); current = pd.read_parquet(sys.argv[2])
definition = DataDefinition(numerical_columns=[c for c in reference if c.startswith("n")],
                            categorical_columns=[c for c in reference if c.startswith("c")])
ref = Dataset.from_pandas(reference, data_definition=definition)
cur = Dataset.from_pandas(current, data_definition=definition)
out = {}
for label, preset in (("default", DataDriftPreset()),
                      ("same_tests", DataDriftPreset(num_method=sys.argv[3], cat_method=sys.argv[4]))):
    started = time.perf_counter()
    Report([preset]).run(current_data=cur, reference_data=ref)
    out[label] = (time.perf_counter() - started) * 1000
print(json.dumps(out))
"""


def evidently_ms(reference: pd.DataFrame, live: pd.DataFrame) -> dict[str, float] | None:
    if not Path(EVIDENTLY_PYTHON).exists():
        note(f"drift: Evidently skipped: no {EVIDENTLY_PYTHON} (python3 -m venv /tmp/evidently-venv && "
             "/tmp/evidently-venv/bin/pip install 'evidently==0.7.*' 'pandas<3')")
        return None
    small = min(len(live), len(reference)) <= CONFIG.small_sample
    methods = ("ks", "chisquare") if small else ("wasserstein", "jensenshannon")
    with tempfile.TemporaryDirectory() as folder:
        ref_path, cur_path = f"{folder}/reference.parquet", f"{folder}/current.parquet"
        reference.to_parquet(ref_path)
        live.to_parquet(cur_path)
        done = subprocess.run([EVIDENTLY_PYTHON, "-c", EVIDENTLY_SCRIPT, ref_path, cur_path, *methods],
                              capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        note(f"drift: Evidently failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- the run ------------------------------------------------------------------------------------------------------


def _report(reference: Reference, live: pd.DataFrame) -> dict[str, Any]:
    return drift_report(model="bench", version=1, signature=signature(KINDS), reference=reference, live=live,
                        window_hours=24, config=CONFIG)


def _from_instances(reference: Reference, captured: list[dict]) -> dict[str, Any]:
    return _report(reference, window_frame(captured, list(KINDS)))


def _scipy_from_instances(columns: dict[str, Any], captured: list[dict]) -> dict[str, Any]:
    return scipy_loop(columns, pd.DataFrame.from_records(captured, columns=list(KINDS)), CONFIG)


def _speed(reference: Reference, training: pd.DataFrame) -> list[dict]:
    figures, times = [], {}
    columns = reference_columns(reference)
    for rows in ROWS:
        live = synthetic_frame(rows, KINDS, seed=rows + 1, shift=SHIFT_SD)
        repeat = {10_000: 11, 100_000: 5}.get(rows, 3)
        ours_ms, scipy_ms = compare(partial(_report, reference, live), partial(scipy_loop, columns, live, CONFIG),
                                    repeat=repeat, warmup=1)
        times[rows] = (ours_ms, scipy_ms)
        cells = rows * len(KINDS)
        note(f"drift: {rows} rows x {len(KINDS)}: ours {ours_ms:.0f} ms ({cells / ours_ms * 1000:,.0f} cells/s), "
             f"scipy loop {scipy_ms:.0f} ms ({cells / scipy_ms * 1000:,.0f} cells/s)")
        goal = "<= 0.33 (3x the scipy loop's cells/s)" if rows == ROWS[-1] else "< 1.0"
        figures.append(emit("drift", f"drift_ms_{rows}x25", ours_ms, scipy_ms, goal))
        if rows <= 100_000:
            captured = json.loads(live.to_json(orient="records"))
            from_ms, from_scipy_ms = compare(partial(_from_instances, reference, captured),
                                             partial(_scipy_from_instances, columns, captured),
                                             repeat=repeat, warmup=1)
            figures.append(emit("drift", f"drift_from_instances_ms_{rows}x25", from_ms, from_scipy_ms, "< 1.0"))
        evidently = evidently_ms(training, live)
        if evidently is not None:
            figures.append(emit("drift", f"evidently_ms_{rows}x25", ours_ms, evidently["default"],
                                "<= 0.01 (100x) at 1M rows" if rows == ROWS[-1] else "< 1.0"))
            figures.append(emit("drift", f"evidently_same_tests_ms_{rows}x25", ours_ms, evidently["same_tests"],
                                "< 1.0"))
        if rows == ROWS[-1]:
            size = float(live.memory_usage(deep=True).sum())
            tracemalloc.start()
            _report(reference, live)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            figures.append(emit("drift", "drift_peak_memory_mb_1M", peak / 2**20, size / 2**20, "<= 2.0"))
        del live
    # Between the two largest windows, where the rows' work outweighs the reference's fixed per-column cost.
    low, high = ROWS[-2], ROWS[-1]
    span = math.log(high / low)
    figures.append(emit("drift", "drift_time_exponent", math.log(times[high][0] / times[low][0]) / span,
                        math.log(times[high][1] / times[low][1]) / span, "ours <= 1.1 (n log n: 1.08)"))
    return figures


def _rates(reference: Reference) -> list[dict]:
    figures = []
    started = time.perf_counter()
    quiet = alarm_rates(reference, KINDS, sizes=FALSE_ALARM_SIZES, repetitions=REPETITIONS, shift=0.0, seed=10_000)
    for size, rate in quiet.items():
        note(f"drift: unshifted, {size} rows: drifted {rate['drifted']:.3f}, "
             f"dataset drift {rate['dataset_drift']:.3f}, uncorrected {rate['uncorrected']:.3f} "
             f"({REPETITIONS} windows)")
        figures.append(emit("drift", f"false_alarm_rate_{size}_rows", rate["drifted"], rate["uncorrected"],
                            "ours <= 0.05"))
    moved = alarm_rates(reference, KINDS, sizes=DETECTION_SIZES, repetitions=REPETITIONS, shift=SHIFT_SD, seed=20_000)
    for size, rate in moved.items():
        note(f"drift: {SHIFT_SD} sd shift in {SHIFTED}, {size} rows: column {rate['shifted_column']:.3f}, "
             f"drifted {rate['drifted']:.3f}, dataset drift {rate['dataset_drift']:.3f}")
        figures.append(emit("drift", f"detection_rate_{size}_rows", rate["shifted_column"], rate["uncorrected"],
                            "ours >= 0.95"))
    note(f"drift: rates over {REPETITIONS} windows per size in {time.perf_counter() - started:.0f} s")
    return figures


def run() -> list[dict]:
    training = synthetic_frame(REFERENCE_ROWS, KINDS, seed=1)
    reference = build_reference(training, KINDS, seed=1)
    only = os.environ.get("BENCH_DRIFT_ONLY", "")
    figures = [] if only == "rates" else _speed(reference, training)
    if only != "speed":
        figures += _rates(reference)
    return figures


if __name__ == "__main__":
    from bench import measure

    measure.out = sys.stdout
    run()
