"""The drift statistics against scipy, and the report's decisions: pure functions, no AWS."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon as scipy_jensenshannon

from functions.monitoring.drift import (
    EPSILON,
    category_counts,
    chisquare,
    drift_report,
    jensenshannon,
    ks,
    max_psi,
    measure,
    psi_numeric,
    wasserstein,
    window_frame,
)
from functions.shared.reference import (
    OTHER,
    OUTPUT,
    build_reference,
    categorical_reference,
    from_bytes,
    numeric_reference,
    to_bytes,
)
from functions.spec import Feature, MonitoringSpec

CONFIG = MonitoringSpec().with_defaults(pvalue=0.01, psi_threshold=0.2)


def close(ours: float, theirs: float) -> bool:
    """Within 1e-9 (relative for numbers above 1), infinities and NaNs alike."""
    if not np.isfinite(theirs) or not np.isfinite(ours):
        return bool(ours == theirs or (np.isnan(ours) and np.isnan(theirs)))
    return abs(ours - theirs) <= 1e-9 * max(1.0, abs(theirs))


def numeric_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [
        ("random", rng.normal(size=500), rng.normal(0.2, 1.3, size=80)),
        ("large", rng.gamma(2, 3, size=20_000), rng.gamma(2, 3.3, size=12_000)),  # asymptotic KS
        ("ties", rng.integers(0, 5, size=300).astype(float), rng.integers(0, 6, size=200).astype(float)),
        ("rounded", rng.normal(size=2000).round(1), rng.normal(size=2000).round(1)),
        ("equal sizes", rng.normal(size=400), rng.normal(size=400)),
        ("constant both", np.full(50, 3.0), np.full(40, 3.0)),
        ("constant apart", np.full(50, 3.0), np.full(40, 4.0)),
        ("constant reference", np.full(50, 3.0), rng.normal(3, 1, size=60)),
        ("one live row", rng.normal(size=100), np.array([0.3])),
        ("one row each", np.array([1.0]), np.array([2.0])),
        ("disjoint", rng.normal(size=100), rng.normal(100, 1, size=100)),
        ("huge magnitudes", rng.normal(0, 1e12, size=300), rng.normal(1e11, 1e12, size=300)),
        ("live inside one gap", np.array([0.0, 10.0]), np.linspace(4, 6, 33)),
    ]


@pytest.mark.parametrize("name, reference, live", numeric_cases(), ids=[c[0] for c in numeric_cases()])
def test_numeric_statistics_equal_scipys_on_the_stored_sample(name, reference, live):
    stored = numeric_reference(reference, seed=1)  # what the check reads: the sorted sample
    ours_d, ours_p = ks(stored.sample, live)
    theirs = stats.ks_2samp(live, reference)
    assert close(ours_d, float(theirs.statistic)) and close(ours_p, float(theirs.pvalue)), name
    assert close(wasserstein(stored.sample, live), float(stats.wasserstein_distance(live, reference))), name
    measured = measure(stored, live, CONFIG.model_copy(update={"numeric_test": "wasserstein"}))
    expected = stats.wasserstein_distance(live, reference) / max(np.std(reference), 1e-3)
    assert close(measured.statistic, float(expected)), name


def test_live_values_that_are_not_finite_numbers_are_left_out_and_counted():
    reference = numeric_reference(np.arange(100.0), seed=1)
    live = pd.Series([1.5, None, float("nan"), float("inf"), "x", "2.5", True, 40.0], dtype=object)
    measured = measure(reference, live, CONFIG)
    finite = np.array([1.5, 2.5, 1.0, 40.0])
    assert measured.samples == 4 and measured.missing == 4
    assert close(measured.pvalue, float(stats.ks_2samp(finite, np.arange(100.0)).pvalue))
    assert measure(reference, [None, "x"], CONFIG).note.startswith("no comparable values")


def evidently_counts(reference: list[str], live: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Counts over the union of the categories, each unseen category its own key (as Evidently builds them)."""
    keys = sorted(set(reference) | set(live))
    return (np.array([reference.count(k) for k in keys], dtype=float),
            np.array([live.count(k) for k in keys], dtype=float))


def categorical_cases() -> list[tuple[str, list[str], list[str]]]:
    rng = np.random.default_rng(3)
    letters = list("abcdefgh")
    return [
        ("random", list(rng.choice(letters, 400)), list(rng.choice(letters, 90))),
        ("skewed", list(rng.choice(letters, 3000, p=[.5, .2, .1, .1, .05, .03, .01, .01])),
         list(rng.choice(letters, 500))),
        ("empty live bins", list("aabbccdd" * 20), list("ab" * 20)),
        ("unseen categories", list("aabbcc" * 10), list("abcxyz" * 5)),
        ("one category apart", list("a" * 30), list("a" * 29 + "b")),
        ("one live row", list("abc" * 10), ["b"]),
    ]


