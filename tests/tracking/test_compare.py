"""Comparing runs of one model: the best first by the spec's metric, the parameters that differ side by side."""

import pytest

from functions.errors import InvalidInput, NotFound, UnknownModel
from functions.records import Run
from functions.spec import ModelSpec
from mlops.compare import compare_runs
from tests.fakes import MemoryRegistryStore


def run(run_id: str, started: str, **fields) -> Run:
    return Run(model="churn", run_id=run_id, bucket="b", key="k", code_version="c",
               started_at=f"2026-01-0{started}T00:00:00+00:00", **fields)


@pytest.fixture
def registry(churn_spec) -> MemoryRegistryStore:
    store = MemoryRegistryStore()
    store.put_spec(churn_spec)  # metric roc_auc, higher is better
    store.start_run(run("a", "1", metrics={"roc_auc": 0.7, "accuracy": 0.6}, params={"C": 1.0, "max_iter": 300}))
    store.start_run(run("b", "2", metrics={"roc_auc": 0.9}, params={"C": 0.1, "max_iter": 300}))
    store.start_run(run("c", "3", status="FAILED", params={"C": 10.0, "max_iter": 300}))
    store.start_run(run("d", "4", metrics={"roc_auc": 0.8, "loss": 0.3}, params={"max_iter": 300, "kind": "x"}))
    return store


def test_the_best_run_comes_first_and_runs_without_the_metric_last(registry):
    c = compare_runs(registry, "churn")
    assert [r.run_id for r in c.runs] == ["b", "d", "a", "c"]
    assert c.metric == "roc_auc" and c.higher_is_better is True
    assert c.metrics == ["roc_auc", "accuracy", "loss"], "the spec's metric first"
    assert c.params == ["C", "kind"] and c.same_params == {"max_iter": 300}


def test_lower_is_better_metrics_rank_the_smallest_first(registry, churn_spec):
    regression = churn_spec.model_dump() | {"task": "regression", "metric": "rmse",
                                            "estimator": {"name": "linear_regression", "params": {}}}
    registry.put_spec(ModelSpec.model_validate(regression))
    registry.start_run(run("e", "5", metrics={"rmse": 2.0}))
    registry.start_run(run("f", "6", metrics={"rmse": 1.0}))
    assert [r.run_id for r in compare_runs(registry, "churn").runs][:2] == ["f", "e"]


def test_chosen_runs_are_compared_and_an_unknown_one_is_named(registry):
    assert [r.run_id for r in compare_runs(registry, "churn", ["a", "b", "a"]).runs] == ["b", "a"]
    with pytest.raises(NotFound, match="run 'zz' of model 'churn' does not exist"):
        compare_runs(registry, "churn", ["a", "zz"])


def test_the_latest_runs_by_default_and_limits_checked(registry):
    assert {r.run_id for r in compare_runs(registry, "churn", limit=2).runs} == {"c", "d"}
    with pytest.raises(InvalidInput, match="1 to 50"):
        compare_runs(registry, "churn", limit=0)
    with pytest.raises(InvalidInput, match="at most 50"):
        compare_runs(registry, "churn", [f"r{i}" for i in range(51)])


def test_an_unknown_model_is_an_error_and_a_model_without_spec_still_compares(registry):
    with pytest.raises(UnknownModel, match="no model named 'ghost'"):
        compare_runs(registry, "ghost")
    with pytest.raises(UnknownModel, match="lowercase"):
        compare_runs(registry, "Not A Name")
    registry.start_run(run("z", "1").model_copy(update={"model": "orphan"}))
    c = compare_runs(registry, "orphan")
    assert c.metric is None and [r.run_id for r in c.runs] == ["z"]


def test_fold_metrics_give_the_cross_validated_mean_and_spread(registry):
    registry.start_run(run("t1", "5", parent_run_id="b", trial=1, metrics={"roc_auc": 0.75},
                           fold_metrics=[{"roc_auc": 0.7}, {"roc_auc": 0.8}]))
    c = compare_runs(registry, "churn", ["t1", "a"])
    assert c.folds(c.runs[0]) == pytest.approx((0.75, 0.05)) and c.folds(c.runs[1]) is None


def test_a_searchs_trials_are_compared_best_first_and_cut_to_the_best(registry):
    for trial, auc in enumerate([0.6, 0.9, 0.75, 0.8], start=1):
        registry.start_run(run(f"t{trial}", "5", parent_run_id="b", trial=trial, metrics={"roc_auc": auc},
                               params={"n_estimators": 10 * trial}))
    c = compare_runs(registry, "churn", search="b", limit=3)
    assert [r.run_id for r in c.runs] == ["t2", "t4", "t3"] and c.params == ["n_estimators"]
    assert compare_runs(registry, "churn", search="a").runs == [], "a run that searched nothing has no trials"
    with pytest.raises(NotFound, match="run 'zz' of model 'churn' does not exist"):
        compare_runs(registry, "churn", search="zz")
    with pytest.raises(InvalidInput, match="not both"):
        compare_runs(registry, "churn", ["a"], search="b")
