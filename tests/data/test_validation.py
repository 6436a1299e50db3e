"""The data contract: every problem reported at once, the report stored before the run fails."""

import re

import numpy as np
import pandas as pd
import pytest

from functions.data.validation import MIN_ROWS, check_frame, validate, validate_upload
from functions.errors import DatasetInvalid, RetryableError
from functions.pipeline.state import ValidationResult
from tests.fakes import throttled


def test_a_good_frame_has_no_problems(churn_spec, churn_rows):
    problems, warnings = check_frame(churn_rows, churn_spec)
    assert problems == [] and warnings == []


def test_every_problem_is_listed(churn_spec):
    frame = pd.DataFrame({"tenure_months": ["abc", "1", None], "plan": ["a", "b", "c"]})
    problems, _ = check_frame(frame, churn_spec)
    text = " | ".join(problems)
    assert f"at least {MIN_ROWS}" in text
    assert "target column 'churned' is missing" in text
    assert "missing feature column(s): monthly_charges, support_calls" in text
    assert "entity id column 'customer_id' is missing" in text
    assert "'tenure_months' should be numeric but 1 value(s) are not numbers (e.g. 'abc')" in text


def test_hostile_values_are_quoted_briefly(churn_spec, churn_rows):
    frame = churn_rows.astype({"monthly_charges": object})
    frame.loc[3, "monthly_charges"] = "x" * 100_000
    (problem,), _ = check_frame(frame, churn_spec)
    assert "monthly_charges" in problem and len(problem) < 200


def test_target_problems(churn_spec, churn_rows):
    one_class = churn_rows.assign(churned=1)
    assert any("1 class(es)" in p for p in check_frame(one_class, churn_spec)[0])
    gaps = churn_rows.astype({"churned": float})
    gaps.loc[:4, "churned"] = np.nan
    assert any("missing in 5 row(s)" in p for p in check_frame(gaps, churn_spec)[0])
    ids = churn_rows.assign(churned=range(len(churn_rows)))
    assert any("distinct values" in p for p in check_frame(ids, churn_spec)[0])


def test_regression_targets_must_be_finite_numbers(churn_spec, churn_rows):
    spec = churn_spec.model_copy(update={"task": "regression", "metric": "rmse"})
    words = churn_rows.astype({"churned": object})
    words.loc[0, "churned"] = "lots"
    assert any("should be numeric" in p for p in check_frame(words, spec)[0])
    infinite = churn_rows.astype({"churned": float})
    infinite.loc[0, "churned"] = np.inf
    assert any("infinite" in p for p in check_frame(infinite, spec)[0])


