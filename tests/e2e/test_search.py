"""End to end on the local cloud, seen with plain boto3 (an AWS client that is not ours): a spec with a small
search space trains through the inline Map, each trial a child run of the upload's run, a refused candidate
FAILED with its reason while the search succeeds; and a spec with `backend: sagemaker` trains in a SageMaker
training job through the `.sync` integration, the same entry point run in-process by the local cloud."""

import json

import pytest

from tests.e2e.conftest import SPEC, csv_bytes, register_spec, upload, wait_for

pytestmark = pytest.mark.e2e

# 4 trials: two random forests, two logistic regressions, one of them with a penalty lbfgs refuses.
SEARCH = {"strategy": "grid", "cv_folds": 2, "estimators": [
    {"name": "random_forest", "params": {"n_estimators": [10], "max_depth": [2, 4]}},
    {"name": "logistic_regression", "params": {"penalty": ["l2", "l1"], "max_iter": 300}}]}


@pytest.fixture(scope="module")
def runs(local_cloud, aws) -> dict:
    """Both uploads at once (they train side by side), then both executions once they have ended."""
    searched = {key: value for key, value in SPEC.items() if key != "estimator"} | {"search": SEARCH}
    register_spec(aws, local_cloud, "churn-search", searched)
    register_spec(aws, local_cloud, "churn-sagemaker", {**SPEC, "backend": "sagemaker"})
    started = {name: upload(aws, local_cloud, f"datasets/{name}/train.csv", csv_bytes(200, seed=5))
               for name in ("churn-search", "churn-sagemaker")}
    return {name: wait_for(aws, execution) for name, execution in started.items()}


def run_items(aws, outputs, model: str) -> list[dict]:
    found = aws("dynamodb").query(
        TableName=outputs["RegistryTableName"], KeyConditionExpression="pk = :pk AND begins_with(sk, :runs)",
        ExpressionAttributeValues={":pk": {"S": f"MODEL#{model}"}, ":runs": {"S": "RUN#"}}, ConsistentRead=True)
    return found["Items"]


def test_a_search_runs_its_trials_as_child_runs_and_trains_the_best(runs, aws, local_cloud):
    execution = runs["churn-search"]
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    output = json.loads(execution["output"])
    assert output["plan"]["search"] == "inline" and output["plan"]["trials"] == 4
    items = run_items(aws, local_cloud, "churn-search")
    children = {int(i["trial"]["N"]): i for i in items if i.get("parent_run_id", {}).get("S") == execution["run_id"]}
    assert sorted(children) == [0, 1, 2, 3]
    refused = children[3]
    assert refused["status"]["S"] == "FAILED" and "l1" in refused["failure_reason"]["S"]
    for trial in (0, 1, 2):
        child = children[trial]
        assert child["status"]["S"] == "SUCCEEDED" and len(json.loads(child["fold_metrics"]["S"])) == 2
        assert "roc_auc" in child["metrics"]["M"]
    best = output["search"]["best"]
    assert output["search"]["failed"] == 1 and best["index"] in (0, 1, 2)
    (parent,) = [i for i in items if i["run_id"]["S"] == execution["run_id"]]
    assert parent["status"]["S"] == "SUCCEEDED" and output["training"]["estimator"] == best["estimator"]
    # The Step Functions history shows the inline Map's iterations (one per trial).
    history = aws("stepfunctions").get_execution_history(executionArn=execution["executionArn"], maxResults=1000)
    assert sum(e["type"] == "MapIterationSucceeded" for e in history["events"]) == 4


def test_a_sagemaker_backend_trains_in_a_training_job_through_the_sync_task(runs, aws, local_cloud):
    execution = runs["churn-sagemaker"]
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    output = json.loads(execution["output"])
    job = output["training_job"]
    assert output["plan"]["backend"] == "sagemaker" and job["status"] == "Completed"
    described = aws("sagemaker").describe_training_job(TrainingJobName=job["job_name"])
    assert described["TrainingJobStatus"] == "Completed"
    assert described["HyperParameters"]["sagemaker_program"] == '"train_entry.py"'
    bucket, _, key = job["model_artifacts"].removeprefix("s3://").partition("/")
    assert key.startswith(f"runs/churn-sagemaker/{execution['run_id']}/sagemaker/")
    assert aws("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    assert output["training"]["backend"] == "sagemaker" and output["training"]["job_name"] == job["job_name"]
    assert output["run"]["status"] == "SUCCEEDED" and output["run"]["model_version"] == 1
