"""The training pipeline's handlers under moto: the upload trigger, a whole run through every step's
handler, a failure recorded, and AWS errors mapped (the domain cases are in test_runs and test_start)."""

import json

import pytest

from functions.errors import DatasetInvalid, InvalidInput, RetryableError
from functions.pipeline.state import DatasetResult
from functions.pipeline.step import metrics
from functions.registry.dynamo import registry_store
from functions.training import handler
from functions.training.start import run_id_for
from tests.conftest import failing_with
from tests.training.helpers import caught, run_pipeline, upload_state

# A step that fails before its result has no metric to publish; Powertools warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture(autouse=True)
def fresh_metrics():
    """The steps share one Metrics in this process, and Powertools keeps a failed step's dimensions
    until it publishes something: start each test without them."""
    metrics.clear_metrics()


def s3_event(bucket: str, key: str, version_id: str | None = "v-1") -> dict:
    obj = {"key": key, "size": 10, "etag": "abc", "sequencer": "01"}
    if version_id:
        obj["version-id"] = version_id
    return {
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
        "source": "aws.s3", "account": "123456789012", "time": "2024-01-01T00:00:00Z", "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj, "request-id": "R",
                   "requester": "123456789012", "reason": "PutObject"},
    }


def executions(aws) -> list[dict]:
    return aws.sfn.list_executions(stateMachineArn=aws.state_machine_arn)["executions"]


def test_an_upload_records_a_run_and_starts_its_execution_once(pipeline_aws, lambda_context):
    event = s3_event(pipeline_aws.bucket, "datasets/churn/train.csv")
    first = handler.start_pipeline(event, lambda_context)
    run_id = run_id_for("churn", pipeline_aws.bucket, "datasets/churn/train.csv", "v-1")
    assert first == {"started": True, "recorded": True, "run_id": run_id, "model": "churn"}
    run = registry_store().get_run("churn", run_id)
    assert run.status == "RUNNING" and run.version_id == "v-1" and run.code_version == "test-1"
    (execution,) = executions(pipeline_aws)
    assert execution["name"] == run_id
    described = pipeline_aws.sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"run_id": run_id, "model": "churn", "bucket": pipeline_aws.bucket,
                                              "key": "datasets/churn/train.csv", "version_id": "v-1"}

    duplicate = handler.start_pipeline(event, lambda_context)  # EventBridge delivers at least once
    assert duplicate["recorded"] is False and duplicate["run_id"] == run_id
    assert len(executions(pipeline_aws)) == 1
    pipeline_aws.sfn.stop_execution(executionArn=execution["executionArn"])
    finished = handler.start_pipeline(event, lambda_context)  # ExecutionAlreadyExists: a no-op too
    assert finished["started"] is False and len(executions(pipeline_aws)) == 1


def test_a_key_outside_datasets_model_file_is_ignored(pipeline_aws, lambda_context):
    result = handler.start_pipeline(s3_event(pipeline_aws.bucket, "other/churn/x.csv"), lambda_context)
    assert result["started"] is False and "not under datasets/<model>/<file>" in result["reason"]
    assert executions(pipeline_aws) == []


def test_a_non_s3_event_is_invalid_input(pipeline_aws, lambda_context):
    with pytest.raises(InvalidInput, match="not an S3"):
        handler.start_pipeline({"detail": {"nope": 1}}, lambda_context)


def test_step_functions_throttling_is_retryable(pipeline_aws, lambda_context, monkeypatch):
    from functions import aws

    monkeypatch.setattr(aws.stepfunctions(), "start_execution", failing_with("ThrottlingException", "StartExecution"))
    with pytest.raises(RetryableError):
        handler.start_pipeline(s3_event(pipeline_aws.bucket, "datasets/churn/a.csv"), lambda_context)


