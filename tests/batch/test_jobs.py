"""Batch inference's domain: plan, score the parts, complete or fail, over the in-memory stores.

The job is run here as the batch state machine runs it (plan, one score per item of the plan's
items file, complete; any error -> record_failure), so each outcome is what a user finds in S3.
"""

import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from functions.batch import jobs
from functions.errors import DatasetInvalid, MlopsError, NoChampion, RequestInvalid, UnknownModel
from functions.serving.model_cache import ModelCache
from functions.serving.predict import predict, predict_columns

MAX_BYTES = 1_000_000


def run_job(stores, key: str, data: bytes, *, rows_per_part: int = 70, max_bytes: int = MAX_BYTES,
            predict_rows=predict_columns) -> tuple[jobs.BatchJob, jobs.BatchResult | None, dict | None]:
    """(job, result or None, failure record or None), as the state machine would leave them."""
    version_id = stores.objects.put(key, data)
    started = jobs.start_job(stores.executions, bucket=stores.objects.bucket, key=key, version_id=version_id)
    job = jobs.BatchJob.model_validate(stores.executions.started[started["job_id"]])
    try:
        plan = jobs.plan_job(stores.objects, stores.registry, job, max_bytes=max_bytes, rows_per_part=rows_per_part)
        loaded = jobs.VersionCache().get(stores.registry, stores.objects, plan.model, plan.version)
        for item in stores.objects.get_json(plan.items_key):
            jobs.score_part(stores.objects, loaded, job.job_id, plan.output_prefix, jobs.Part.model_validate(item),
                            predict_rows)
        return job, jobs.complete_job(stores.objects, plan), None
    except MlopsError as error:
        cause = json.dumps({"errorType": type(error).__name__, "errorMessage": error.message})
        return job, None, jobs.record_failure(stores.objects, job, {"Error": type(error).__name__, "Cause": cause})


def output(stores, result: jobs.BatchResult) -> pd.DataFrame:
    manifest = stores.objects.get_json(result.manifest_key)
    tables = [pq.read_table(io.BytesIO(stores.objects.get_bytes(part["key"]))) for part in manifest["parts"]]
    return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def online(stores, model: str, rows: pd.DataFrame, features: list[str]):
    """What the predict API answers for the same rows (its champion through ModelCache, then predict)."""
    loaded = ModelCache().champion(stores.registry, stores.objects, model, ttl_seconds=30)
    return predict(loaded, json.loads(rows[features].to_json(orient="records")))


def csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def assert_failed(stores, job, failure, match: str) -> None:
    assert failure is not None, "the job should have failed"
    assert match in failure["reason"], failure["reason"]
    prefix = jobs.output_prefix(job.model, job.key, job.job_id)
    report = stores.objects.get_json(f"{prefix}{jobs.ERROR_REPORT}")
    assert report["status"] == "FAILED" and report["reason"] == failure["reason"]
    assert report["input"] == {"key": job.key, "version_id": job.version_id}
    assert not stores.objects.keys(f"{prefix}{jobs.SUCCESS}"), "a failed job never has a _SUCCESS"


# --- the answers are the predict API's --------------------------------------------------------------


@pytest.mark.parametrize("encode, name", [(csv, "customers.csv"), (parquet, "customers.parquet")])
def test_a_batch_file_is_scored_as_the_predict_api_scores_the_same_rows(churn_champion, stores, churn_rows,
                                                                        encode, name):
    features = churn_champion.spec.feature_names
    job, result, failure = run_job(stores, f"batch/churn/{name}", encode(churn_rows))

    assert failure is None and result is not None
    assert (result.rows, result.parts, result.version) == (200, 3, 1)
    scored = output(stores, result)
    expected = online(stores, "churn", churn_rows, features)
    assert scored["prediction"].tolist() == expected.predictions
    assert [list(p) for p in scored["probabilities"]] == expected.probabilities
    assert scored["row"].tolist() == list(range(200))
    assert scored["request_id"].tolist() == [f"{job.job_id}:{i}" for i in range(200)]
    assert set(scored["version"]) == {1} and set(scored["model"].astype(str)) == {"churn"}
    assert result.output_prefix == f"batch-output/churn/{name}/{job.job_id}/"


def test_the_manifest_is_written_last_and_lists_every_part(churn_champion, stores, churn_rows):
    _, result, _ = run_job(stores, "batch/churn/c.csv", csv(churn_rows))
    written = [key for key in stores.objects.versions if key.startswith(result.output_prefix)]
    assert written[-1] == result.manifest_key  # dicts keep insertion order: the last object written
    manifest = stores.objects.get_json(result.manifest_key)
    assert manifest["status"] == "SUCCEEDED" and manifest["rows"] == 200 and manifest["classes"] == [0, 1]
    assert [p["rows"] for p in manifest["parts"]] == [70, 70, 60]
    for part in manifest["parts"]:
        assert jobs.sha256(stores.objects.get_bytes(part["key"])) == part["sha256"]


