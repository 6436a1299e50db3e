"""The promotion gate and version registration, under moto with real models."""

import pytest

from functions.errors import Conflict, NotFound
from functions.features.build import model_frame
from functions.features.store import write_frame
from functions.registry.promotion import promote, register_version, rollback
from functions.registry.store import RegistryStore
from functions.spec import ModelSpec
from functions.training.evaluate import score
from functions.training.runs import evaluate_run, train_run


@pytest.fixture
def registry(pipeline_aws):
    return RegistryStore(pipeline_aws.tables["registry"])


def trained_run(aws, spec, rows, run_id, dataset_id):
    """A run's training and evaluation results, as the pipeline steps produce them."""
    features_key = f"runs/{spec.name}/{run_id}/features.parquet"
    write_frame(aws.s3, aws.bucket, features_key, model_frame(rows, spec))
    training = train_run(aws.s3, spec=spec, bucket=aws.bucket, run_id=run_id, features_key=features_key,
                         dataset_id=dataset_id)
    metrics = evaluate_run(aws.s3, spec=spec, bucket=aws.bucket, training=training)["metrics"]
    return training, metrics


def register(aws, registry, spec, rows, run_id, dataset_id="a" * 64):
    training, metrics = trained_run(aws, spec, rows, run_id, dataset_id)
    registration = register_version(aws.s3, registry, spec=spec, bucket=aws.bucket, run_id=run_id,
                                    dataset_id=dataset_id, training=training, metrics=metrics, code_version="c1")
    return registration["version"], training, metrics


def decide(aws, registry, spec, version, training, metrics):
    return promote(aws.s3, registry, spec=spec, bucket=aws.bucket, version=version,
                   holdout_key=training["holdout_key"], metrics=metrics)


def test_registration_records_lineage_and_is_idempotent_per_run(pipeline_aws, registry, churn_spec, churn_rows):
    version, training, metrics = register(pipeline_aws, registry, churn_spec, churn_rows, "run-1")
    again = register_version(pipeline_aws.s3, registry, spec=churn_spec, bucket=pipeline_aws.bucket, run_id="run-1",
                             dataset_id="a" * 64, training=training, metrics=metrics, code_version="c1")
    assert version == 1 and again == {"version": 1, "onnx": True, "format": "onnx"}
    assert registry.next_version("churn") == 2  # the retry allocated no number
    record = registry.get_version("churn", 1)
    assert record["dataset_id"] == "a" * 64 and record["run_id"] == "run-1" and record["metrics"] == metrics
    assert record["holdout_key"] == training["holdout_key"] and record["classes"] == [0, 1]
    assert record["params"]["max_iter"] == 300 and record["estimator"] == "logistic_regression"
    assert set(record["packages"]) >= {"python", "scikit-learn", "skops", "onnxruntime"}


def test_the_first_version_becomes_champion(pipeline_aws, registry, churn_spec, churn_rows):
    version, training, metrics = register(pipeline_aws, registry, churn_spec, churn_rows, "run-1")
    decision = decide(pipeline_aws, registry, churn_spec, version, training, metrics)
    assert decision["promoted"] is True and decision["champion"] == 1 and decision["previous"] is None
    assert registry.get_alias("churn") == 1
    (audit,) = registry.audit_trail("churn")
    assert audit["reason"] == decision["reason"] and "first champion" in audit["reason"]
    # A retried promotion changes nothing and says so.
    retried = decide(pipeline_aws, registry, churn_spec, version, training, metrics)
    assert retried["promoted"] is True and "already the champion" in retried["reason"]
    assert len(registry.audit_trail("churn")) == 1


