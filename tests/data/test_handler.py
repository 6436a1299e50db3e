"""The data steps as Lambda handlers under moto: wiring to S3 and DynamoDB, and errors passed to the state machine.

What the steps decide is tested on the domain functions with in-memory stores (test_datasets.py,
test_validation.py).
"""

import pytest

from functions.data.dynamo import DynamoDatasetStore
from functions.data.handler import register_dataset, validate_dataset
from functions.errors import DatasetInvalid, InvalidInput, UnknownModel
from functions.registry.dynamo import registry_store
from functions.storage.objects import sha256
from functions.storage.s3 import S3ObjectStore
from tests.training.helpers import upload_state


def test_the_steps_register_and_validate_exactly_the_uploaded_version(pipeline_aws, churn_spec, churn_rows,
                                                                      lambda_context):
    registry_store().put_spec(churn_spec)
    first = churn_rows.to_csv(index=False).encode()
    state = upload_state(pipeline_aws, "churn", "train.csv", first)
    pipeline_aws.upload("datasets/churn/train.csv", b"overwritten,later\n1,2\n")  # a newer version of the key

    state["dataset"] = register_dataset(state, lambda_context)
    assert state["dataset"]["dataset_id"] == sha256(first) and state["dataset"]["rows"] == len(churn_rows)
    assert state["dataset"]["spec"]["name"] == "churn" and state["dataset"]["new"] is True
    again = upload_state(pipeline_aws, "churn", "copy.csv", first)
    assert register_dataset(again, lambda_context)["dataset_id"] == state["dataset"]["dataset_id"]
    (dataset,) = DynamoDatasetStore(pipeline_aws.tables["datasets"]).list_datasets("churn")
    assert dataset.runs == {state["run_id"], again["run_id"]} and dataset.version_id == state["version_id"]
    assert len(dataset.profile["columns"]["tenure_months"]["quantiles"]) == 101
    assert registry_store().get_run("churn", state["run_id"]).dataset_id == dataset.dataset_id

    result = validate_dataset(state, lambda_context)
    assert result["passed"] is True and result["report_key"] == f"runs/churn/{state['run_id']}/validation.json"
    assert S3ObjectStore(pipeline_aws.s3, pipeline_aws.bucket).get_json(result["report_key"])["passed"] is True


def test_domain_errors_fail_the_step_for_the_state_machine_to_catch(pipeline_aws, churn_spec, churn_rows,
                                                                     lambda_context):
    unknown = upload_state(pipeline_aws, "nobody", "data.csv", churn_rows.to_csv(index=False).encode())
    with pytest.raises(UnknownModel, match="mlops models create nobody"):
        register_dataset(unknown, lambda_context)

    registry_store().put_spec(churn_spec)
    bad = churn_rows.drop(columns=["plan"]).astype({"support_calls": object})
    bad.loc[0, "support_calls"] = "many"
    state = upload_state(pipeline_aws, "churn", "bad.csv", bad.to_csv(index=False).encode())
    with pytest.raises(InvalidInput, match="uploads are read from the data bucket"):
        register_dataset({**state, "bucket": "someone-elses"}, lambda_context)
    state["dataset"] = register_dataset(state, lambda_context)
    with pytest.raises(DatasetInvalid) as caught:
        validate_dataset(state, lambda_context)
    assert "missing feature column(s): plan" in caught.value.message
    assert "'support_calls' should be numeric" in caught.value.message
    report = S3ObjectStore(pipeline_aws.s3, pipeline_aws.bucket).get_json(caught.value.details["report_key"])
    assert report["passed"] is False and report["problems"] == caught.value.details["problems"]


# Refused before any storage is touched: no moto needed.
@pytest.mark.parametrize("event", [
    {}, {"run_id": "r", "model": "Bad Name!", "bucket": "bkt", "key": "k"}, "nope", None,
])
def test_a_malformed_state_is_invalid_input(event, lambda_context):
    with pytest.raises(InvalidInput, match="pipeline state is malformed"):
        register_dataset(event, lambda_context)



def test_the_step_finds_an_identical_run_and_reads_a_retrain_from_the_uploads_metadata(pipeline_aws, churn_spec,
                                                                                        churn_rows, lambda_context):
    from functions.records import Run
    from functions.training.start import run_id_for

    registry_store().put_spec(churn_spec)
    data = churn_rows.to_csv(index=False).encode()
    first = upload_state(pipeline_aws, "churn", "train.csv", data)
    assert register_dataset(first, lambda_context)["duplicate_of"] is None
    registry_store().update_run("churn", first["run_id"], status="SUCCEEDED", model_version=1)
    again = upload_state(pipeline_aws, "churn", "copy.csv", data)
    assert register_dataset(again, lambda_context)["duplicate_of"] == first["run_id"]

    key = "datasets/churn/copy.csv"  # as `mlops data push --retrain` uploads it
    version_id = pipeline_aws.s3.put_object(Bucket=pipeline_aws.bucket, Key=key, Body=data,
                                            Metadata={"retrain": "true"})["VersionId"]
    retrain = {"run_id": run_id_for("churn", pipeline_aws.bucket, key, version_id), "model": "churn",
               "bucket": pipeline_aws.bucket, "key": key, "version_id": version_id}
    registry_store().start_run(Run(model="churn", run_id=retrain["run_id"], bucket=pipeline_aws.bucket, key=key,
                                   version_id=version_id, code_version="test-1"))
    result = register_dataset(retrain, lambda_context)
    assert result["retrain"] is True and result["duplicate_of"] is None
    assert registry_store().get_run("churn", retrain["run_id"]).retrain is True
