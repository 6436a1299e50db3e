"""The training pipeline's handlers under moto: the upload trigger, a whole run, failures recorded."""

import json

import pytest

from functions.data.handler import register_dataset, validate_dataset
from functions.errors import DatasetInvalid, IntegrityError, InvalidInput, RetryableError
from functions.features.handler import build_features
from functions.registry.store import registry_store
from functions.training import handler
from functions.training.runs import run_id_for
from tests.conftest import failing_with
from tests.training.helpers import run_pipeline, upload_state


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
    assert run["status"] == "RUNNING" and run["version_id"] == "v-1" and run["code_version"] == "test-1"
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


@pytest.mark.parametrize("key", ["datasets/churn/", "datasets/file.csv", "other/churn/x.csv",
                                 "datasets/Not_A_Model/x.csv", "datasets/churn/sub/x.csv"])
def test_keys_outside_datasets_model_file_are_ignored(key, pipeline_aws, lambda_context):
    result = handler.start_pipeline(s3_event(pipeline_aws.bucket, key), lambda_context)
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
    assert state["registration"] == {"version": 1, "onnx": True, "format": "onnx"}
    assert state["promotion"]["promoted"] is True and state["promotion"]["previous"] is None
    run = registry_store().get_run("churn", state["run_id"])
    assert run["status"] == "SUCCEEDED" and run["model_version"] == 1 and run["promoted"] is True
    assert run["metrics"] == metrics and run["dataset_id"] == state["dataset"]["dataset_id"]
    version = registry_store().get_version("churn", 1)
    assert version["run_id"] == state["run_id"] and version["packages"]["scikit-learn"]
    assert version["code_version"] == "test-1" and version["signature"][3] == {"name": "plan", "type": "categorical"}
    keys = {o["Key"] for o in pipeline_aws.s3.list_objects_v2(Bucket=pipeline_aws.bucket)["Contents"]}
    prefix = f"runs/churn/{state['run_id']}/"
    assert {prefix + n for n in ["validation.json", "features.parquet", "train.parquet", "holdout.parquet",
                                 "model.skops"]} <= keys
    assert {"models/churn/v1/model.onnx", "models/churn/v1/model.skops"} <= keys


def test_a_bad_dataset_fails_its_run_and_never_touches_the_champion(pipeline_aws, churn_spec, churn_rows,
                                                                     lambda_context):
    registry_store().put_spec(churn_spec)
    good = run_pipeline(upload_state(pipeline_aws, "churn", "a.csv", churn_rows.to_csv(index=False).encode()),
                        lambda_context)
    audit_before = registry_store().audit_trail("churn")

    bad = run_pipeline(upload_state(pipeline_aws, "churn", "b.csv", b"a,b,c\n1,2,3\n"), lambda_context)

    assert isinstance(bad["raised"], DatasetInvalid)
    run = registry_store().get_run("churn", bad["run_id"])
    assert run["status"] == "FAILED" and run["failed_step"] == "ValidateDataset"
    assert "the target column 'churned' is missing" in run["failure_reason"]
    assert registry_store().get_alias("churn") == good["registration"]["version"] == 1
    assert len(registry_store().list_versions("churn")) == 1
    assert registry_store().audit_trail("churn") == audit_before


def test_a_retrain_on_the_same_data_is_registered_but_does_not_replace_an_equal_champion(
        pipeline_aws, churn_spec, churn_rows, lambda_context):
    registry_store().put_spec(churn_spec)
    body = churn_rows.to_csv(index=False).encode()
    run_pipeline(upload_state(pipeline_aws, "churn", "a.csv", body), lambda_context)
    again = run_pipeline(upload_state(pipeline_aws, "churn", "again.csv", body), lambda_context)
    assert again["registration"]["version"] == 2
    assert again["promotion"]["promoted"] is False and "does not beat the champion v1" in again["promotion"]["reason"]
    assert registry_store().get_alias("churn") == 1 and registry_store().get_alias("churn", "challenger") == 2
    assert registry_store().get_run("churn", again["run_id"])["promoted"] is False


