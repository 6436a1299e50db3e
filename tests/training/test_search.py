"""Hyper-parameter search: the spec's search space (validated), its trials (deterministic), each trial's
cross-validation as a child run, a failing trial that does not fail the search, the best trial and the refit,
and the search run by the state machine's twin (inline and Distributed Map) on the in-memory stores."""

import json
import math

import pytest
from pydantic import ValidationError

from functions.errors import DatasetInvalid, SpecInvalid
from functions.pipeline.state import TrialInput, TrialItem, TrialResult
from functions.spec import MAX_TRIALS, ModelSpec, SearchSpace, estimator_parameters
from functions.training import search
from functions.training.train import prepare, seed_for
from tests.conftest import CHURN_SPEC
from tests.pipeline.machine import LambdaServiceError, StateMachine, domain_items, domain_tasks
from tests.training.helpers import run_in_memory

BASE = {key: value for key, value in CHURN_SPEC.items() if key != "estimator"}
RANDOM = {"strategy": "random", "trials": 4, "cv_folds": 3, "estimators": [
    {"name": "random_forest", "params": {"n_estimators": [10, 20], "max_depth": {"int": [2, 6]}}},
    {"name": "logistic_regression", "params": {"C": {"log_uniform": [0.01, 10]}, "max_iter": 300}}]}
# Half of these the estimator refuses (lbfgs takes no l1 penalty): FAILED trials, never a failed search.
HALF_REFUSED = {"strategy": "grid", "cv_folds": 2, "estimators": [
    {"name": "logistic_regression", "params": {"C": [0.1, 1.0], "penalty": ["l2", "l1"], "max_iter": 300}}]}


def spec_with(search: dict, **extra) -> ModelSpec:
    return ModelSpec.model_validate({**BASE, "search": search, **extra})


# --- the search space -------------------------------------------------------------------------------


def test_a_spec_may_declare_estimators_and_their_search_spaces_without_an_estimator():
    spec = spec_with(RANDOM)
    assert spec.search is not None and spec.search.size == 4 and spec.estimator.name == "random_forest"
    assert ModelSpec.model_validate_json(spec.model_dump_json()) == spec  # as the registry stores and reads it


@pytest.mark.parametrize("search, message", [
    ({**RANDOM, "trials": 0}, "a trial budget of 0: trials must be between 1 and 10,000"),
    ({**RANDOM, "trials": 1_000_000}, "a trial budget of 1,000,000: trials must be between 1 and 10,000"),
    ({**RANDOM, "trials": None}, "a random search needs a trial budget"),
    ({**RANDOM, "estimators": []}, "at least 1 item"),
    ({**RANDOM, "cv_folds": 1}, "cv_folds is 1: it must be between 2 and 10"),
    ({**RANDOM, "strategy": "bayes"}, "'grid' or 'random'"),
    ({"strategy": "grid", "estimators": [{"name": "random_forest", "params": {"n_estimators": {"int": [1, 20_000]}}}]},
     "the grid has 20,000 combinations, more than the 10,000 trials a search may run"),
    ({"strategy": "grid", "estimators": [{"name": "logistic_regression", "params": {"C": {"uniform": [0.1, 1]}}}]},
     "a grid takes lists and int ranges; logistic_regression's C is a continuous range"),
    ({"strategy": "grid", "trials": 3, "estimators": [{"name": "random_forest"}]}, "trials is for strategy random"),
    ({**RANDOM, "estimators": [{"name": "random_forest", "params": {"n_trees": [1, 2]}}]},
     "search estimator 'random_forest' does not take parameter(s) n_trees"),
    ({**RANDOM, "estimators": [{"name": "svm"}]}, "search estimator 'svm' is not one of"),
    ({**RANDOM, "estimators": [{"name": "random_forest", "params": {"max_depth": []}}]}, "empty list of choices"),
    ({**RANDOM, "estimators": [{"name": "random_forest", "params": {"max_depth": [3, 3]}}]}, "lists a choice twice"),
    ({**RANDOM, "estimators": [{"name": "random_forest", "params": {"max_depth": {"int": [6, 2]}}}]},
     "int needs low < high, not [6, 2]"),
    ({**RANDOM, "estimators": [{"name": "random_forest", "params": {"max_depth": {"int": [2.5, 6]}}}]},
     "int takes two integers"),
    ({**RANDOM, "estimators": [{"name": "logistic_regression", "params": {"C": {"log_uniform": [0, 1]}}}]},
     "log_uniform needs 0 < low"),
    ({**RANDOM, "estimators": [{"name": "logistic_regression", "params": {"C": {"normal": [0, 1]}}}]},
     "a range is one of {int: [low, high]}"),
    ({**RANDOM, "estimators": [{"name": "logistic_regression", "params": {"C": {"uniform": [0, "x"]}}}]},
     "uniform takes [low, high], two finite numbers"),
    ({**RANDOM, "estimators": [{"name": "logistic_regression", "params": {"C": [{"nested": 1}]}}]},
     "a choice must be a number, string, boolean or null"),
    ({**RANDOM, "extra": 1}, "Extra inputs are not permitted"),
])
def test_a_bad_search_space_is_refused_clearly(search, message):
    with pytest.raises(ValidationError) as refused:
        spec_with(search)
    assert message in str(refused.value)