@pytest.mark.parametrize("name, reference, live", categorical_cases(), ids=[c[0] for c in categorical_cases()])
def test_categorical_statistics_equal_scipys(name, reference, live):
    stored = categorical_reference(reference)
    ref_counts, live_counts, unseen = category_counts(stored, live)
    expected_ref, expected_live = evidently_counts(reference, live)
    statistic, pvalue = chisquare(ref_counts, live_counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        theirs = stats.chisquare(expected_live, expected_ref * (len(live) / len(reference)))
    assert close(statistic, float(theirs.statistic)) and close(pvalue, float(theirs.pvalue)), name
    if unseen == 0:  # with unseen categories the reference's share is 0 in both, the bucketing differs
        assert close(jensenshannon(ref_counts, live_counts),
                     float(scipy_jensenshannon(expected_ref / len(reference), expected_live / len(live)))), name
    else:
        assert unseen == sum(v not in set(reference) for v in live)
        unseen_as_one = np.append(expected_ref[[k in set(reference) for k in sorted(set(reference) | set(live))]], 0)
        assert close(jensenshannon(ref_counts, live_counts),
                     float(scipy_jensenshannon(unseen_as_one / len(reference), live_counts / len(live)))), name


def test_categories_are_compared_in_the_transformations_canonical_form():
    stored = categorical_reference(pd.Series(["2", "3", "2", None]))
    ref_counts, live_counts, unseen = category_counts(stored, pd.Series([2, 3.0, "2", None], dtype=object))
    assert unseen == 0 and live_counts.tolist() == [2, 1, 1] and ref_counts.tolist() == [2, 1, 1]


def test_true_and_1_stay_two_categories_though_python_hashes_them_alike():
    stored = categorical_reference(pd.Series(["True", "1", "1"]))
    ref_counts, live_counts, unseen = category_counts(stored, pd.Series([True, 1, 1.0, 1, None], dtype=object))
    counted = dict(zip(stored.categories.tolist(), live_counts.tolist(), strict=False))
    assert counted == {"True": 1, "1": 3} and unseen == 1  # the missing value: a category training never had


def test_one_category_on_both_sides_has_nothing_to_test():
    measured = measure(categorical_reference(["a"] * 40), ["a"] * 40, CONFIG)
    with np.errstate(invalid="ignore"):
        assert np.isnan(stats.chisquare([40.0], [40.0]).pvalue)  # scipy says the same
    report = drift_report(model="m", version=1, signature=[Feature(name="c", type="categorical")],
                          reference=build_reference(pd.DataFrame({"c": ["a"] * 40}), {"c": "categorical"}),
                          live=pd.DataFrame({"c": ["a"] * 40}), window_hours=1, config=CONFIG)
    assert measured.pvalue is not None and report["features"]["c"]["pvalue"] is None
    assert report["features"]["c"]["drifted"] is False and "nothing to test" in report["features"]["c"]["note"]


def test_psi_over_the_reference_deciles_matches_a_plain_histogram():
    rng = np.random.default_rng(4)
    reference, live = np.sort(rng.normal(size=5000)), rng.normal(0.3, 1, size=700)
    edges = np.quantile(reference, np.linspace(0, 1, 11))
    expected = np.histogram(reference, bins=edges)[0] / reference.size
    actual = np.histogram(np.clip(live, edges[0], edges[-1]), bins=edges)[0] / live.size
    expected, actual = np.clip(expected, EPSILON, None), np.clip(actual, EPSILON, None)
    assert close(psi_numeric(reference, live), float(np.sum((actual - expected) * np.log(actual / expected))))
    assert psi_numeric(reference, reference) == pytest.approx(0, abs=1e-12)


# --- the reference profile -------------------------------------------------------------------------------------


def test_a_reference_keeps_the_whole_column_up_to_its_size_and_a_seeded_uniform_sample_beyond():
    values = np.arange(1000.0)[::-1]
    whole = numeric_reference(values, seed=3, max_sample=1000)
    assert whole.sample.tolist() == sorted(values.tolist()) and not whole.sampled
    sampled = numeric_reference(np.append(values, [np.nan, np.inf]), seed=3, max_sample=100)
    again = numeric_reference(np.append(values, [np.nan, np.inf]), seed=3, max_sample=100)
    assert sampled.sample.size == 100 and sampled.sampled and sampled.rows == 1002 and sampled.missing == 2
    assert np.array_equal(sampled.sample, again.sample) and np.all(np.diff(sampled.sample) >= 0)
    assert len(set(sampled.sample.tolist())) == 100  # without replacement


def test_a_reference_counts_categories_and_lumps_the_rarest_past_its_limit():
    stored = categorical_reference(["a"] * 5 + ["b"] * 3 + ["c", "d"] + ["x" * 500], max_categories=2)
    assert stored.categories.tolist() == ["a", "b", OTHER] and stored.counts.tolist() == [5, 3, 3]
    assert max(len(c) for c in categorical_reference(["x" * 500]).categories) == 200


def test_a_reference_round_trips_through_its_file_without_pickle():
    frame = pd.DataFrame({"n": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", None]})
    reference = build_reference(frame, {"n": "numeric", "c": "categorical"}, output=[0.2, 0.9, 0.4],
                                output_kind="numeric", seed=5)
    loaded = from_bytes(to_bytes(reference))
    assert loaded.columns["n"].sample.tolist() == [1.0, 2.0, 4.0] and loaded.columns["n"].missing == 1
    column = loaded.columns["c"]
    assert dict(zip(column.categories.tolist(), column.counts.tolist(), strict=True)) == {"a": 2, "b": 1,
                                                                                         "__missing__": 1}
    assert loaded.output.sample.tolist() == [0.2, 0.4, 0.9] and loaded.seed == 5


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04garbage"])
def test_bytes_that_are_not_a_reference_are_refused(data):
    with pytest.raises(ValueError):
        from_bytes(data)


def test_a_file_holding_python_objects_is_refused_not_unpickled():
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(json.dumps({"format": 1, "names": ["n"], "columns": [
        {"kind": "numeric", "rows": 1, "missing": 0}], "output": None}).encode(), dtype=np.uint8),
             **{"c0.sample": np.array([object()], dtype=object)})
    with pytest.raises(ValueError):
        from_bytes(buffer.getvalue())


# --- the report ------------------------------------------------------------------------------------------------


SIGNATURE = [Feature(name="x", type="numeric"), Feature(name="y", type="numeric"),
             Feature(name="c", type="categorical")]


def population(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(shift, 1, rows), "y": rng.gamma(2, 2, rows),
                         "c": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2]).astype(object)})