def test_mostly_missing_features_are_a_warning_not_a_failure(churn_spec, churn_rows):
    frame = churn_rows.astype({"support_calls": float})
    frame.loc[: len(frame) * 3 // 4, "support_calls"] = np.nan
    problems, warnings = check_frame(frame, churn_spec)
    assert problems == [] and "support_calls" in warnings[0]
    frame["support_calls"] = np.nan
    assert "feature 'support_calls' has no values" in check_frame(frame, churn_spec)[0]


def test_the_report_is_stored_before_the_failure(stores, churn_spec):
    with pytest.raises(DatasetInvalid) as caught:
        validate(stores.objects, spec=churn_spec, key="datasets/churn/x.csv", version_id="v1", dataset_id="d1",
                 run_id="r1", data=b"a,b,c\n1,2,3\n")
    assert "churned" in caught.value.message and "x.csv" in caught.value.message
    report = stores.objects.get_json(caught.value.details["report_key"])
    assert report["passed"] is False and report["problems"] == caught.value.details["problems"]
    assert report["dataset"] == {"bucket": stores.objects.bucket, "key": "datasets/churn/x.csv", "version_id": "v1",
                                 "dataset_id": "d1", "rows": 1}
    assert report["contract"]["target"] == "churned" and report["contract"]["min_rows"] == MIN_ROWS


def test_an_unreadable_file_gets_a_report_too(stores, churn_spec):
    with pytest.raises(DatasetInvalid, match="empty"):
        validate(stores.objects, spec=churn_spec, key="datasets/churn/e.csv", version_id=None, dataset_id=None,
                 run_id="r2", data=b"")
    assert stores.objects.get_json("runs/churn/r2/validation.json")["dataset"]["rows"] == 0


def test_a_passing_dataset_returns_its_report(stores, churn_spec, churn_rows):
    result = validate(stores.objects, spec=churn_spec, key="datasets/churn/ok.csv", version_id=None, dataset_id="d",
                      run_id="r3", data=churn_rows.to_csv(index=False).encode())
    assert result == ValidationResult(report_key="runs/churn/r3/validation.json", passed=True, warnings=[])
    assert stores.objects.get_json(result.report_key)["passed"] is True


def test_the_uploaded_version_is_validated_not_the_latest(stores, churn_spec, churn_rows):
    key = "datasets/churn/train.csv"
    version_id = stores.objects.put(key, churn_rows.to_csv(index=False).encode())
    stores.objects.put(key, b"a,b\n1,2\n")  # a newer, bad version of the key
    result = validate_upload(stores.objects, spec=churn_spec, key=key, version_id=version_id, dataset_id="d",
                             run_id="r4")
    assert result.passed is True
    assert stores.objects.get_json(result.report_key)["dataset"]["version_id"] == version_id


def test_a_report_that_cannot_be_stored_is_retryable_not_a_bad_dataset(stores, churn_spec):
    stores.objects.faults.inject("put_bytes", throttled())
    with pytest.raises(RetryableError):
        validate(stores.objects, spec=churn_spec, key="datasets/churn/x.csv", version_id=None, dataset_id="d",
                 run_id="r5", data=b"a,b,c\n1,2,3\n")
    assert stores.objects.keys("runs/") == []


def test_infinite_targets_are_problems_for_every_task(churn_spec, churn_rows):
    # scikit-learn refuses an infinite label: it must fail validation, not training.
    labels = churn_rows.astype({"churned": float})
    labels.loc[0, "churned"] = np.inf
    assert any("1 infinite value(s)" in p for p in check_frame(labels, churn_spec)[0])
    words = churn_rows.assign(churned=churn_rows["churned"].map({0: "no", 1: "inf"}))
    assert not any("infinite" in p for p in check_frame(words, churn_spec)[0])  # a text label is a label
    regression = churn_spec.model_copy(update={"task": "regression", "metric": "rmse"})
    text = churn_rows.astype({"churned": object})
    text.loc[0, "churned"] = "-inf"
    assert any("1 infinite value(s)" in p for p in check_frame(text, regression)[0])


def test_a_nested_parquet_column_fails_validation_with_a_report(stores, churn_spec, churn_rows):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.training.helpers import run_in_memory

    table = pa.Table.from_pandas(churn_rows, preserve_index=False).replace_schema_metadata(None)
    index = table.schema.get_field_index("churned")
    table = table.set_column(index, "churned", pa.array([{"label": int(v)} for v in churn_rows["churned"]]))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    stores.registry.put_spec(churn_spec)

    state, error = run_in_memory(stores, "churn", "nested.parquet", buffer.getvalue())

    assert isinstance(error, DatasetInvalid) and state.failed_step() == "ValidateDataset"
    assert "nested column(s): 'churned' (struct<label: int64>)" in error.message
    report = stores.objects.get_json(f"runs/churn/{state.run_id}/validation.json")
    assert report["passed"] is False and "'churned' (struct<label: int64>)" in report["problems"][0]
    assert stores.registry.get_run("churn", state.run_id).status == "FAILED"


def test_infinite_and_float32_overflowing_features_are_refused_naming_column_and_count(stores, churn_spec,
                                                                                       churn_rows):
    from functions.shared.limits import MAX_NUMERIC_MAGNITUDE

    assert float(np.finfo(np.float32).max) == MAX_NUMERIC_MAGNITUDE
    rows = churn_rows.astype({"monthly_charges": float, "tenure_months": float})
    rows.loc[[0, 1], "monthly_charges"] = [np.inf, -np.inf]
    rows.loc[2, "monthly_charges"] = -1e308
    rows.loc[3, "tenure_months"] = 3.5e38
    rows.loc[4, "tenure_months"] = MAX_NUMERIC_MAGNITUDE  # the largest a served model holds is fine
    with pytest.raises(DatasetInvalid) as caught:  # as uploaded: a CSV that writes them as inf and 1e308
        validate(stores.objects, spec=churn_spec, key="datasets/churn/x.csv", version_id=None, dataset_id="d",
                 run_id="r6", data=rows.to_csv(index=False).encode())
    (charges,) = [p for p in caught.value.details["problems"] if "'monthly_charges'" in p]
    assert "feature 'monthly_charges' has 2 infinite value(s) and 1 value(s) beyond +-3.402823e+38" in charges
    (tenure,) = [p for p in caught.value.details["problems"] if "'tenure_months'" in p]
    assert "has 1 value(s) beyond" in tenure and "float32" in tenure
    regression = churn_spec.model_copy(update={"task": "regression", "metric": "rmse"})
    huge = churn_rows.astype({"churned": float})
    huge.loc[0, "churned"] = 1e300
    assert any("the target 'churned' has 1 value(s) beyond" in p for p in check_frame(huge, regression)[0])


def test_strings_longer_than_the_served_limit_are_refused_in_features_labels_and_entity_ids(churn_spec,
                                                                                           churn_rows):
    from functions.serving.predict import MAX_CATEGORY_LENGTH as SERVED
    from functions.shared.limits import MAX_CATEGORY_LENGTH

    assert SERVED == MAX_CATEGORY_LENGTH == 256  # training data is held to what the predict API accepts
    rows = churn_rows.astype({"plan": object, "customer_id": object, "churned": object})
    rows.loc[[0, 1], "plan"] = "p" * 2_000_000
    rows.loc[2, "customer_id"] = "c" * 257
    rows.loc[3, "churned"] = "x" * 300
    problems, _ = check_frame(rows, churn_spec)
    text = " | ".join(problems)
    assert "feature 'plan' has 2 value(s) longer than 256 characters (the longest 2000000)" in text
    assert "the entity id 'customer_id' has 1 value(s) longer than 256 characters" in text
    assert "the target 'churned' has 1 label(s) longer than 256 characters" in text
    assert len(text) < 1000
    rows.loc[[0, 1], "plan"] = "p" * 256
    assert not any("'plan'" in p for p in check_frame(rows, churn_spec)[0])


def test_exact_duplicate_rows_are_a_warning_with_their_share_and_refused_past_half(stores, churn_spec, churn_rows):
    from functions.data.validation import MAX_DUPLICATE_FRACTION

    some = pd.concat([churn_rows, churn_rows.head(50)], ignore_index=True)
    problems, warnings = check_frame(some, churn_spec)
    assert problems == [] and warnings == ["50 of 250 rows (20.0%) are exact duplicates of another row"]
    result = validate(stores.objects, spec=churn_spec, key="datasets/churn/d.csv", version_id=None, dataset_id="d",
                      run_id="r7", data=some.to_csv(index=False).encode())
    assert result.warnings == warnings and stores.objects.get_json(result.report_key)["warnings"] == warnings
    assert MAX_DUPLICATE_FRACTION == 0.5
    mostly = pd.concat([churn_rows] * 3, ignore_index=True)
    problems, _ = check_frame(mostly, churn_spec)
    assert problems == ["400 of 600 rows (66.7%) are exact duplicates of another row; at most 50% may be: "
                        "remove the repeated rows"]


def test_the_specs_classes_fix_the_labels_a_dataset_may_have(churn_spec, churn_rows):
    binary = churn_spec.model_copy(update={"classes": [0, 1]})
    three = churn_rows.assign(churned=[2 if i % 10 == 0 else c for i, c in enumerate(churn_rows["churned"])])
    (problem,) = check_frame(three, binary)[0]
    assert problem == "the target 'churned' has label(s) that are not among the spec's classes [0, 1]: 2 (20 rows)"
    assert check_frame(churn_rows, binary)[0] == []
    assert check_frame(churn_rows.astype({"churned": float}), binary)[0] == []  # 1.0 is the class 1
    named = churn_spec.model_copy(update={"classes": ["no", "yes", "maybe"]})
    words = churn_rows.assign(churned=churn_rows["churned"].map({0: "no", 1: "yes"}))
    (problem,) = check_frame(words, named)[0]
    assert problem.startswith("the target 'churned' has no rows of the spec's class(es) 'maybe'")


def test_a_spec_lists_distinct_classes_for_classification_only(churn_spec):
    from pydantic import ValidationError

    from functions.spec import ModelSpec

    raw = churn_spec.model_dump()
    assert ModelSpec.model_validate({**raw, "classes": ["no", "yes"]}).classes == ["no", "yes"]
    assert ModelSpec.model_validate({**raw, "classes": [0, 1]}).classes == [0, 1]
    for classes, message in [([1, 1.0], "distinct"), (["a", "a"], "distinct"), ([1], "at least 2"),
                             ([0, float("nan")], "finite")]:
        with pytest.raises(ValidationError, match=message):
            ModelSpec.model_validate({**raw, "classes": classes})
    with pytest.raises(ValidationError, match="classes are for classification"):
        ModelSpec.model_validate({**raw, "task": "regression", "metric": "rmse", "classes": [0, 1],
                                  "estimator": {"name": "linear_regression"}})


@pytest.mark.parametrize("name", ["monthly charges ($)", "plan.type", "Ölçü (ü)", "客户 id", "2024", "a" * 128,
                                  " padded ", "emoji \U0001f600"])
def test_any_readable_column_name_up_to_128_characters_is_a_valid_column(churn_spec, name):
    from functions.spec import ModelSpec

    raw = churn_spec.model_dump()
    spec = ModelSpec.model_validate({**raw, "features": [*raw["features"][:3], {"name": name, "type": "categorical"}],
                                     "target": f"{name[:100]}?", "entity_id": f"{name[:100]} id"})
    assert spec.feature_names[-1] == name and spec.target == f"{name[:100]}?"


@pytest.mark.parametrize(("name", "message"), [
    ("", "1 to 128 characters"), ("a" * 129, "1 to 128 characters, not 129"), ("   ", "only spaces"),
    ("line\nbreak", "U+000A"), ("tab\there", "U+0009"), ("nul\x00", "U+0000"), ("lone \ud800", "U+D800"),
])
def test_column_names_that_no_file_or_request_can_carry_are_refused(churn_spec, name, message):
    from pydantic import ValidationError

    from functions.spec import ModelSpec

    raw = churn_spec.model_dump()
    for changes in ({"target": name}, {"entity_id": name},
                    {"features": [*raw["features"][:3], {"name": name, "type": "numeric"}]}):
        with pytest.raises(ValidationError, match=re.escape(message)):
            ModelSpec.model_validate({**raw, **changes})


# --- the parsed upload: validation reads RegisterDataset's typed copy, never the upload


def test_validation_reads_the_runs_parsed_copy_not_the_upload(stores, churn_spec, churn_rows):
    from functions.pipeline.state import DatasetResult
    from functions.shared.tabular import frame_bytes

    key = "datasets/churn/train.csv"
    frame_key = "runs/churn/r6/dataset.parquet"
    digest = stores.objects.put_bytes(frame_key, frame_bytes(churn_rows.head(10), "train.csv"))
    dataset = DatasetResult(dataset_id="d", key=key, version_id="v1", bytes=1, spec=churn_spec, rows=10,
                            readable=True, frame_key=frame_key, frame_sha256=digest)
    stores.objects.faults.calls.clear()
    with pytest.raises(DatasetInvalid, match="the dataset has 10 row"):  # the copy's 10 rows, not an upload
        validate_upload(stores.objects, spec=churn_spec, key=key, version_id="v1", dataset_id="d", run_id="r6",
                        dataset=dataset)
    assert stores.objects.faults.calls == ["get_bytes", "put_bytes"]  # the copy, then the report
    assert stores.objects.get_json("runs/churn/r6/validation.json")["dataset"]["rows"] == 10


def test_an_unreadable_upload_is_reported_from_registrations_reason(stores, churn_spec):
    from functions.pipeline.state import DatasetResult

    dataset = DatasetResult(dataset_id="d", key="datasets/churn/bad.csv", version_id="v1", bytes=1, spec=churn_spec,
                            readable=False, unreadable="the dataset 'bad.csv' is not a readable CSV file")
    with pytest.raises(DatasetInvalid, match="^the dataset 'bad.csv' is not a readable CSV file$"):
        validate_upload(stores.objects, spec=churn_spec, key=dataset.key, version_id="v1", dataset_id="d",
                        run_id="r7", dataset=dataset)
    assert stores.objects.faults.calls == ["put_bytes"]  # nothing read: the reason came with the state
    report = stores.objects.get_json("runs/churn/r7/validation.json")
    assert report["passed"] is False and report["problems"] == ["the dataset 'bad.csv' is not a readable CSV file"]