def test_a_worse_model_becomes_challenger_scored_on_the_same_holdout(pipeline_aws, registry, churn_spec, churn_rows):
    v1, training1, metrics1 = register(pipeline_aws, registry, churn_spec, churn_rows, "run-1")
    decide(pipeline_aws, registry, churn_spec, v1, training1, metrics1)
    stump = ModelSpec.model_validate({**churn_spec.model_dump(),
                                      "estimator": {"name": "random_forest", "params": {"n_estimators": 1, "max_depth": 1}}})
    v2, training2, metrics2 = register(pipeline_aws, registry, stump, churn_rows, "run-2", "b" * 64)

    decision = decide(pipeline_aws, registry, stump, v2, training2, metrics2)

    assert decision["promoted"] is False and decision["champion"] == 1 and decision["challenger"] == 2
    assert decision["score"] < decision["champion_score"]
    assert registry.get_alias("churn") == 1 and registry.get_alias("churn", "challenger") == 2
    # The champion was scored on run 2's holdout, not on its own.
    from functions.features.store import read_frame
    from functions.registry.artifacts import load_predictor

    holdout = read_frame(pipeline_aws.s3, pipeline_aws.bucket, training2["holdout_key"])
    champion = load_predictor(pipeline_aws.s3, pipeline_aws.bucket, registry.get_version("churn", 1)["artifacts"],
                              churn_spec)
    assert decision["champion_score"] == pytest.approx(score(champion, holdout, churn_spec)["roc_auc"])
    assert decision["champion_score"] != pytest.approx(metrics1["roc_auc"])
    assert "does not beat the champion v1" in registry.audit_trail("churn")[-1]["reason"]


def test_lower_is_better_metrics_promote_the_smaller_error(pipeline_aws, registry, churn_spec, churn_rows):
    spec = ModelSpec.model_validate({
        **churn_spec.model_dump(), "task": "regression", "metric": "rmse", "target": "monthly_charges",
        "features": [{"name": "tenure_months", "type": "numeric"}, {"name": "support_calls", "type": "numeric"},
                     {"name": "plan", "type": "categorical"}, {"name": "churned", "type": "numeric"}],
        "estimator": {"name": "linear_regression", "params": {}},
    })
    shuffled = churn_rows.assign(monthly_charges=churn_rows["monthly_charges"].sample(frac=1, random_state=1).to_numpy())
    v1, training1, metrics1 = register(pipeline_aws, registry, spec, shuffled, "run-1")
    decide(pipeline_aws, registry, spec, v1, training1, metrics1)
    v2, training2, metrics2 = register(pipeline_aws, registry, spec, churn_rows, "run-2", "b" * 64)
    decision = decide(pipeline_aws, registry, spec, v2, training2, metrics2)
    assert decision["promoted"] is True and decision["score"] < decision["champion_score"]
    assert registry.get_alias("churn") == 2


def test_a_lost_race_is_decided_again(pipeline_aws, registry, churn_spec, churn_rows, monkeypatch):
    version, training, metrics = register(pipeline_aws, registry, churn_spec, churn_rows, "run-1")
    real = registry.set_alias
    calls = []

    def racing(model, alias, v, *, expected, reason):
        calls.append(expected)
        if len(calls) == 1:
            raise Conflict("the champion moved")
        return real(model, alias, v, expected=expected, reason=reason)

    monkeypatch.setattr(registry, "set_alias", racing)
    assert decide(pipeline_aws, registry, churn_spec, version, training, metrics)["promoted"] is True
    assert calls == [None, None] and registry.get_alias("churn") == 1


def test_aliases_that_keep_moving_fail_the_promotion(pipeline_aws, registry, churn_spec, churn_rows, monkeypatch):
    version, training, metrics = register(pipeline_aws, registry, churn_spec, churn_rows, "run-1")

    def always(*args, **kwargs):
        raise Conflict("moved")

    monkeypatch.setattr(registry, "set_alias", always)
    with pytest.raises(Conflict, match="kept moving"):
        decide(pipeline_aws, registry, churn_spec, version, training, metrics)
    assert registry.get_alias("churn") is None


