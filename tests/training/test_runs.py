"""Training runs on the in-memory stores: train and evaluate a run's model, record how the run ended,
and what S3 and DynamoDB faults do to them (the state machine retries a RetryableError by its name)."""

import json

import pandas as pd
import pytest

from functions.errors import DatasetInvalid, IntegrityError, NotFound, RetryableError
from functions.features.build import model_frame
from functions.pipeline.state import (
    DatasetResult,
    EvaluationResult,
    PipelineState,
    PromotionResult,
    RegistrationResult,
    TrainingResult,
)
from functions.records import Run
from functions.storage.objects import sha256
from functions.training.runs import evaluate_run, failure_reason, record_failure, record_success, train_run
from functions.training.train import seed_for
from tests.fakes import lost_reply, missing, throttled
from tests.training.helpers import run_in_memory

RUN_ID = "churn-1"
FEATURES_KEY = f"runs/churn/{RUN_ID}/features.parquet"


@pytest.fixture
def features(stores, churn_spec, churn_rows) -> str:
    stores.objects.put_frame(FEATURES_KEY, model_frame(churn_rows, churn_spec))
    return FEATURES_KEY


def train(stores, spec) -> TrainingResult:
    return train_run(stores.objects, spec=spec, run_id=RUN_ID, features_key=FEATURES_KEY, dataset_id="a" * 64)


# --- train and evaluate --------------------------------------------------------------------------