def test_parameters_are_checked_against_the_estimator_s_own_get_params():
    from sklearn.ensemble import RandomForestClassifier

    assert estimator_parameters("classification", "random_forest") == frozenset(RandomForestClassifier().get_params())


def test_a_spec_names_its_training_backend():
    assert ModelSpec.model_validate({**CHURN_SPEC, "backend": "sagemaker"}).backend == "sagemaker"
    assert ModelSpec.model_validate(CHURN_SPEC).backend is None  # chosen by the dataset's size
    with pytest.raises(ValidationError, match="'lambda' or 'sagemaker'"):
        ModelSpec.model_validate({**CHURN_SPEC, "backend": "batch"})


# --- the trials ---------------------------------------------------------------------------------------


def test_the_same_data_gives_the_same_trials_and_other_data_others():
    space = SearchSpace.model_validate({**RANDOM, "trials": 12})
    first, again = search.trials_for(space, seed_for("a" * 64)), search.trials_for(space, seed_for("a" * 64))
    assert first == again and len(first) == 12 and [t.index for t in first] == list(range(12))
    assert search.trials_for(space, seed_for("b" * 64)) != first
    assert len({json.dumps([t.estimator, t.params], sort_keys=True) for t in first}) == 12  # no trial twice


def test_a_random_search_takes_its_estimators_in_turn_within_their_ranges():
    trials = search.trials_for(SearchSpace.model_validate({**RANDOM, "trials": 40}), 7)
    assert [t.estimator for t in trials[:4]] == ["random_forest", "logistic_regression"] * 2
    forests = [t.params for t in trials if t.estimator == "random_forest"]
    assert all(p["n_estimators"] in (10, 20) and 2 <= p["max_depth"] <= 6 for p in forests)
    assert all(isinstance(p["max_depth"], int) for p in forests)
    cs = [t.params["C"] for t in trials if t.estimator == "logistic_regression"]
    assert all(0.01 <= c <= 10 for c in cs) and min(cs) < 0.1 < 1 < max(cs)  # log-uniform spans the decades
    assert {t.params["max_iter"] for t in trials if t.estimator == "logistic_regression"} == {300}  # fixed value


