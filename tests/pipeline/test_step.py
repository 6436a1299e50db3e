"""The one shape of a step: state in, result out as JSON, logged under the run id, timed per step."""

import io
import json

import pytest

from functions.errors import DatasetInvalid, InvalidInput
from functions.pipeline.state import PipelineState, ValidationResult
from functions.pipeline.step import logger, metrics, pipeline_step, uploads

# A step that fails before its result has no metric to publish; Powertools warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

STATE = {"run_id": "churn-0123456789abcdef", "model": "churn", "bucket": "mlops-test-data",
         "key": "datasets/churn/a.csv"}


@pipeline_step
def check_contract(state: PipelineState) -> ValidationResult:
    if state.key.endswith(".bad"):
        raise DatasetInvalid("the file breaks the contract")
    return ValidationResult(report_key=f"runs/{state.model}/{state.run_id}/validation.json", passed=True,
                            warnings=["a column is almost empty"])


def documents(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.fixture(autouse=True)
def fresh_metrics():
    """A step that failed earlier in this process left its dimensions (Powertools keeps them until it publishes)."""
    metrics.clear_metrics()


@pytest.fixture
def step_logs():
    """What the steps' logger writes (its handler keeps the stream it was given at import)."""
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)
    yield stream
    logger.registered_handler.setStream(previous)


def test_the_result_is_returned_as_json(lambda_context):
    result = check_contract(STATE, lambda_context)
    assert result == {"report_key": "runs/churn/churn-0123456789abcdef/validation.json", "passed": True,
                      "warnings": ["a column is almost empty"]}
    assert json.loads(json.dumps(result)) == result


def test_the_step_logs_under_its_run_id_and_reports_its_duration(lambda_context, step_logs, capsys):
    check_contract(STATE, lambda_context)
    (done,) = [d for d in documents(step_logs.getvalue()) if d.get("message") == "step done"]
    assert done["correlation_id"] == STATE["run_id"] and done["step"] == "check_contract" and done["model"] == "churn"
    (metric,) = [d for d in documents(capsys.readouterr().out) if "StepDuration" in d]
    (definition,) = metric["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == "Mlops" and [sorted(d) for d in definition["Dimensions"]] == [["service", "step"]]
    assert metric["step"] == "check_contract" and metric["StepDuration"][0] >= 0
    assert definition["Metrics"] == [{"Name": "StepDuration", "Unit": "Milliseconds"}]


def test_a_domain_error_propagates_as_itself(lambda_context):
    # The state machine catches it by name and records its message as the reason the run failed.
    with pytest.raises(DatasetInvalid, match="breaks the contract") as caught:
        check_contract({**STATE, "key": "datasets/churn/a.bad"}, lambda_context)
    assert type(caught.value) is DatasetInvalid


def test_a_malformed_state_is_invalid_input_before_the_step_runs(lambda_context):
    with pytest.raises(InvalidInput, match=r"malformed \(fields: model\)"):
        check_contract({**STATE, "model": "../etc"}, lambda_context)


def test_uploads_are_read_from_the_data_bucket_only(pipeline_aws):
    from functions.pipeline.state import parse_state

    assert uploads(parse_state(STATE)).bucket == "mlops-test-data"
    with pytest.raises(InvalidInput, match="names bucket 'elsewhere'"):
        uploads(parse_state({**STATE, "bucket": "elsewhere"}))