def test_a_whole_run_trains_registers_and_promotes(pipeline_aws, churn_spec, churn_rows, lambda_context):
    registry_store().put_spec(churn_spec)
    state = run_pipeline(upload_state(pipeline_aws, "churn", "train.csv", churn_rows.to_csv(index=False).encode()),
                         lambda_context)
    assert "error" not in state, state.get("error")
    assert state["training"]["rows"] == {"train": 160, "holdout": 40}
    metrics = state["evaluation"]["metrics"]
    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"} and metrics["roc_auc"] > 0.6
    assert state["registration"] == {"version": 1, "format": "onnx"}
    assert state["promotion"]["promoted"] is True and state["promotion"]["previous"] is None
    assert state["run"] == {"status": "SUCCEEDED", "model_version": 1, "promoted": True, "failure_reason": None,
                            "failed_step": None, "duplicate_of": None}
    run = registry_store().get_run("churn", state["run_id"])
    assert run.status == "SUCCEEDED" and run.model_version == 1 and run.promoted is True
    assert run.metrics == metrics and run.dataset_id == state["dataset"]["dataset_id"]
    version = registry_store().get_version("churn", 1)
    assert version.run_id == state["run_id"] and version.packages["scikit-learn"]
    assert version.code_version == "test-1" and version.signature[3].model_dump() == {"name": "plan",
                                                                                      "type": "categorical"}
    keys = {o["Key"] for o in pipeline_aws.s3.list_objects_v2(Bucket=pipeline_aws.bucket)["Contents"]}
    prefix = f"runs/churn/{state['run_id']}/"
    assert {prefix + n for n in ["validation.json", "features.parquet", "train.parquet", "holdout.parquet",
                                 "model.skops"]} <= keys
    assert {"models/churn/v1/model.onnx", "models/churn/v1/model.skops"} <= keys


def test_a_bad_dataset_fails_its_run_and_never_touches_the_champion(churn_champion_aws, pipeline_aws,
                                                                     lambda_context):
    audit_before = registry_store().audit_trail("churn")

    bad = run_pipeline(upload_state(pipeline_aws, "churn", "b.csv", b"a,b,c\n1,2,3\n"), lambda_context)

    assert isinstance(bad["raised"], DatasetInvalid)
    assert bad["run"]["status"] == "FAILED" and bad["run"]["failed_step"] == "ValidateDataset"
    run = registry_store().get_run("churn", bad["run_id"])
    assert run.status == "FAILED" and run.failed_step == "ValidateDataset" and run.error_type == "DatasetInvalid"
    assert "the target column 'churned' is missing" in run.failure_reason
    assert run.dataset_id == bad["dataset"]["dataset_id"]
    assert registry_store().get_alias("churn") == churn_champion_aws.version == 1
    assert len(registry_store().list_versions("churn")) == 1
    assert registry_store().audit_trail("churn") == audit_before


@pytest.fixture
def stopped_before_training(pipeline_aws, churn_spec) -> dict:
    """The state of a run whose data steps ran, as the state machine hands it to Train."""
    dataset = DatasetResult(dataset_id="d" * 64, key="datasets/churn/x.csv", bytes=10, spec=churn_spec,
                            readable=True)
    return {"run_id": "churn-1", "model": "churn", "bucket": pipeline_aws.bucket, "key": "datasets/churn/x.csv",
            "dataset": dataset.model_dump(mode="json")}


def test_record_failure_records_a_domain_message_in_the_registry(stopped_before_training, lambda_context):
    from functions.records import Run

    registry_store().start_run(Run(model="churn", run_id="churn-1", bucket="b", key="k", code_version="x"))
    error = caught(DatasetInvalid("bad file"))
    result = handler.record_failure({**stopped_before_training, "error": error}, lambda_context)
    run = registry_store().get_run("churn", "churn-1")
    assert result == {"status": "FAILED", "model_version": None, "promoted": None, "failure_reason": "bad file",
                      "failed_step": "ValidateDataset", "duplicate_of": None}
    assert run.status == "FAILED" and run.failure_reason == "bad file" and run.failed_step == "ValidateDataset"
    assert run.ended_at and run.dataset_id == "d" * 64


def test_train_refuses_a_state_without_features(stopped_before_training, lambda_context):
    with pytest.raises(InvalidInput, match="no result of BuildFeatures"):
        handler.train(stopped_before_training, lambda_context)


def test_a_throttled_s3_read_in_train_surfaces_as_retryable_error(stopped_before_training, lambda_context,
                                                                   monkeypatch):
    from functions import aws

    state = {**stopped_before_training, "validation": {"report_key": "r", "passed": True},
             "features": {"features_key": "runs/churn/churn-1/features.parquet", "features_sha256": "s", "rows": 9,
                          "entities": 0}}
    monkeypatch.setattr(aws.s3(), "get_object", failing_with("SlowDown", "GetObject"))
    with pytest.raises(RetryableError) as raised:
        handler.train(state, lambda_context)
    assert type(raised.value) is RetryableError  # the state machine retries this exact name
