"""The local cloud's `sagemaker:createTrainingJob.sync` (local/sagemaker.py): the job's channels downloaded, the
training entry point run in-process, model.tar.gz uploaded, and the task ending as Step Functions ends it."""

import io
import json
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cli.demo_data import churn_frame
from functions.features.build import model_frame
from functions.spec import ModelSpec
from functions.training.train_entry import read_model_archive
from local import patches
from local.runtime import LambdaRuntime
from tests.conftest import CHURN_SPEC
from tests.local.conftest import WAIT_S

ROLE = "arn:aws:iam::123456789012:role/machine"
BUCKET = "data"
RUN = "runs/churn/run-1"


@pytest.fixture
def aws() -> Iterator[Any]:
    runtime = LambdaRuntime({}, preload=[])
    patches.apply(runtime)
    try:
        with mock_aws():
            client = lambda service: boto3.client(service, region_name="us-east-1")  # noqa: E731
            client("s3").create_bucket(Bucket=BUCKET)
            yield client
    finally:
        patches.remove()
        runtime.stop()


def job_definition(**parameters: Any) -> str:
    """One task as infra/training.py's TrainOnSageMaker: the job from the state, named with its retry count."""
    task = {"Type": "Task", "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync", "End": True,
            "ResultSelector": {"job_name.$": "$.TrainingJobName", "status.$": "$.TrainingJobStatus",
                               "model_artifacts.$": "$.ModelArtifacts.S3ModelArtifacts"},
            "ResultPath": "$.training_job",
            "Parameters": {
                "TrainingJobName.$": "States.Format('{}-{}', $.job, $$.State.RetryCount)", "RoleArn": ROLE,
                "AlgorithmSpecification": {"TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/"
                                                            "sagemaker-scikit-learn:1.2-1-cpu-py3",
                                           "TrainingInputMode": "File"},
                "HyperParameters": {"sagemaker_program": '"train_entry.py"'},
                "InputDataConfig": [
                    {"ChannelName": "features", "DataSource": {"S3DataSource": {
                        "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{RUN}/features.parquet"}}},
                    {"ChannelName": "config", "DataSource": {"S3DataSource": {
                        "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{RUN}/training/"}}}],
                "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/{RUN}/sagemaker/"},
                "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30},
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600}, **parameters}}
    return json.dumps({"StartAt": "Train", "States": {"Train": task}})


def run(aws: Any, definition: str) -> dict[str, Any]:
    sfn = aws("stepfunctions")
    arn = sfn.create_state_machine(name=f"m{time.monotonic_ns()}", definition=definition,
                                   roleArn=ROLE)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"job": "churn-job"}))["executionArn"]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError("the execution did not end")


def inputs(aws: Any, spec: dict[str, Any]) -> None:
    """The run's features and job.json, as BuildFeatures and PlanTraining leave them."""
    model_spec = ModelSpec.model_validate(spec)
    frame = model_frame(churn_frame(rows=80, seed=3), model_spec)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    s3 = aws("s3")
    s3.put_object(Bucket=BUCKET, Key=f"{RUN}/features.parquet", Body=buffer.getvalue())
    s3.put_object(Bucket=BUCKET, Key=f"{RUN}/training/job.json", Body=json.dumps(
        {"spec": model_spec.model_dump(mode="json"), "dataset_id": "d" * 64, "run_id": "run-1"}))


def test_a_sync_training_job_runs_the_entry_point_and_ends_with_the_jobs_description(aws):
    inputs(aws, CHURN_SPEC)
    execution = run(aws, job_definition())
    assert execution["status"] == "SUCCEEDED", execution
    job = json.loads(execution["output"])["training_job"]
    key = f"{RUN}/sagemaker/churn-job-0/output/model.tar.gz"
    assert job == {"job_name": "churn-job-0", "status": "Completed", "model_artifacts": f"s3://{BUCKET}/{key}"}
    summary, files = read_model_archive(aws("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert summary.estimator == "logistic_regression" and summary.rows["train"] + summary.rows["holdout"] == 80
    described = aws("sagemaker").describe_training_job(TrainingJobName="churn-job-0")
    assert described["TrainingJobStatus"] == "Completed"  # what any AWS client sees of the job too


def test_a_job_the_entry_point_refuses_fails_the_task_with_its_reason(aws):
    inputs(aws, {**CHURN_SPEC, "estimator": {"name": "logistic_regression", "params": {"C": -1.0}}})
    execution = run(aws, job_definition())
    assert execution["status"] == "FAILED" and execution["error"] == "States.TaskFailed"
    cause = json.loads(execution["cause"])
    assert cause["TrainingJobStatus"] == "Failed" and cause["TrainingJobName"] == "churn-job-0"
    assert "refused the value of parameter 'C'" in cause["FailureReason"]
    assert aws("sagemaker").describe_training_job(TrainingJobName="churn-job-0")["TrainingJobStatus"] == "Failed"


def test_another_program_than_the_platforms_entry_point_fails_the_job(aws):
    inputs(aws, CHURN_SPEC)
    execution = run(aws, job_definition(HyperParameters={"sagemaker_program": '"other.py"'}))
    assert execution["status"] == "FAILED" and "other.py" in json.loads(execution["cause"])["FailureReason"]


def test_a_sagemaker_api_error_is_named_as_step_functions_names_it(aws):
    inputs(aws, CHURN_SPEC)
    aws("sagemaker").create_training_job(**{k: v for k, v in json.loads(job_definition())["States"]["Train"][
        "Parameters"].items() if not k.endswith(".$")}, TrainingJobName="churn-job-0")
    execution = run(aws, job_definition())  # the same name again: SageMaker refuses it
    assert execution["status"] == "FAILED" and execution["error"] == "SageMaker.AmazonSageMakerException"


def test_the_archive_holds_what_the_model_directory_held(aws):
    inputs(aws, CHURN_SPEC)
    assert run(aws, job_definition())["status"] == "SUCCEEDED"
    body = aws("s3").get_object(Bucket=BUCKET, Key=f"{RUN}/sagemaker/churn-job-0/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["holdout.parquet", "model.skops", "train.parquet", "training.json"]


def test_a_failed_job_is_one_console_line_with_its_reason():
    cause = json.dumps({"TrainingJobName": "churn-job-0", "TrainingJobStatus": "Failed",
                        "FailureReason": "estimator 'logistic_regression' refused the value of parameter 'C'",
                        "AlgorithmSpecification": {"TrainingImage": "x" * 500}})
    events = [{"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "TrainOnSageMaker"}},
              {"type": "TaskFailed", "taskFailedEventDetails": {"error": "States.TaskFailed", "cause": cause}}]
    line = patches.end_line("r", "FAILED", events, "RunFailed", "see the record")
    assert line == ("execution r failed at TrainOnSageMaker: States.TaskFailed: training job churn-job-0 Failed: "
                    "estimator 'logistic_regression' refused the value of parameter 'C'")