@pytest.fixture(scope="module")
def reference():
    return build_reference(population(5000, 1), {f.name: f.type for f in SIGNATURE},
                           output=np.random.default_rng(2).beta(2, 5, 5000), output_kind="numeric")


def report_of(reference, live: pd.DataFrame, config: MonitoringSpec = CONFIG, outputs=None) -> dict:
    return drift_report(model="m", version=1, signature=SIGNATURE, reference=reference, live=live, window_hours=24,
                        config=config, outputs=outputs)


def test_tests_are_chosen_by_sample_size_and_a_spec_overrides_them(reference):
    small = report_of(reference, population(1000, 3))
    assert [small["features"][n]["test"] for n in "xyc"] == ["ks", "ks", "chisquare"]
    large = report_of(reference, population(1001, 3))
    assert [large["features"][n]["test"] for n in "xyc"] == ["wasserstein", "wasserstein", "jensenshannon"]
    assert large["features"]["x"]["threshold"] == 0.1 and large["features"]["x"]["pvalue"] is None
    forced = report_of(reference, population(1001, 3), CONFIG.model_copy(update={"numeric_test": "psi",
                                                                              "categorical_test": "chisquare"}))
    assert forced["features"]["x"]["test"] == "psi" and forced["features"]["x"]["threshold"] == 0.2
    assert forced["features"]["x"]["statistic"] == forced["features"]["x"]["psi"]
    assert forced["features"]["c"]["threshold"] == 0.01  # the only column decided by a p-value test


def test_p_values_are_bonferroni_corrected_over_the_columns_tested(reference):
    report = report_of(reference, population(200, 3), outputs=np.random.default_rng(4).beta(2, 5, 200))
    assert {f["threshold"] for f in report["features"].values()} == {0.01 / 4}  # 3 features and the output
    assert report["prediction"]["name"] == OUTPUT and report["prediction"]["threshold"] == 0.01 / 4
    assert report["drifted"] is False and report["dataset_drift"] is False


def test_the_report_keeps_full_precision_through_json(reference):
    report = report_of(reference, population(900, 5, shift=0.5))
    pvalue = report["features"]["x"]["pvalue"]
    assert 0 < pvalue < 5e-7  # the old report rounded this to 0
    stored = json.loads(json.dumps(report))
    assert stored["features"]["x"]["pvalue"] == pvalue and stored["features"]["x"]["statistic"] == \
        report["features"]["x"]["statistic"]
    assert report["features"]["x"]["drifted"] and report["drifted"]
    assert report["drift_share"] == pytest.approx(1 / 3) and report["dataset_drift"] is False