def test_a_categorical_column_of_digits_in_a_csv_is_text_as_in_json(churn_champion, stores, churn_rows):
    rows = churn_rows.head(10).copy()
    _, result, failure = run_job(stores, "batch/churn/digits.csv", csv(rows.assign(plan=range(10))))
    assert failure is None
    expected = online(stores, "churn", rows.assign(plan=[str(i) for i in range(10)]), churn_champion.spec.feature_names)
    assert output(stores, result)["prediction"].tolist() == expected.predictions


def test_the_champion_is_pinned_when_the_job_is_planned(churn_champion, stores, churn_rows):
    key = "batch/churn/pinned.csv"
    version_id = stores.objects.put(key, csv(churn_rows))
    job = jobs.BatchJob(job_id="churn-pinned", model="churn", bucket=stores.objects.bucket, key=key,
                        version_id=version_id)
    plan = jobs.plan_job(stores.objects, stores.registry, job, max_bytes=MAX_BYTES, rows_per_part=100)
    assert plan.version == 1
    stores.registry.aliases = {}  # the champion goes after the plan: scoring and completing need no champion
    loaded = jobs.VersionCache().get(stores.registry, stores.objects, plan.model, plan.version)
    for item in stores.objects.get_json(plan.items_key):
        jobs.score_part(stores.objects, loaded, job.job_id, plan.output_prefix, jobs.Part.model_validate(item))
    result = jobs.complete_job(stores.objects, plan)
    assert set(output(stores, result)["version"]) == {1} and len(output(stores, result)) == len(churn_rows)


# --- starting: one job per object version ---------------------------------------------------------


def test_a_job_is_named_after_the_object_version_and_started_once(stores):
    first = jobs.start_job(stores.executions, bucket="b", key="batch/churn/x.csv", version_id="v1")
    again = jobs.start_job(stores.executions, bucket="b", key="batch/churn/x.csv", version_id="v1")
    other = jobs.start_job(stores.executions, bucket="b", key="batch/churn/x.csv", version_id="v2")
    assert first["started"] and not again["started"] and other["started"]
    assert first["job_id"] == again["job_id"] == jobs.job_id_for("churn", "b", "batch/churn/x.csv", "v1")
    assert other["job_id"] != first["job_id"] and first["job_id"].startswith("churn-") and len(first["job_id"]) <= 80


@pytest.mark.parametrize("key", ["batch/churn/", "batch/x.csv", "batch/churn/sub/x.csv", "batch/Churn!/x.csv",
                                 "datasets/churn/x.csv", "batch-output/churn/x.csv/j/part-00000.parquet"])
def test_keys_outside_batch_model_file_start_nothing(stores, key):
    assert jobs.start_job(stores.executions, bucket="b", key=key, version_id="v1")["started"] is False
    assert stores.executions.started == {}


# --- bad input: the job fails with a readable reason, an error report, and no _SUCCESS ------------------


@pytest.mark.parametrize("name, data, match", [
    ("notes.txt", b"tenure_months,monthly_charges\n1,2\n", "neither a .csv nor a .parquet"),
    ("empty.csv", b"", "is empty"),
    ("header.csv", b"tenure_months,monthly_charges,support_calls,plan\n", "no rows"),
    ("broken.parquet", b"PAR1 this is not parquet", "not a readable Parquet file"),
    ("binary.csv", b"\xff\xfe\x00\x01garbage", "not a UTF-8 text CSV"),
])
def test_unreadable_files_fail_the_job(churn_champion, stores, name, data, match):
    job, result, failure = run_job(stores, f"batch/churn/{name}", data)
    assert result is None
    assert_failed(stores, job, failure, match)


def test_missing_columns_are_named(churn_champion, stores, churn_rows):
    job, _, failure = run_job(stores, "batch/churn/m.csv", csv(churn_rows.drop(columns=["plan", "support_calls"])))
    assert_failed(stores, job, failure, "lacks the model's feature column(s) 'support_calls', 'plan'")


def test_wrong_types_and_empty_cells_name_column_and_rows(churn_champion, stores, churn_rows):
    rows = churn_rows.head(20).astype({"tenure_months": object})
    rows.loc[3, "tenure_months"] = "three"
    rows.loc[[5, 6], "monthly_charges"] = None
    job, _, failure = run_job(stores, "batch/churn/t.csv", csv(rows))
    assert_failed(stores, job, failure,
                  "column 'tenure_months' must hold numbers, not text or booleans, at row 3 (row 3: 'three')")
    assert "column 'monthly_charges' has empty cells at rows 5, 6" in failure["reason"]


def test_values_beyond_the_models_range_are_refused_as_online(churn_champion, stores, churn_rows):
    rows = churn_rows.head(5).copy()
    rows.loc[2, "monthly_charges"] = 1e300
    job, _, failure = run_job(stores, "batch/churn/big.parquet", parquet(rows))
    assert_failed(stores, job, failure, "column 'monthly_charges' holds values that are infinite or beyond")


