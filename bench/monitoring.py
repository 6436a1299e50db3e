"""Monitoring: a drift check of 10k captured rows, profile-based against reference-based.

ours:      functions.monitoring.drift.drift_report over the captured instances, against the
           training data's stored profile (functions.data.datasets.profile_for_storage: per
           numeric column 101 quantiles and decile bins, per categorical column its
           frequencies), exactly what the scheduled check reads from the datasets table.
baseline:  the Evidently-style check that keeps the reference data: per numeric feature
           scipy.stats.ks_2samp of the live values against the FULL training column, and a PSI
           over decile bins of the training column (numpy.quantile + numpy.histogram on both
           sides); per categorical feature a PSI of value frequencies. It starts from the same
           captured instances and is handed the training frame already in memory (reading it
           from S3 on every check, as it would have to, is not counted).

Why ours is profile-based: the reference is a few kilobytes stored with the dataset version,
so a check costs the same whatever the size of the training data, needs no read of the
training file (which may have been deleted, or be far larger than a Lambda's memory), and
compares live traffic with exactly the distribution the model was trained on. The price is
resolution: KS against 101 quantiles instead of every training value, PSI over fixed deciles.

The training sample here has REFERENCE_ROWS rows; the baseline's cost grows with it, ours does not.
"""

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bench.churn import MODEL, churn_spec, instances, training_frame
from bench.measure import compare, emit, note
from functions.settings import Settings
from functions.spec import Feature

LIVE_ROWS = 10_000
REFERENCE_ROWS = 100_000
SHIFT = 0.5  # live traffic from a moved market, so both checks find drift
# The platform's default thresholds, as a deployed drift check reads them.
PSI_THRESHOLD = Settings.model_fields["drift_psi_threshold"].default
KS_PVALUE = Settings.model_fields["drift_ks_pvalue"].default
GOAL = "<= 1.0"
EPSILON = 1e-4


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.clip(expected, EPSILON, None)
    actual = np.clip(actual, EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def reference_drift(reference: pd.DataFrame, captured: list[dict], signature: list[Feature]) -> dict:
    """The baseline: every feature of the captured rows against the full reference columns."""
    live = pd.DataFrame.from_records(captured, columns=[f.name for f in signature])
    features = {}
    for feature in signature:
        name = feature.name
        if feature.type == "numeric":
            ref = pd.to_numeric(reference[name], errors="coerce").dropna().to_numpy(np.float64)
            cur = pd.to_numeric(live[name], errors="coerce").dropna().to_numpy(np.float64)
            ks = stats.ks_2samp(cur, ref)
            edges = np.quantile(ref, np.linspace(0, 1, 11))
            expected = np.histogram(ref, bins=edges)[0] / ref.size
            actual = np.histogram(np.clip(cur, edges[0], edges[-1]), bins=edges)[0] / cur.size
            psi = _psi(expected, actual)
            drifted = psi > PSI_THRESHOLD or ks.pvalue < KS_PVALUE
            features[name] = {"psi": psi, "ks_stat": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
                              "drifted": bool(drifted)}
        else:
            expected = reference[name].astype(str).value_counts(normalize=True)
            actual = live[name].astype(str).value_counts(normalize=True)
            buckets = expected.index.union(actual.index)
            psi = _psi(expected.reindex(buckets, fill_value=0).to_numpy(),
                       actual.reindex(buckets, fill_value=0).to_numpy())
            features[name] = {"psi": psi, "drifted": psi > PSI_THRESHOLD}
    return {"drifted": any(f["drifted"] for f in features.values()), "features": features}


def run() -> list[dict]:
    from functions.data.datasets import profile_for_storage
    from functions.monitoring.drift import drift_report

    spec = churn_spec()
    signature = spec.signature
    reference = training_frame(REFERENCE_ROWS)
    profile = profile_for_storage(reference)
    captured = instances(spec, LIVE_ROWS, shift=SHIFT)

    def ours() -> dict[str, Any]:
        return drift_report(model=MODEL, version=1, signature=signature, profile=profile, instances=captured,
                            window_hours=24, psi_threshold=PSI_THRESHOLD, ks_pvalue=KS_PVALUE)

    def baseline() -> dict[str, Any]:
        return reference_drift(reference, captured, signature)

    ours_report, base_report = ours(), baseline()
    note("monitoring: drifted features, ours "
         f"{sorted(n for n, f in ours_report['features'].items() if f['drifted'])}, baseline "
         f"{sorted(n for n, f in base_report['features'].items() if f['drifted'])} "
         f"({LIVE_ROWS} live rows, reference {REFERENCE_ROWS} rows)")
    ours_ms, baseline_ms = compare(ours, baseline, repeat=21, number=1, warmup=2)
    return [emit("monitoring", "drift_check_10k_rows_ms", ours_ms, baseline_ms, GOAL)]
