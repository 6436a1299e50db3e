"""The data steps of the pipeline under moto."""

import json

import pytest

from functions.data.handler import register_dataset, validate_dataset
from functions.data.store import DatasetStore
from functions.errors import DatasetInvalid, InvalidInput, UnknownModel
from functions.registry.store import registry_store
from functions.storage import sha256
from tests.training.helpers import upload_state


def test_an_unknown_model_fails_with_the_way_to_create_it(pipeline_aws, churn_rows, lambda_context):
    state = upload_state(pipeline_aws, "nobody", "data.csv", churn_rows.to_csv(index=False).encode())
    with pytest.raises(UnknownModel) as caught:
        register_dataset(state, lambda_context)
    assert caught.value.message == (
        "no model spec named 'nobody' is registered; create it with `mlops models create nobody --spec FILE`"
    )


def test_registers_exactly_the_uploaded_version_once_per_content(pipeline_aws, churn_spec, churn_rows, lambda_context):
    registry_store().put_spec(churn_spec)
    first = churn_rows.to_csv(index=False).encode()
    state = upload_state(pipeline_aws, "churn", "train.csv", first)
    pipeline_aws.upload("datasets/churn/train.csv", b"overwritten,later\n1,2\n")  # a newer version of the key

    result = register_dataset(state, lambda_context)

    assert result["dataset_id"] == sha256(first) and result["rows"] == len(churn_rows)
    assert result["columns"]["plan"] in {"str", "object"} and result["spec"]["name"] == "churn"
    again = upload_state(pipeline_aws, "churn", "copy.csv", first)
    assert register_dataset(again, lambda_context)["dataset_id"] == result["dataset_id"]
    (dataset,) = DatasetStore(pipeline_aws.tables["datasets"]).list_datasets("churn")
    assert dataset["runs"] == sorted([state["run_id"], again["run_id"]])
    assert dataset["version_id"] == state["version_id"]
    assert len(dataset["profile"]["columns"]["tenure_months"]["quantiles"]) == 101
    assert registry_store().get_run("churn", state["run_id"])["dataset_id"] == result["dataset_id"]


def test_an_unreadable_upload_is_not_a_dataset_version(pipeline_aws, churn_spec, lambda_context):
    registry_store().put_spec(churn_spec)
    state = upload_state(pipeline_aws, "churn", "bad.csv", b'a,"b\n')
    result = register_dataset(state, lambda_context)
    assert result["readable"] is False and result["rows"] == 0
    assert DatasetStore(pipeline_aws.tables["datasets"]).list_datasets("churn") == []


def test_validate_passes_a_good_dataset(pipeline_aws, churn_spec, churn_rows, lambda_context):
    registry_store().put_spec(churn_spec)
    state = upload_state(pipeline_aws, "churn", "train.csv", churn_rows.to_csv(index=False).encode())
    state["dataset"] = register_dataset(state, lambda_context)
    result = validate_dataset(state, lambda_context)
    assert result["passed"] is True
    stored = pipeline_aws.s3.get_object(Bucket=pipeline_aws.bucket, Key=result["report_key"])
    assert json.loads(stored["Body"].read())["passed"] is True


def test_validate_fails_a_bad_dataset_with_its_report(pipeline_aws, churn_spec, churn_rows, lambda_context):
    registry_store().put_spec(churn_spec)
    bad = churn_rows.drop(columns=["plan"]).astype({"support_calls": object})
    bad.loc[0, "support_calls"] = "many"
    state = upload_state(pipeline_aws, "churn", "bad.csv", bad.to_csv(index=False).encode())
    state["dataset"] = register_dataset(state, lambda_context)
    with pytest.raises(DatasetInvalid) as caught:
        validate_dataset(state, lambda_context)
    assert "missing feature column(s): plan" in caught.value.message
    assert "'support_calls' should be numeric" in caught.value.message
    report = f"runs/churn/{state['run_id']}/validation.json"
    assert json.loads(pipeline_aws.s3.get_object(Bucket=pipeline_aws.bucket, Key=report)["Body"].read())["problems"]


@pytest.mark.parametrize("event", [{}, {"run_id": "r", "model": "Bad Name!", "bucket": "bkt", "key": "k"}, "nope", None])
def test_a_malformed_state_is_invalid_input(event, pipeline_aws, lambda_context):
    with pytest.raises(InvalidInput, match="pipeline state is malformed"):
        register_dataset(event, lambda_context)