def test_a_random_budget_larger_than_a_finite_space_runs_each_combination_once():
    space = SearchSpace.model_validate({"strategy": "random", "trials": 50, "estimators": [
        {"name": "random_forest", "params": {"max_depth": [2, 3]}},
        {"name": "logistic_regression", "params": {"C": [0.1, 1.0, 10.0]}}]})
    trials = search.trials_for(space, 1)
    assert space.size == 5 and len(trials) == 5
    # an estimator whose few combinations are taken gives its turn away: the budget is still spent
    space = SearchSpace.model_validate({"strategy": "random", "trials": 6, "estimators": [
        {"name": "random_forest", "params": {"max_depth": [2]}},
        {"name": "logistic_regression", "params": {"C": {"uniform": [0.1, 1.0]}}}]})
    assert [t.estimator for t in search.trials_for(space, 1)].count("logistic_regression") == 5


def test_a_grid_tries_every_combination_estimator_by_estimator():
    space = SearchSpace.model_validate({"strategy": "grid", "estimators": [
        {"name": "random_forest", "params": {"max_depth": {"int": [2, 4]}, "n_estimators": [10, 20]}},
        {"name": "logistic_regression", "params": {"C": [0.1, 1.0]}}]})
    trials = search.trials_for(space, 0)
    assert space.size == len(trials) == 8
    assert [t.params for t in trials[:2]] == [{"max_depth": 2, "n_estimators": 10},
                                              {"max_depth": 2, "n_estimators": 20}]
    assert trials[-1] == TrialItem(index=7, estimator="logistic_regression", params={"C": 1.0})
    assert len(search.trials_for(SearchSpace.model_validate({"strategy": "grid", "estimators": [
        {"name": "random_forest", "params": {"n_estimators": {"int": [1, MAX_TRIALS]}}}]}), 0)) == MAX_TRIALS


# --- a trial: cross-validation on the training split, a child run --------------------------------------


@pytest.fixture
def planned(stores, churn_rows):
    """A run of the churn data with a 4-trial search, stopped after PlanTraining (the trials not run)."""
    stores.registry.put_spec(spec_with(RANDOM))
    stopped: dict = {}

    def stop(name, state):
        stopped.update(state)
        return name == "TrialsInline"

    from functions.records import Run
    from functions.training.start import run_id_for

    key = "datasets/churn/search.csv"
    version = stores.objects.put(key, churn_rows.to_csv(index=False).encode())
    run_id = run_id_for("churn", stores.objects.bucket, key, version)
    stores.registry.start_run(Run(model="churn", run_id=run_id, bucket=stores.objects.bucket, key=key,
                                  version_id=version, code_version="test-1"))
    StateMachine(domain_tasks(stores)).run({"run_id": run_id, "model": "churn", "bucket": stores.objects.bucket,
                                            "key": key, "version_id": version}, until=stop)
    return stopped


def trial_event(planned, index: int, **override) -> TrialInput:
    item = planned["plan"]["items"][index]
    return TrialInput.model_validate({"run_id": planned["run_id"], "model": "churn",
                                      "search_key": planned["plan"]["search_key"], "trial": {**item, **override}})


def test_a_trial_cross_validates_on_the_training_split_and_records_a_child_run(stores, planned):
    result = search.run_trial(stores.objects, stores.registry, trial_event(planned, 1))
    child = stores.registry.get_run("churn", result.run_id)
    assert result.status == child.status == "SUCCEEDED" and child.parent_run_id == planned["run_id"]
    assert (child.trial, child.estimator, child.params) == (1, "logistic_regression", planned["plan"]["items"][1][
        "params"])
    assert len(child.fold_metrics) == 3 and set(child.metrics) >= {"roc_auc", "accuracy"}
    assert math.isclose(child.metrics["roc_auc"], sum(f["roc_auc"] for f in child.fold_metrics) / 3)
    assert result.score == child.metrics["roc_auc"] and child.dataset_id == planned["dataset"]["dataset_id"]
    # the folds cover the training split only: the holdout stays unseen
    spec = spec_with(RANDOM)
    train = prepare(stores.objects.get_frame(planned["features"]["features_key"]), spec,
                    planned["dataset"]["dataset_id"]).train
    context = search.SearchContext.model_validate(stores.objects.get_json(planned["plan"]["search_key"]))
    folds = search.folds_of(train, spec, 3, seed_for(context.dataset_id), None)
    assert sorted(i for _, validation in folds for i in validation) == list(range(len(train)))
    stored = TrialResult.model_validate(stores.objects.get_json(search.result_key(context.results_prefix, 1)))
    assert stored == result


