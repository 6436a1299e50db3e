"""The drift statistics against a training profile: pure functions, no AWS."""

import math

import numpy as np
import pytest

from cli.demo_data import churn_frame
from functions.data.profile import OTHER, profile_frame
from functions.monitoring.drift import (
    MIN_SAMPLES,
    bin_fractions,
    categorical_psi,
    drift_report,
    feature_drift,
    ks,
    max_psi,
    psi,
)
from functions.spec import Feature, ModelSpec
from tests.conftest import CHURN_SPEC

SIGNATURE = ModelSpec.model_validate(CHURN_SPEC).signature
THRESHOLDS = {"psi_threshold": 0.2, "ks_pvalue": 0.01}


@pytest.fixture(scope="module")
def training():
    return churn_frame(rows=400, seed=5)


@pytest.fixture(scope="module")
def profile(training):
    return profile_frame(training)


@pytest.fixture(scope="module")
def shifted():
    return churn_frame(rows=400, seed=6, shift=1.0)


def column(profile, name):
    return profile["columns"][name]


def records(frame):
    return frame[[f.name for f in SIGNATURE]].to_dict("records")


# --- numeric PSI ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tenure_months", "monthly_charges", "support_calls"])
def test_psi_of_the_training_data_itself_is_zero(name, training, profile):
    profiled = column(profile, name)
    assert psi(profiled["bin_edges"], profiled["bin_fractions"], training[name]) == pytest.approx(0, abs=1e-6)


def test_psi_of_a_fresh_sample_of_the_same_population_is_small(profile):
    fresh = churn_frame(rows=400, seed=99)
    profiled = column(profile, "monthly_charges")
    assert psi(profiled["bin_edges"], profiled["bin_fractions"], fresh["monthly_charges"]) < 0.1


@pytest.mark.parametrize("name", ["tenure_months", "monthly_charges"])
def test_psi_of_shifted_data_is_large(name, profile, shifted):
    profiled = column(profile, name)
    assert psi(profiled["bin_edges"], profiled["bin_fractions"], shifted[name]) > 0.5


def test_values_outside_the_training_range_count_in_the_outer_bins():
    edges = [0.0, 1.0, 2.0, 3.0]
    assert bin_fractions(edges, np.array([-5.0, 0.0, 1.5, 3.0, 99.0])).tolist() == [0.4, 0.2, 0.4]
    assert bin_fractions(edges, np.array([])).tolist() == [0.0, 0.0, 0.0]
    # Everything beyond the training range: as drifted as it gets, and still finite.
    assert math.isfinite(psi(edges, [1 / 3] * 3, [1000.0] * 50))
    assert psi(edges, [1 / 3] * 3, [1000.0] * 50) > 2


def test_psi_ignores_what_is_not_a_finite_number_and_needs_values_on_both_sides():
    edges, fractions = [0.0, 1.0, 2.0], [0.5, 0.5]
    assert psi(edges, fractions, [0.5, 1.5, None, float("nan"), float("inf"), "x"]) == pytest.approx(0, abs=1e-9)
    assert psi(edges, fractions, [None, "x"]) is None
    assert psi([], [], [1.0]) is None
    assert psi([0.0, 1.0], [0.5, 0.5], [1.0]) is None  # fractions that do not fit the edges


# --- categorical PSI --------------------------------------------------------------------------


def test_categorical_psi_of_the_training_frequencies_is_zero(training, profile):
    assert categorical_psi(column(profile, "plan")["frequencies"], training["plan"]) == pytest.approx(0, abs=1e-6)


def test_an_unseen_category_is_drift(training, profile):
    frequencies = column(profile, "plan")["frequencies"]
    assert OTHER not in frequencies
    live = list(training["plan"][:300]) + ["enterprise"] * 100
    assert categorical_psi(frequencies, live) > 0.2
    drift = feature_drift(column(profile, "plan"), live, **THRESHOLDS)
    assert drift["drifted"] is True and drift["kind"] == "categorical" and drift["ks_pvalue"] is None


def test_categories_are_compared_in_their_canonical_form():
    # A CSV reads 2 as 2.0 in a column with gaps; a JSON request sends 2: the same category.
    assert categorical_psi({"2": 0.5, "3": 0.5}, [2, 3.0, "2", "3"]) == pytest.approx(0, abs=1e-9)
    assert categorical_psi({}, ["a"]) is None
    assert categorical_psi({"a": 1.0}, []) is None


# --- Kolmogorov-Smirnov -----------------------------------------------------------------------


