"""The pipeline state: parsed from the execution's JSON, each step's result read back typed."""

import json

import pytest

from functions.errors import InvalidInput
from functions.pipeline.state import (
    DatasetResult,
    FeaturesResult,
    PipelineState,
    TrainingResult,
    ValidationResult,
    parse_state,
)

START = {"run_id": "churn-1", "model": "churn", "bucket": "mlops-test-data", "key": "datasets/churn/a.csv",
         "version_id": "v1"}


@pytest.fixture
def dataset(churn_spec) -> dict:
    return DatasetResult(dataset_id="d" * 64, key=START["key"], version_id="v1", bytes=10, spec=churn_spec, rows=3,
                         readable=True, new=True).model_dump(mode="json")


def test_an_earlier_result_is_read_back_typed(dataset, churn_spec):
    state = parse_state({**START, "dataset": dataset, "validation": {"report_key": "r", "passed": True}})
    assert state.result(DatasetResult).dataset_id == "d" * 64 and state.spec == churn_spec
    assert state.result(ValidationResult) == ValidationResult(report_key="r", passed=True, warnings=[])


def test_a_missing_earlier_result_is_invalid_input_naming_its_step(dataset):
    state = parse_state({**START, "dataset": dataset})
    with pytest.raises(InvalidInput, match="no result of BuildFeatures: that step did not run"):
        state.result(FeaturesResult)
    with pytest.raises(InvalidInput, match="no result of RegisterDataset"):
        _ = parse_state(START).spec


def test_the_failed_step_is_the_first_without_a_result(dataset):
    assert parse_state(START).failed_step() == "RegisterDataset"
    state = parse_state({**START, "dataset": dataset, "validation": {"report_key": "r", "passed": True},
                         "features": {"features_key": "f", "features_sha256": "s", "rows": 3, "entities": 0}})
    assert state.failed_step() == "PlanTraining"


@pytest.mark.parametrize("plan, done, step", [
    ({"backend": "lambda", "backend_reason": "small"}, {}, "Train"),  # no search: SelectBest is not on the path
    ({"backend": "lambda", "backend_reason": "small", "search": "inline", "trials": 2}, {}, "SelectBest"),
    ({"backend": "sagemaker", "backend_reason": "asked"}, {}, "TrainOnSageMaker"),
    ({"backend": "sagemaker", "backend_reason": "asked"},
     {"training_job": {"job_name": "j-0", "status": "Completed", "model_artifacts": "s3://b/k"}}, "CollectTraining"),
])
def test_the_failed_step_of_the_training_section_follows_the_plan(dataset, plan, done, step):
    features = {"features_key": "f", "features_sha256": "s", "rows": 3, "entities": 0}
    state = parse_state({**START, "dataset": dataset, "validation": {"report_key": "r", "passed": True},
                         "features": features, "plan": plan, **done})
    assert state.failed_step() == step


@pytest.mark.parametrize("event, fields", [
    ({**START, "run_id": ""}, "run_id"),
    ({**START, "model": "Not A Model"}, "model"),
    ({k: v for k, v in START.items() if k != "bucket"}, "bucket"),
    ({**START, "training": {"model_key": "k"}}, "training."),
])
def test_a_malformed_state_names_its_fields(event, fields):
    with pytest.raises(InvalidInput, match=r"the pipeline state is malformed \(fields: .*" + fields):
        parse_state(event)


@pytest.mark.parametrize("event", [None, "a string", ["a", "list"], 42])
def test_a_state_that_is_not_an_object_is_invalid_input(event):
    with pytest.raises(InvalidInput, match="the pipeline state is malformed"):
        parse_state(event)


def test_the_state_machine_s_own_fields_are_ignored_and_results_survive_json(dataset):
    training = TrainingResult(model_key="m", model_sha256="s", trusted_types=["numpy.dtype"], train_key="t",
                              holdout_key="h", params={"C": 1.0}, estimator="logistic_regression", seed=3,
                              stratified=True, rows={"train": 8, "holdout": 2})
    event = json.loads(json.dumps({**START, "dataset": dataset, "training": training.model_dump(mode="json"),
                                   "raised": "by a test helper", "Execution": {"Id": "x"}}))
    state = parse_state(event)
    assert isinstance(state, PipelineState) and state.result(TrainingResult) == training