def test_booleans_are_not_numbers(churn_champion, stores, churn_rows):
    rows = churn_rows.head(5).assign(support_calls=[True, False, True, True, False])
    job, _, failure = run_job(stores, "batch/churn/b.parquet", parquet(rows))
    assert_failed(stores, job, failure, "column 'support_calls' must hold numbers")


def test_an_oversized_file_is_refused_before_it_is_read(churn_champion, stores, churn_rows):
    job, _, failure = run_job(stores, "batch/churn/huge.csv", csv(churn_rows), max_bytes=100)
    assert_failed(stores, job, failure, "more than the 100 a batch job takes")


def test_a_model_without_a_champion_or_unknown_fails_the_job(churn_champion, stores, churn_rows):
    stores.registry.aliases = {}
    job, _, failure = run_job(stores, "batch/churn/c.csv", csv(churn_rows))
    assert_failed(stores, job, failure, "model 'churn' has no champion yet")
    job, _, failure = run_job(stores, "batch/nosuch/c.csv", csv(churn_rows))
    assert_failed(stores, job, failure, "nosuch")


def test_a_part_the_model_refuses_fails_the_job_naming_the_row(churn_champion, stores, churn_rows):
    def refusing(loaded, columns):
        if columns["tenure_months"][0] == churn_rows["tenure_months"].iloc[70]:  # the second part
            raise RequestInvalid("refused", details={"problems": [
                {"instance": 4, "field": "plan", "problem": "is not what the model takes"}]})
        return predict_columns(loaded, columns)

    job, result, failure = run_job(stores, "batch/churn/r.csv", csv(churn_rows), predict_rows=refusing)
    assert result is None
    assert_failed(stores, job, failure, "row 74: field 'plan' is not what the model takes")


def test_a_part_that_left_no_report_fails_the_job(churn_champion, stores, churn_rows):
    key = "batch/churn/lost.csv"
    job = jobs.BatchJob(job_id="churn-lost", model="churn", bucket=stores.objects.bucket, key=key,
                        version_id=stores.objects.put(key, csv(churn_rows)))
    plan = jobs.plan_job(stores.objects, stores.registry, job, max_bytes=MAX_BYTES, rows_per_part=100)
    with pytest.raises(DatasetInvalid, match="part 0 of batch job churn-lost was not scored"):
        jobs.complete_job(stores.objects, plan)


def test_errors_surface_by_type(churn_champion, stores, churn_rows):
    job = jobs.BatchJob(job_id="j", model="nosuch", bucket="b", key="batch/nosuch/x.csv")
    with pytest.raises(UnknownModel):
        jobs.plan_job(stores.objects, stores.registry, job, max_bytes=MAX_BYTES, rows_per_part=10)
    stores.registry.aliases = {}
    with pytest.raises(NoChampion):
        jobs.champion_record(stores.registry, "churn")


@pytest.mark.parametrize("error, expected", [
    ({"Error": "DatasetInvalid", "Cause": json.dumps({"errorType": "DatasetInvalid", "errorMessage": "bad\n rows"})},
     "bad rows"),
    ({"Error": "KeyError", "Cause": json.dumps({"errorType": "KeyError", "errorMessage": "'secret-bucket/key'"})},
     "internal error in batch job j"),
    ({"Error": "States.Timeout", "Cause": "x"}, "timed out"),
    ({"Error": "States.ExceedToleratedFailureThreshold", "Cause": "x"}, "could not be scored"),
    (None, "internal error"),
    ({"Error": "DatasetInvalid", "Cause": "not json"}, "internal error"),
])
def test_failure_reasons_carry_domain_messages_only(error, expected):
    assert expected in jobs.failure_reason(error, "j")


@pytest.mark.parametrize("predictions, probabilities", [
    (np.array(["stays", "leaves", "stays"], dtype=object), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])),
    (np.array([True, False, True]), np.array([[0.1, 0.9], [0.7, 0.3], [0.4, 0.6]])),
    (np.array([1.5, -2.0, 3e30]), None),
    (np.array([], dtype=np.int64), np.zeros((0, 2))),
])
def test_the_answers_arrays_are_written_as_typed_parquet(churn_champion, stores, predictions, probabilities):
    loaded = jobs.VersionCache().get(stores.registry, stores.objects, "churn", 1)
    table = jobs.answers_table(loaded, "churn-j", 70, predictions, probabilities)
    back = pq.read_table(io.BytesIO(jobs.parquet_bytes(table))).to_pylist()
    assert [r["request_id"] for r in back] == [f"churn-j:{70 + i}" for i in range(len(predictions))]
    assert [r["row"] for r in back] == list(range(70, 70 + len(predictions)))
    assert {r["model"] for r in back} <= {"churn"} and {r["version"] for r in back} <= {1}
    assert [r["prediction"] for r in back] == predictions.tolist()
    if probabilities is None:
        assert "probabilities" not in table.column_names
    else:
        assert [r["probabilities"] for r in back] == probabilities.tolist()
