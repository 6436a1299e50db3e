"""Batch inference on the local cloud: a file put under batch/<model>/ with plain boto3 is scored by the batch
state machine (its Distributed Map), and its answers are the predict API's for the same rows."""

import io
import json
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import batch as batch_cli
from cli.demo_data import churn_frame
from cli.main import app
from functions.batch.jobs import ERROR_REPORT, SUCCESS, job_id_for, output_prefix
from tests.background import background
from tests.e2e.conftest import SPEC, register_spec

pytestmark = pytest.mark.e2e
FEATURES = [feature["name"] for feature in SPEC["features"]]


def submit(aws, outputs, key: str, body: bytes, timeout: float = 180) -> dict:
    """Upload with plain boto3; the job's execution once it has ended, its manifest or error report."""
    bucket = outputs["DataBucketName"]
    started = time.perf_counter()
    version = aws("s3").put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]
    model = key.split("/")[1]
    job_id = job_id_for(model, bucket, key, version)
    arn = outputs["BatchStateMachineArn"].replace(":stateMachine:", ":execution:") + f":{job_id}"
    sfn = aws("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            execution = sfn.describe_execution(executionArn=arn)
            if execution["status"] != "RUNNING":
                break
        except sfn.exceptions.ExecutionDoesNotExist:
            pass
        time.sleep(0.1)
    else:
        pytest.fail(f"batch job {job_id} did not finish in {timeout} s")
    prefix = output_prefix(model, key, job_id)
    listed = aws("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {"job_id": job_id, "prefix": prefix, "execution": execution, "keys": [o["Key"] for o in listed],
            "seconds": time.perf_counter() - started}


def read_json(aws, outputs, key: str) -> dict:
    return json.loads(aws("s3").get_object(Bucket=outputs["DataBucketName"], Key=key)["Body"].read())


def test_a_batch_file_is_scored_as_the_predict_api_scores_its_rows(trained_model, aws, api, local_cloud):
    rows = churn_frame(rows=150, seed=21)
    job = submit(aws, local_cloud, f"batch/{trained_model}/customers.csv", rows.to_csv(index=False).encode())

    assert job["execution"]["status"] == "SUCCEEDED", job["execution"].get("cause")
    # The end-to-end time on the local cloud, from the upload to the job's end (a figure, not an assertion).
    print(f"[batch e2e] 150 rows: upload to _SUCCESS in {job['seconds']:.2f} s", file=sys.stderr)
    manifest = read_json(aws, local_cloud, job["prefix"] + SUCCESS)
    assert manifest["rows"] == 150 and manifest["model"] == trained_model
    tables = [pq.read_table(io.BytesIO(aws("s3").get_object(Bucket=local_cloud["DataBucketName"],
                                                            Key=part["key"])["Body"].read()))
              for part in manifest["parts"]]
    scored = pd.concat([t.to_pandas() for t in tables], ignore_index=True)

    answer = api("POST", f"/v1/models/{trained_model}/predict",
                 json={"instances": json.loads(rows[FEATURES].to_json(orient="records"))}).json()
    assert scored["prediction"].tolist() == answer["predictions"]
    assert [list(p) for p in scored["probabilities"]] == answer["probabilities"]
    assert set(scored["version"]) == {answer["version"]} == {manifest["version"]}
    assert scored["request_id"].tolist() == [f"{job['job_id']}:{i}" for i in range(150)]
    # The map run's results were written beside the job (the Distributed Map's ResultWriter).
    assert any("/_map/" in key and key.endswith("manifest.json") for key in job["keys"]), job["keys"]


@pytest.mark.parametrize("name, body, reason", [
    ("notes.txt", b"just some text\n", "neither a .csv nor a .parquet"),
    ("empty.csv", b"", "is empty"),
    ("columns.csv", b"tenure_months,plan\n3,basic\n", "lacks the model's feature column(s)"),
    ("types.csv", b"tenure_months,monthly_charges,support_calls,plan\nthree,90,4,basic\n", "must hold numbers"),
])
def test_bad_files_fail_their_job_with_a_readable_cause_and_a_report(trained_model, aws, local_cloud, name, body,
                                                                       reason):
    job = submit(aws, local_cloud, f"batch/{trained_model}/{name}", body)

    execution = job["execution"]
    assert execution["status"] == "FAILED" and reason in execution["cause"], execution.get("cause")
    report = read_json(aws, local_cloud, job["prefix"] + ERROR_REPORT)
    assert report["status"] == "FAILED" and report["reason"] == execution["cause"]
    assert not any(key.endswith(SUCCESS) or key.endswith(".parquet") and "/_" not in key for key in job["keys"])


def test_a_model_without_a_champion_fails_the_job(aws, local_cloud):
    register_spec(aws, local_cloud, "batch-untrained")
    job = submit(aws, local_cloud, "batch/batch-untrained/x.csv", churn_frame(rows=5, seed=1).to_csv().encode())
    assert job["execution"]["status"] == "FAILED"
    assert "model 'batch-untrained' has no champion yet" in job["execution"]["cause"]


def test_mlops_batch_submit_and_status(trained_model, local_cloud, tmp_path, monkeypatch):
    monkeypatch.chdir(local_cloud["workdir"])
    monkeypatch.setenv("MLOPS_HOME", str(background.cloud_home))
    monkeypatch.setattr(batch_cli.console, "width", 200)
    data = tmp_path / "to-score.parquet"
    churn_frame(rows=40, seed=5)[FEATURES].to_parquet(data, index=False)
    runner = CliRunner()

    submitted = runner.invoke(app, ["batch", "submit", trained_model, str(data)])
    assert submitted.exit_code == 0, submitted.output
    assert "SUCCEEDED" in submitted.output and "40 rows in 1 part(s)" in submitted.output
    job_id = submitted.output.split("batch job ")[1].split()[0]

    listed = runner.invoke(app, ["batch", "status", trained_model])
    assert listed.exit_code == 0 and job_id in listed.output
    shown = runner.invoke(app, ["batch", "status", trained_model, job_id])
    assert shown.exit_code == 0 and "SUCCEEDED" in shown.output and "part-*.parquet" in shown.output

    bad = tmp_path / "bad.csv"
    bad.write_text("tenure_months\n1\n")
    failed = runner.invoke(app, ["batch", "submit", trained_model, str(bad)])
    assert failed.exit_code == 1 and "FAILED" in failed.output and "lacks the model's feature" in failed.output
    wrong = runner.invoke(app, ["batch", "submit", trained_model, str(tmp_path)])
    assert wrong.exit_code == 1 and "is not a file" in wrong.output