def test_ks_separates_shifted_data_from_the_training_data(training, profile, shifted):
    quantiles = column(profile, "tenure_months")["quantiles"]
    same_stat, same_p = ks(quantiles, training["tenure_months"])
    shifted_stat, shifted_p = ks(quantiles, shifted["tenure_months"])
    assert same_p > 0.5 and same_stat < 0.05
    assert shifted_p < 1e-6 and shifted_stat > same_stat
    assert ks(quantiles, [None, "x"]) == (None, None)
    assert ks([], [1.0, 2.0]) == (None, None)


# --- one feature, one report ------------------------------------------------------------------


def test_feature_drift_flags_a_shifted_numeric_feature(profile, shifted):
    drift = feature_drift(column(profile, "monthly_charges"), list(shifted["monthly_charges"]), **THRESHOLDS)
    assert drift["drifted"] is True and drift["samples"] == 400 and "note" not in drift
    assert drift["psi"] > 0.2 and drift["ks_pvalue"] < 0.01 and 0 < drift["ks_stat"] <= 1


def test_too_few_samples_decide_nothing(profile, shifted):
    values = list(shifted["monthly_charges"][:MIN_SAMPLES - 1])
    drift = feature_drift(column(profile, "monthly_charges"), values, **THRESHOLDS)
    assert drift["drifted"] is False and drift["psi"] > 0.2  # the numbers are reported ...
    assert drift["note"] == f"too few samples to decide ({MIN_SAMPLES - 1} < {MIN_SAMPLES})"  # ... not acted on
    # Missing values are not samples.
    drift = feature_drift(column(profile, "monthly_charges"), values + [None] * 50, **THRESHOLDS)
    assert drift["samples"] == MIN_SAMPLES - 1 and drift["drifted"] is False


def test_a_feature_without_comparable_values_is_not_drift(profile):
    drift = feature_drift(column(profile, "monthly_charges"), [None] * 50, **THRESHOLDS)
    assert drift["drifted"] is False and drift["psi"] is None and "no comparable values" in drift["note"]
    drift = feature_drift({"kind": None}, [1.0] * 50, **THRESHOLDS)
    assert drift["drifted"] is False and "no distribution" in drift["note"]


def test_the_report_of_training_like_traffic_is_not_drift(profile):
    fresh = records(churn_frame(rows=300, seed=42))
    report = drift_report(model="churn", version=1, signature=SIGNATURE, profile=profile, instances=fresh,
                          window_hours=24, **THRESHOLDS)
    assert report["drifted"] is False and report["samples"] == 300 and "note" not in report
    assert set(report["features"]) == {f.name for f in SIGNATURE}
    assert all(f["drifted"] is False for f in report["features"].values())
    assert max_psi(report) < 0.2


def test_the_report_of_shifted_traffic_is_drift(profile, shifted):
    report = drift_report(model="churn", version=1, signature=SIGNATURE, profile=profile, instances=records(shifted),
                          window_hours=24, **THRESHOLDS)
    assert report["drifted"] is True
    assert report["features"]["tenure_months"]["drifted"] and report["features"]["monthly_charges"]["drifted"]
    assert max_psi({"features": {"a": {"psi": 0.1}, "b": {"psi": None}, "c": {"psi": 0.3}}}) == 0.3
    assert report["thresholds"] == {"psi": 0.2, "ks_pvalue": 0.01, "min_samples": MIN_SAMPLES}


def test_a_report_on_too_few_or_no_rows_decides_nothing(profile, shifted):
    few = drift_report(model="churn", version=1, signature=SIGNATURE, profile=profile,
                       instances=records(shifted)[:10], window_hours=24, **THRESHOLDS)
    assert few["drifted"] is False and few["samples"] == 10 and "drift is not decided" in few["note"]
    assert few["features"]["monthly_charges"]["psi"] > 0.2

    empty = drift_report(model="churn", version=1, signature=SIGNATURE, profile=profile, instances=[],
                         window_hours=6, **THRESHOLDS)
    assert empty["drifted"] is False and empty["samples"] == 0 and empty["features"] == {}
    assert empty["note"] == "no captured requests in the last 6 hours: nothing to compare"
    assert max_psi(empty) == 0.0


def test_a_signature_feature_missing_from_the_profile_is_reported_not_decided(profile, shifted):
    signature = [*SIGNATURE, Feature(name="region", type="categorical")]
    report = drift_report(model="churn", version=1, signature=signature, profile=profile,
                          instances=records(shifted), window_hours=24, **THRESHOLDS)
    assert report["features"]["region"]["drifted"] is False
    assert report["features"]["region"]["note"] == "the training profile has no such column"