def test_a_champion_that_needs_dropped_features_is_replaced(pipeline_aws, registry, churn_spec, churn_rows):
    v1, training1, metrics1 = register(pipeline_aws, registry, churn_spec, churn_rows, "run-1")
    decide(pipeline_aws, registry, churn_spec, v1, training1, metrics1)
    narrower = ModelSpec.model_validate({**churn_spec.model_dump(), "features": churn_spec.model_dump()["features"][:2]})
    v2, training2, metrics2 = register(pipeline_aws, registry, narrower, churn_rows, "run-2", "b" * 64)
    decision = decide(pipeline_aws, registry, narrower, v2, training2, metrics2)
    assert decision["promoted"] is True and "lacks (support_calls, plan)" in decision["reason"]


def test_rollback_is_an_audited_alias_move(pipeline_aws, registry, churn_spec, churn_rows):
    with pytest.raises(NotFound):
        rollback(registry, "churn", 1, "nothing yet")
    registry.put_version("churn", 1, {"run_id": "r1"})
    registry.put_version("churn", 2, {"run_id": "r2"})
    registry.set_alias("churn", "champion", 2, expected=None, reason="first")
    assert rollback(registry, "churn", 1, "v2 misbehaves") == {"champion": 1, "previous": 2}
    assert registry.get_alias("churn") == 1 and registry.audit_trail("churn")[-1]["reason"] == "rollback: v2 misbehaves"


def test_a_champion_of_another_target_is_not_graded_on_this_one(pipeline_aws, registry, churn_spec, churn_rows):
    v1, training1, metrics1 = register(pipeline_aws, registry, churn_spec, churn_rows, "run-1")
    decide(pipeline_aws, registry, churn_spec, v1, training1, metrics1)
    # The spec now predicts another column: v1's answers are about `churned`, not about `stayed`.
    stayed = ModelSpec.model_validate({**churn_spec.model_dump(), "target": "stayed"})
    rows = churn_rows.assign(stayed=1 - churn_rows["churned"])
    v2, training2, metrics2 = register(pipeline_aws, registry, stayed, rows, "run-2", "b" * 64)
    decision = decide(pipeline_aws, registry, stayed, v2, training2, metrics2)
    assert decision["promoted"] is True and "predicts another target (churned)" in decision["reason"]
    assert registry.get_alias("churn") == 2


def test_the_same_model_retrained_ties_and_stays_challenger(pipeline_aws, registry, churn_spec, churn_rows):
    v1, training1, metrics1 = register(pipeline_aws, registry, churn_spec, churn_rows, "run-1")
    decide(pipeline_aws, registry, churn_spec, v1, training1, metrics1)
    v2, training2, metrics2 = register(pipeline_aws, registry, churn_spec, churn_rows, "run-2")

    decision = decide(pipeline_aws, registry, churn_spec, v2, training2, metrics2)

    # Both versions are scored as served (ONNX), on the same rows: equal models tie exactly.
    assert decision["score"] == decision["champion_score"]
    assert decision["promoted"] is False and registry.get_alias("churn") == 1


def test_a_registration_retried_after_a_failure_keeps_its_version_number(pipeline_aws, registry, churn_spec, churn_rows,
                                                                         monkeypatch):
    from functions.errors import RetryableError
    from functions.registry import promotion

    training, metrics = trained_run(pipeline_aws, churn_spec, churn_rows, "run-1", "a" * 64)
    save_model = promotion.save_model

    def fails_once(*args, **kwargs):
        monkeypatch.setattr(promotion, "save_model", save_model)
        raise RetryableError("S3 throttled")

    monkeypatch.setattr(promotion, "save_model", fails_once)
    arguments = dict(spec=churn_spec, bucket=pipeline_aws.bucket, run_id="run-1", dataset_id="a" * 64,
                     training=training, metrics=metrics, code_version="c1")
    with pytest.raises(RetryableError):
        register_version(pipeline_aws.s3, registry, **arguments)
    retried = register_version(pipeline_aws.s3, registry, **arguments)

    assert retried["version"] == 1 and [v["version"] for v in registry.list_versions("churn")] == [1]