def test_a_run_stores_its_split_and_its_model_then_scores_the_holdout(stores, churn_spec, features):
    training = train(stores, churn_spec)
    prefix = f"runs/churn/{RUN_ID}/"
    assert (training.train_key, training.holdout_key, training.model_key) == (
        prefix + "train.parquet", prefix + "holdout.parquet", prefix + "model.skops")
    assert training.model_sha256 == sha256(stores.objects.get_bytes(training.model_key))
    assert training.rows == {"train": 160, "holdout": 40} and training.stratified is True
    assert training.seed == seed_for("a" * 64) and training.estimator == "logistic_regression"
    assert training.params["max_iter"] == 300 and training.trusted_types == ["numpy.dtype"]
    assert list(stores.objects.get_frame(training.holdout_key).columns) == churn_spec.feature_names + ["churned"]

    evaluation = evaluate_run(stores.objects, spec=churn_spec, training=training)
    assert set(evaluation.metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert evaluation.metrics["roc_auc"] > 0.6 and evaluation.holdout_rows == 40


def test_a_tampered_run_model_is_refused_at_evaluation(stores, churn_spec, features):
    training = train(stores, churn_spec)
    stores.objects.put(training.model_key, b"evil")
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        evaluate_run(stores.objects, spec=churn_spec, training=training)


def test_throttled_s3_fails_training_as_retryable(stores, churn_spec, features):
    stores.objects.faults.inject("get_bytes", throttled())
    with pytest.raises(RetryableError) as caught:
        train(stores, churn_spec)
    assert type(caught.value) is RetryableError  # the state machine retries this exact name


def test_a_training_whose_write_reply_was_lost_rewrites_the_same_objects(stores, churn_spec, features):
    stores.objects.faults.inject("put_bytes", lost_reply(), after=True)
    with pytest.raises(RetryableError):
        train(stores, churn_spec)
    retried = train(stores, churn_spec)
    assert stores.objects.keys("runs/churn/") == sorted([FEATURES_KEY, retried.train_key, retried.holdout_key,
                                                         retried.model_key])
    # skops bytes differ between two dumps: the result must name the hash of what is stored now.
    assert retried.model_sha256 == sha256(stores.objects.get_bytes(retried.model_key))
    assert evaluate_run(stores.objects, spec=churn_spec, training=retried).holdout_rows == 40


@pytest.mark.parametrize("fault, error", [(throttled(), RetryableError), (missing(), NotFound)])
def test_s3_errors_at_evaluation_surface_as_domain_errors(stores, churn_spec, features, fault, error):
    training = train(stores, churn_spec)
    stores.objects.faults.inject("get_bytes", fault)
    with pytest.raises(error) as caught:
        evaluate_run(stores.objects, spec=churn_spec, training=training)
    assert type(caught.value) is error


# --- how a run ends ------------------------------------------------------------------------------


@pytest.fixture
def run_state(stores, churn_spec) -> PipelineState:
    """A run that registered its dataset, planned its training and stopped before training (the caller adds an
    error)."""
    stores.registry.start_run(Run(model="churn", run_id=RUN_ID, bucket="b", key="k", code_version="x"))
    dataset = DatasetResult(dataset_id="d" * 64, key="datasets/churn/x.csv", bytes=10, spec=churn_spec,
                            readable=True)
    return PipelineState.model_validate({
        "run_id": RUN_ID, "model": "churn", "bucket": "mlops-test-data", "key": "datasets/churn/x.csv",
        "dataset": dataset.model_dump(mode="json"), "validation": {"report_key": "r", "passed": True},
        "features": {"features_key": FEATURES_KEY, "features_sha256": "s", "rows": 3, "entities": 0},
        "plan": {"backend": "lambda", "backend_reason": "small"}})


def finished(state: PipelineState, **results) -> PipelineState:
    training = TrainingResult(model_key="m", model_sha256="s", trusted_types=[], train_key="t", holdout_key="h",
                              params={"C": 1.0}, estimator="logistic_regression", seed=1, stratified=True,
                              rows={"train": 8, "holdout": 2})
    return state.model_copy(update={
        "training": training, "evaluation": EvaluationResult(metrics={"roc_auc": 0.8}, holdout_rows=2),
        "registration": RegistrationResult(version=3, format="onnx"),
        "promotion": PromotionResult(promoted=False, champion=2, challenger=3, metric="roc_auc", reason="tie"),
        **results})


@pytest.mark.parametrize(
    "error, expected",
    [
        ({"Error": "DatasetInvalid", "Cause": json.dumps({"errorType": "DatasetInvalid", "errorMessage": "bad file"})},
         "bad file"),
        ({"Error": "UnknownModel", "Cause": json.dumps({"errorType": "UnknownModel", "errorMessage": "no model spec"})},
         "no model spec"),
        ({"Error": "KeyError", "Cause": json.dumps({"errorType": "KeyError", "errorMessage": "'secret' at line 3"})},
         f"internal error in the pipeline; see the logs of run {RUN_ID}"),
        ({"Error": "States.Timeout", "Cause": "timed out"}, "step Train timed out"),
        ({"Error": "Lambda.Unknown", "Cause": "not json at all"}, "internal error in the pipeline"),
        (None, "internal error in the pipeline"),
    ],
)
def test_record_failure_keeps_domain_messages_and_hides_internal_ones(stores, run_state, error, expected):
    result = record_failure(stores.registry, run_state.model_copy(update={"error": error}))
    run = stores.registry.get_run("churn", RUN_ID)
    assert run.status == "FAILED" and expected in run.failure_reason and result.failure_reason == run.failure_reason
    assert "secret" not in run.failure_reason and run.failed_step == "Train" == result.failed_step and run.ended_at
    assert run.dataset_id == "d" * 64 and run.error_type == ((error or {}).get("Error") or "unknown")


def test_a_failure_reason_is_cut_to_its_limit():
    cause = json.dumps({"errorType": "DatasetInvalid", "errorMessage": "x" * 5000})
    assert failure_reason({"Error": "DatasetInvalid", "Cause": cause}, RUN_ID, "Train") == "x" * 2000


def test_record_success_records_the_run_s_outcome(stores, run_state):
    result = record_success(stores.registry, finished(run_state))
    assert (result.status, result.model_version, result.promoted) == ("SUCCEEDED", 3, False)
    run = stores.registry.get_run("churn", RUN_ID)
    assert run.status == "SUCCEEDED" and run.ended_at and run.metrics == {"roc_auc": 0.8}
    assert (run.model_version, run.promoted, run.champion, run.promotion_reason) == (3, False, 2, "tie")
    assert run.dataset_id == "d" * 64 and run.params == {"C": 1.0}


@pytest.mark.parametrize("record", ["success", "failure"])
@pytest.mark.parametrize("fault, after", [(throttled(), False), (lost_reply(), True)])
def test_a_run_record_meeting_a_busy_table_is_retried_to_one_outcome(stores, run_state, record, fault, after):
    def record_run():
        if record == "success":
            return record_success(stores.registry, finished(run_state))
        return record_failure(stores.registry, run_state.model_copy(update={"error": None}))

    stores.registry.faults.inject("update_run", fault, after=after)
    with pytest.raises(RetryableError) as caught:
        record_run()
    assert type(caught.value) is RetryableError  # retried by the state machine
    assert record_run() == record_run()
    assert stores.registry.get_run("churn", RUN_ID).status == ("SUCCEEDED" if record == "success" else "FAILED")


# --- whole runs on the in-memory stores -----------------------------------------------------------


def test_a_retrain_on_the_same_data_is_registered_but_does_not_replace_an_equal_champion(
        stores, churn_champion, churn_rows):
    state, error = run_in_memory(stores, "churn", "again.csv", churn_rows.to_csv(index=False).encode())
    assert error is None and state.registration.version == 2
    assert state.promotion.promoted is False and "does not beat the champion v1" in state.promotion.reason
    assert stores.registry.get_alias("churn") == 1 and stores.registry.get_alias("churn", "challenger") == 2
    run = stores.registry.get_run("churn", state.run_id)
    assert run.status == "SUCCEEDED" and run.promoted is False and run.model_version == 2
    assert run.metrics == state.evaluation.metrics and run.dataset_id == churn_champion.dataset_id


def test_a_model_that_beats_the_champion_on_its_holdout_replaces_it(stores, champion_factory, churn_spec, churn_rows):
    noise = churn_rows.assign(churned=churn_rows["churned"].sample(frac=1, random_state=3).to_numpy())
    champion_factory(churn_spec, noise)
    state, error = run_in_memory(stores, "churn", "real.csv", churn_rows.to_csv(index=False).encode())
    assert error is None
    promotion = state.promotion
    assert promotion.promoted is True and promotion.previous == 1 and promotion.champion == 2
    assert promotion.score > promotion.champion_score
    assert [(a.version, a.from_version) for a in stores.registry.audit_trail("churn")] == [(1, None), (2, 1)]


def test_a_run_that_runs_out_of_retries_on_s3_is_recorded_failed_at_its_step(stores, churn_champion, churn_rows):
    stores.objects.faults.inject("put_bytes", throttled(), times=100)
    state, error = run_in_memory(stores, "churn", "b.csv", churn_rows.head(50).to_csv(index=False).encode())
    assert isinstance(error, RetryableError)
    run = stores.registry.get_run("churn", state.run_id)
    assert run.status == "FAILED" and run.failed_step == "RegisterDataset" and "try again" in run.failure_reason
    assert stores.registry.get_alias("churn") == 1 and len(stores.registry.list_versions("churn")) == 1


def test_an_unreadable_upload_fails_validation_in_memory_too(stores, churn_champion):
    state, error = run_in_memory(stores, "churn", "b.csv", b"a,b,c\n1,2,3\n")
    assert isinstance(error, DatasetInvalid) and state.run.failed_step == "ValidateDataset"


def test_a_model_at_chance_level_is_registered_with_a_warning_in_its_record_and_its_run(stores, churn_spec, churn_rows):
    # Features that say nothing about the target: the model can only answer the same for everyone.
    rows = churn_rows.assign(tenure_months=12, monthly_charges=50.0, support_calls=1, plan="basic")
    stores.registry.put_spec(churn_spec)
    state, error = run_in_memory(stores, "churn", "noise.csv", rows.to_csv(index=False).encode())
    assert error is None and state.evaluation is not None
    assert state.evaluation.metrics["roc_auc"] == 0.5
    version = stores.registry.get_version("churn", state.result(RegistrationResult).version)
    assert any("chance level: ROC AUC 0.500" in w for w in version.warnings)
    assert any("most frequent class" in w for w in version.warnings)
    run = stores.registry.get_run("churn", state.run_id)
    assert run.status == "SUCCEEDED" and run.warnings == version.warnings


def test_a_good_model_has_no_warnings_and_validation_warnings_reach_the_records(stores, churn_spec, churn_rows):
    import pandas as pd

    stores.registry.put_spec(churn_spec)
    repeated = pd.concat([churn_rows, churn_rows.head(10)], ignore_index=True)
    state, error = run_in_memory(stores, "churn", "ok.csv", repeated.to_csv(index=False).encode())
    assert error is None and state.result(EvaluationResult).warnings == []
    version = stores.registry.get_version("churn", state.result(RegistrationResult).version)
    assert version.warnings == ["10 of 210 rows (4.8%) are exact duplicates of another row"]
    assert stores.registry.get_run("churn", state.run_id).warnings == version.warnings


def test_column_names_with_spaces_dots_parentheses_and_unicode_work_through_the_whole_loop(stores, churn_spec,
                                                                                           churn_rows):
    from functions.monitoring.check import version_reference
    from functions.monitoring.drift import drift_report, window_frame
    from functions.registry.artifacts import load_predictor
    from functions.spec import ModelSpec

    names = {"tenure_months": "tenure (months)", "monthly_charges": "monthly.charges $",
             "support_calls": "Destek çağrıları", "plan": "план тарифа", "churned": "churned?",
             "customer_id": "客户 id"}
    raw = churn_spec.model_dump()
    features = [{"name": names[f["name"]], "type": f["type"]} for f in raw["features"]]
    spec = ModelSpec.model_validate({**raw, "target": names["churned"], "entity_id": names["customer_id"],
                                     "features": features})
    stores.registry.put_spec(spec)
    rows = churn_rows.rename(columns=names)

    state, error = run_in_memory(stores, "churn", "named.csv", rows.to_csv(index=False).encode())

    assert error is None and state.result(PromotionResult).promoted
    version = stores.registry.get_version("churn", 1)
    assert [f.name for f in version.signature] == spec.feature_names and version.artifacts.onnx_inputs[0] == "f0"
    assert version.artifacts.format == "onnx" and state.result(EvaluationResult).metrics["roc_auc"] > 0.6
    online = stores.online.get_latest("churn", rows[names["customer_id"]].iloc[0])
    assert online is not None and set(online) == set(spec.feature_names)
    predictor = load_predictor(stores.objects, version, version.trained_spec(spec))
    instances = rows[spec.feature_names].head(40).to_dict("records")  # JSON keys as a client sends them
    labels, probabilities = predictor.predict(pd.DataFrame.from_records(instances, columns=spec.feature_names))
    assert len(labels) == 40 and all(abs(sum(p) - 1) < 1e-5 for p in probabilities)
    stored = version_reference(stores.objects, stores.registry, version)  # the run recorded it with its sha256
    assert stored is not None and set(stored[0].columns) == set(spec.feature_names) and stored[0].output is not None
    report = drift_report(model="churn", version=1, signature=version.signature, reference=stored[0],
                          live=window_frame(instances, spec.feature_names), window_hours=24, config=spec.monitoring)
    assert set(report["features"]) == set(spec.feature_names)
    assert all(f["samples"] == 40 and f["psi"] is not None for f in report["features"].values())


def test_the_same_upload_again_is_a_run_that_matches_the_first_and_trains_nothing_unless_asked(stores, churn_spec,
                                                                                                churn_rows):
    stores.registry.put_spec(churn_spec)
    data = churn_rows.to_csv(index=False).encode()
    first, _ = run_in_memory(stores, "churn", "train.csv", data)
    assert first.result(RegistrationResult).version == 1

    again, error = run_in_memory(stores, "churn", "copy.csv", data)  # byte-identical, under another key

    assert error is None and again.training is None and again.registration is None
    assert again.run is not None and again.run.duplicate_of == first.run_id and again.run.model_version == 1
    run = stores.registry.get_run("churn", again.run_id)
    assert run.status == "SUCCEEDED" and run.duplicate_of == first.run_id and run.model_version == 1
    assert run.run_key == stores.registry.get_run("churn", first.run_id).run_key
    assert [v.version for v in stores.registry.list_versions("churn")] == [1]
    assert stores.objects.keys(f"runs/churn/{again.run_id}/") == []

    retrained, error = run_in_memory(stores, "churn", "copy.csv", data, metadata={"retrain": "true"})

    assert error is None and retrained.run is not None and retrained.run.duplicate_of is None
    assert retrained.result(RegistrationResult).version == 2
    assert stores.registry.get_run("churn", retrained.run_id).retrain is True


# --- the model serialized once ------------------------------------------------------------------


def test_a_run_serializes_its_model_once_loads_it_once_and_converts_it_once(stores, churn_spec, churn_rows,
                                                                            monkeypatch):
    import skl2onnx
    import skops.io as sio

    counts = {"dumps": 0, "loads": 0, "convert": 0}

    def counted(name, real):
        def call(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(sio, "dumps", counted("dumps", sio.dumps))
    monkeypatch.setattr(sio, "loads", counted("loads", sio.loads))
    monkeypatch.setattr(skl2onnx, "convert_sklearn", counted("convert", skl2onnx.convert_sklearn))
    stores.registry.put_spec(churn_spec)

    state, error = run_in_memory(stores, "churn", "fresh.csv", churn_rows.to_csv(index=False).encode())

    assert error is None and state.run is not None and state.run.status == "SUCCEEDED"
    assert counts == {"dumps": 1, "loads": 1, "convert": 1}  # Train dumps, Evaluate loads and converts
    training, evaluation = state.result(TrainingResult), state.result(EvaluationResult)
    version = stores.registry.get_version("churn", state.result(RegistrationResult).version)
    # The version's files are the run's bytes: the same hashes.
    assert version.artifacts.skops_sha256 == training.model_sha256
    assert evaluation.onnx_key == f"runs/churn/{state.run_id}/model.onnx"
    assert version.artifacts.onnx_sha256 == evaluation.onnx_sha256 is not None
    assert version.classes == evaluation.classes == [0, 1] and version.artifacts.format == "onnx"
    assert stores.objects.get_bytes(version.artifacts.skops_key) == stores.objects.get_bytes(training.model_key)


def test_a_model_that_does_not_convert_is_registered_as_skops_with_the_reason(stores, churn_spec, churn_rows,
                                                                              monkeypatch):
    import skl2onnx

    def refuse(*args, **kwargs):
        raise RuntimeError("unsupported")

    monkeypatch.setattr(skl2onnx, "convert_sklearn", refuse)
    stores.registry.put_spec(churn_spec)
    state, error = run_in_memory(stores, "churn", "fresh.csv", churn_rows.to_csv(index=False).encode())
    assert error is None
    assert state.result(EvaluationResult).onnx_key is None
    version = stores.registry.get_version("churn", state.result(RegistrationResult).version)
    assert version.artifacts.format == "skops" and version.artifacts.onnx_skipped == "conversion failed (RuntimeError)"


def test_a_tampered_onnx_file_is_refused_before_a_version_number_is_taken(stores, churn_spec, churn_rows):
    from functions.registry.promotion import register_version

    stores.registry.put_spec(churn_spec)
    stores.objects.put_frame(FEATURES_KEY, model_frame(churn_rows, churn_spec))
    training = train(stores, churn_spec)
    evaluation = evaluate_run(stores.objects, spec=churn_spec, training=training)
    assert evaluation.onnx_key is not None
    stores.objects.put(evaluation.onnx_key, b"not the model")
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        register_version(stores.objects, stores.registry, spec=churn_spec, run_id=RUN_ID, dataset_id="a" * 64,
                         training=training, metrics=evaluation.metrics, code_version="test-1", evaluation=evaluation)
    assert stores.registry.counters.get("churn") is None and stores.registry.list_versions("churn") == []