def test_dataset_drift_is_the_share_of_drifted_features(reference):
    moved = population(900, 6, shift=1.0)
    moved["c"] = "c"
    report = report_of(reference, moved)
    assert report["drift_share"] == pytest.approx(2 / 3) and report["dataset_drift"] is True
    assert report_of(reference, moved, CONFIG.model_copy(update={"drift_share": 0.9}))["dataset_drift"] is False


def test_prediction_drift_is_checked_on_the_models_output(reference):
    report = report_of(reference, population(500, 7), outputs=np.random.default_rng(8).beta(5, 2, 500))
    assert report["prediction_drift"] is True and report["drifted"] is True
    assert report["features"]["x"]["drifted"] is False


def test_unseen_categories_are_drift_and_said(reference):
    live = population(300, 9)
    live.loc[:9, "c"] = "never seen"
    entry = report_of(reference, live)["features"]["c"]
    assert entry["drifted"] and entry["unseen"] == 10 and entry["pvalue"] == 0.0
    assert entry["statistic"] is None and "10 live values of categories" in entry["note"]
    assert "infinite" in entry["note"]


def test_small_windows_are_reported_not_decided(reference):
    one = report_of(reference, population(1, 10, shift=5.0))
    assert one["drifted"] is False and one["note"].startswith("only 1 captured rows")
    assert one["features"]["x"]["pvalue"] is not None and "too few samples" in one["features"]["x"]["note"]
    empty = report_of(reference, window_frame([], ["x", "y", "c"]))
    assert empty["features"] == {} and empty["samples"] == 0 and max_psi(empty) == 0.0


def test_columns_the_reference_or_the_window_lacks_are_reported_not_decided(reference):
    signature = [*SIGNATURE, Feature(name="region", type="categorical")]
    live = window_frame([{"x": 1.0, "y": 2.0}] * 40, ["x", "y", "c", "region"])
    report = drift_report(model="m", version=1, signature=signature, reference=reference, live=live,
                          window_hours=1, config=CONFIG)
    assert report["features"]["region"]["note"] == "the reference has no such column"
    assert report["features"]["c"]["samples"] == 40 and report["features"]["c"]["drifted"]  # all __missing__
    assert report["prediction"] is None and "carries no model outputs" in report["prediction_note"]


# --- false alarms and detection, seeded (the bench measures the same over 200 windows of up to 100k rows) -----


def test_false_alarms_stay_under_5_percent_and_a_quarter_sd_shift_is_caught_in_95_percent():
    from bench.drift import alarm_rates, synthetic_frame

    kinds = {**{f"n{i}": "numeric" for i in range(4)}, **{f"c{i}": "categorical" for i in range(2)}}
    reference = build_reference(synthetic_frame(3000, kinds, seed=1), kinds)
    # Both regimes: p-value tests at 30 rows (and 1,000 for detection), distances at 1,500
    rates = alarm_rates(reference, kinds, sizes=(30, 1500), repetitions=200, shift=0.0, seed=100)
    assert all(rate["drifted"] <= 0.05 for rate in rates.values()), rates
    caught = alarm_rates(reference, kinds, sizes=(1000, 1500), repetitions=200, shift=0.25, seed=200)
    assert all(rate["shifted_column"] >= 0.95 and rate["drifted"] >= 0.95 for rate in caught.values()), caught


@pytest.mark.parametrize("section", [{"pvalue": 0}, {"pvalue": 1.5}, {"numeric_test": "t-test"}, {"unknown": 1},
                                     {"drift_share": 0}, {"min_samples": 0}, {"small_sample": "many"}])
def test_a_spec_monitoring_section_is_validated(section, churn_spec):
    from pydantic import ValidationError

    from functions.spec import ModelSpec

    with pytest.raises(ValidationError):
        ModelSpec.model_validate({**churn_spec.model_dump(), "monitoring": section})


def test_a_spec_overrides_the_deployments_defaults_only_where_it_says():
    config = MonitoringSpec(pvalue=0.05).with_defaults(pvalue=0.01, psi_threshold=0.3)
    assert config.pvalue == 0.05 and config.psi_threshold == 0.3 and config.small_sample == 1000


def test_hostile_live_values_are_compared_not_crashed_on(reference):
    rows = [{"x": [1, 2], "y": {"k": 1}, "c": {"a": 1}}, {"x": "1e400", "y": 1e308, "c": "x" * 1_000_000},
            {"x": True, "y": "nan", "c": [1]}, {"c": 3}, {"x": None, "y": -1e308, "c": float("nan")}] * 8
    report = report_of(reference, window_frame(rows, ["x", "y", "c"]))
    json.dumps(report, allow_nan=False)  # storable as it is
    assert report["features"]["x"]["samples"] == 8 and report["features"]["x"]["missing"] == 32
    assert report["features"]["c"]["drifted"] and report["features"]["c"]["unseen"] == 40