def test_a_candidate_the_estimator_refuses_is_a_failed_trial_with_its_reason_not_an_error(stores, planned):
    result = search.run_trial(stores.objects, stores.registry,
                              trial_event(planned, 0, estimator="random_forest", params={"max_depth": 0}))
    child = stores.registry.get_run("churn", result.run_id)
    assert result.status == child.status == "FAILED" and result.score is None
    assert "estimator 'random_forest' refused" in child.failure_reason and "max_depth" in child.failure_reason


def test_a_retried_trial_records_its_child_run_once(stores, planned):
    first = search.run_trial(stores.objects, stores.registry, trial_event(planned, 2))
    again = search.run_trial(stores.objects, stores.registry, trial_event(planned, 2))
    assert first == again
    children = [r for r in stores.registry.list_runs("churn", limit=100) if r.parent_run_id == planned["run_id"]]
    assert [c.trial for c in children] == [2]


def test_a_training_split_too_small_for_its_folds_fails_the_plan_clearly(stores, churn_rows):
    small = churn_rows.head(20).drop(columns=["customer_id"])  # 16 training rows: 10 folds would hold 1 or 2
    spec = {**BASE, "entity_id": None, "search": {**RANDOM, "cv_folds": 10}}
    stores.registry.put_spec(ModelSpec.model_validate(spec))
    state, error = run_in_memory(stores, "churn", "small.csv", small.to_csv(index=False).encode())
    assert isinstance(error, DatasetInvalid) and "too few for a search of 10 cross-validation folds" in str(error)
    assert state.run.failed_step == "PlanTraining"


# --- the best trial, and the refit -------------------------------------------------------------------


def result(index: int, score: float | None, status: str = "SUCCEEDED") -> TrialResult:
    return TrialResult(index=index, run_id=f"r-trial-{index}", estimator="random_forest", params={}, status=status,
                       score=score)


def test_the_best_trial_has_the_best_mean_metric_and_ties_go_to_the_lowest_index():
    spec = spec_with(RANDOM)
    results = [result(0, 0.7), result(1, 0.9), result(2, 0.9), result(3, None, "FAILED"), result(4, float("nan"))]
    assert search.best_trial(results, spec).index == 1
    regression = ModelSpec.model_validate({**BASE, "task": "regression", "target": "monthly_charges",
                                           "features": [{"name": "tenure_months", "type": "numeric"}],
                                           "entity_id": None, "metric": "rmse", "search": {
                                               **RANDOM, "estimators": [{"name": "random_forest"}]}})
    assert search.best_trial([result(0, 3.0), result(1, 2.0), result(2, 2.0)], regression).index == 1  # lower


def test_a_search_where_no_trial_succeeded_fails_naming_a_reason():
    with pytest.raises(SpecInvalid, match=r"no trial of the search succeeded .* \(2 trials, 2 failed\): trial 0 boom"):
        search.best_trial([result(0, None, "FAILED").model_copy(update={"failure_reason": "boom"}),
                           result(1, None, "FAILED")], spec_with(RANDOM))