def test_a_model_that_beats_the_champion_on_its_holdout_replaces_it(pipeline_aws, churn_spec, churn_rows,
                                                                    lambda_context):
    registry_store().put_spec(churn_spec)
    noise = churn_rows.assign(churned=churn_rows["churned"].sample(frac=1, random_state=3).to_numpy())
    first = run_pipeline(upload_state(pipeline_aws, "churn", "noise.csv", noise.to_csv(index=False).encode()),
                         lambda_context)
    assert first["promotion"]["promoted"] is True
    second = run_pipeline(upload_state(pipeline_aws, "churn", "real.csv", churn_rows.to_csv(index=False).encode()),
                          lambda_context)
    promotion = second["promotion"]
    assert promotion["promoted"] is True and promotion["previous"] == 1 and promotion["champion"] == 2
    assert promotion["score"] > promotion["champion_score"]
    trail = registry_store().audit_trail("churn")
    assert [(a["version"], a["from_version"]) for a in trail] == [(1, None), (2, 1)]


@pytest.mark.parametrize(
    "error, expected",
    [
        ({"Error": "DatasetInvalid", "Cause": json.dumps({"errorType": "DatasetInvalid", "errorMessage": "bad file"})},
         "bad file"),
        ({"Error": "UnknownModel", "Cause": json.dumps({"errorType": "UnknownModel", "errorMessage": "no model spec"})},
         "no model spec"),
        ({"Error": "KeyError", "Cause": json.dumps({"errorType": "KeyError", "errorMessage": "'secret' at line 3"})},
         "internal error in the pipeline; see the logs of run churn-1"),
        ({"Error": "States.Timeout", "Cause": "timed out"}, "step Train timed out"),
        ({"Error": "Lambda.Unknown", "Cause": "not json at all"}, "internal error in the pipeline"),
        (None, "internal error in the pipeline"),
    ],
)
def test_record_failure_keeps_domain_messages_and_hides_internal_ones(error, expected, pipeline_aws, lambda_context):
    registry_store().start_run("churn", "churn-1", bucket="b", key="k", version_id=None, code_version="x")
    state = {"run_id": "churn-1", "model": "churn", "bucket": pipeline_aws.bucket, "key": "datasets/churn/x.csv",
             "dataset": {"dataset_id": "d"}, "validation": {}, "features": {}, "error": error}
    result = handler.record_failure(state, lambda_context)
    run = registry_store().get_run("churn", "churn-1")
    assert run["status"] == "FAILED" and expected in run["failure_reason"] and result["failure_reason"] == run["failure_reason"]
    assert "secret" not in run["failure_reason"] and run["failed_step"] == "Train" and run["ended_at"]


def test_train_refuses_a_state_without_features(pipeline_aws, churn_spec, lambda_context):
    registry_store().put_spec(churn_spec)
    state = {"run_id": "r", "model": "churn", "bucket": pipeline_aws.bucket, "key": "datasets/churn/x.csv",
             "dataset": {"dataset_id": "d"}}
    with pytest.raises(InvalidInput, match="no 'features' result"):
        handler.train(state, lambda_context)


def test_a_tampered_run_model_is_refused_at_evaluation(pipeline_aws, churn_spec, churn_rows, lambda_context):
    registry_store().put_spec(churn_spec)
    state = upload_state(pipeline_aws, "churn", "a.csv", churn_rows.to_csv(index=False).encode())
    state["dataset"] = register_dataset(state, lambda_context)
    state["validation"] = validate_dataset(state, lambda_context)
    state["features"] = build_features(state, lambda_context)
    state["training"] = handler.train(state, lambda_context)
    pipeline_aws.s3.put_object(Bucket=pipeline_aws.bucket, Key=state["training"]["model_key"], Body=b"evil")
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        handler.evaluate(state, lambda_context)
