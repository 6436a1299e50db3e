"""Starting executions on Step Functions (moto): one execution per run name, AWS errors translated."""

import json

import pytest

from functions.errors import MlopsError, RetryableError
from functions.pipeline.executions import StepFunctionsExecutions, pipeline_executions
from tests.conftest import failing_with


@pytest.fixture
def executions(boto_session) -> StepFunctionsExecutions:
    """A state machine alone in moto, and its executions' adapter."""
    from moto import mock_aws

    with mock_aws():
        client = boto_session.client("stepfunctions")
        arn = client.create_state_machine(
            name="pipeline", definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/pipeline")["stateMachineArn"]
        yield StepFunctionsExecutions(client, arn)


def started(executions: StepFunctionsExecutions) -> list[dict]:
    return executions.client.list_executions(stateMachineArn=executions.state_machine_arn)["executions"]


def test_an_execution_is_named_after_its_run_and_started_once(executions):
    assert executions.start("churn-1", {"run_id": "churn-1"}) is True
    (execution,) = started(executions)
    assert execution["name"] == "churn-1"
    assert json.loads(executions.client.describe_execution(executionArn=execution["executionArn"])["input"]) == {
        "run_id": "churn-1"}
    # While it runs, Step Functions answers the same start with the same execution: still one.
    executions.start("churn-1", {"run_id": "churn-1"})
    assert len(started(executions)) == 1


def test_a_duplicate_start_of_a_finished_or_different_execution_is_false(executions):
    executions.start("churn-1", {"run_id": "churn-1"})
    assert executions.start("churn-1", {"run_id": "churn-1", "other": "input"}) is False
    executions.client.stop_execution(executionArn=started(executions)[0]["executionArn"])
    assert executions.start("churn-1", {"run_id": "churn-1"}) is False
    assert len(started(executions)) == 1


@pytest.mark.parametrize("code, error", [("ThrottlingException", RetryableError),
                                         ("AccessDeniedException", MlopsError),
                                         ("StateMachineDoesNotExist", MlopsError)])
def test_other_errors_are_translated(executions, monkeypatch, code, error):
    monkeypatch.setattr(executions.client, "start_execution", failing_with(code, "StartExecution"))
    with pytest.raises(error) as caught:
        executions.start("churn-1", {})
    assert type(caught.value) is error and "injected" not in caught.value.message


def test_the_function_s_executions_use_its_state_machine(pipeline_aws):
    assert pipeline_executions().state_machine_arn == pipeline_aws.state_machine_arn
    assert pipeline_executions() is pipeline_executions()