def test_a_search_with_failing_trials_succeeds_and_refits_the_best_on_the_whole_training_split(stores, churn_rows):
    stores.registry.put_spec(spec_with(HALF_REFUSED))
    state, error = run_in_memory(stores, "churn", "search.csv", churn_rows.to_csv(index=False).encode())
    assert error is None and state.run.status == "SUCCEEDED"
    found = state.search
    assert (found.trials, found.succeeded, found.failed) == (4, 2, 2) and found.best.params["penalty"] == "l2"
    children = {r.trial: r for r in stores.registry.list_runs("churn", limit=100) if r.parent_run_id == state.run_id}
    assert sorted(children) == [0, 1, 2, 3]
    assert {i for i, c in children.items() if c.status == "FAILED"} == {1, 3}  # the l1 ones, with why
    assert all("l1" in str(children[i].failure_reason) for i in (1, 3))
    # the final model: the best trial's estimator and parameters, fit on the whole training split
    training = state.training
    assert training.estimator == "logistic_regression" and training.params["C"] == found.best.params["C"]
    assert training.rows["train"] == len(prepare(stores.objects.get_frame(state.features.features_key),
                                                 state.spec, state.dataset.dataset_id).train)
    version = stores.registry.get_version("churn", state.run.model_version)
    assert version.estimator == "logistic_regression" and version.params["penalty"] == "l2"
    assert stores.objects.get_json(found.best_key)["index"] == found.best.index


def test_a_spec_without_a_search_trains_as_before_and_reads_nothing_to_plan(stores, churn_rows):
    stores.registry.put_spec(ModelSpec.model_validate(CHURN_SPEC))
    state, error = run_in_memory(stores, "churn", "plain.csv", churn_rows.to_csv(index=False).encode())
    assert error is None and state.search is None and state.plan.search == "none" and state.plan.trials == 0
    assert state.training.estimator == "logistic_regression" and state.training.backend == "lambda"
    assert not [r for r in stores.registry.list_runs("churn", limit=100) if r.parent_run_id]


# --- the search in the state machine's twin ---------------------------------------------------------------


def test_the_state_machine_runs_an_inline_search_and_a_trial_whose_function_fails_is_recorded_failed(
        stores, planned):
    tasks = domain_tasks(stores)
    trial = tasks["Trial"]
    down = {"index": 3}

    def trial_function(event):  # trial 3's function is throttled past every retry: its Pass state catches it
        if event["trial"]["index"] == down["index"]:
            raise LambdaServiceError("Lambda.TooManyRequestsException")
        return trial(event)

    tasks["Trial"] = trial_function
    execution = StateMachine(tasks).run(planned, start_at="TrialsInline")
    assert execution.status == "SUCCEEDED", execution.error
    assert execution.path[:3] == ["TrialsInline", "SelectBest", "Train"]
    assert execution.state["search"]["failed"] == 1 and execution.state["search"]["succeeded"] == 3
    child = stores.registry.get_run("churn", search.trial_run_id(planned["run_id"], 3))
    assert child.status == "FAILED" and "did not finish" in child.failure_reason
    assert execution.attempts["Trial"] == 3 + 9  # three trials once, and 1 + 8 retries of the throttled one


def test_a_search_past_the_threshold_runs_in_the_distributed_map_from_its_trials_file(stores, churn_rows):
    stores.registry.put_spec(spec_with({"strategy": "random", "trials": 5, "cv_folds": 2, "estimators": [  # past 4
        {"name": "logistic_regression", "params": {"C": {"log_uniform": [0.01, 10]}, "max_iter": 300}}]}))
    from functions.records import Run
    from functions.training.start import run_id_for

    key = "datasets/churn/wide.csv"
    version = stores.objects.put(key, churn_rows.to_csv(index=False).encode())
    run_id = run_id_for("churn", stores.objects.bucket, key, version)
    stores.registry.start_run(Run(model="churn", run_id=run_id, bucket=stores.objects.bucket, key=key,
                                  version_id=version, code_version="test-1"))
    execution = StateMachine(domain_tasks(stores), read_items=domain_items(stores)).run(
        {"run_id": run_id, "model": "churn", "bucket": stores.objects.bucket, "key": key, "version_id": version})
    assert execution.status == "SUCCEEDED", execution.error
    plan = execution.state["plan"]
    assert plan["search"] == "distributed" and plan["items"] == [] and plan["trials"] == 5
    assert len(stores.objects.get_json(plan["trials_key"])) == 5
    assert "TrialsDistributed" in execution.path and execution.state["search"]["trials"] == 5
