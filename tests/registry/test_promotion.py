"""Version registration and the promotion gate, on the in-memory stores with real models."""

import pytest

from functions.errors import Conflict, NotFound, RetryableError
from functions.features.build import model_frame
from functions.pipeline.state import PromotionResult, TrainingResult
from functions.registry.artifacts import load_predictor
from functions.registry.lifecycle import rollback
from functions.registry.promotion import promote, register_version
from functions.shared.scoring import score
from functions.spec import ModelSpec
from functions.training.runs import evaluate_run, train_run
from tests.fakes import condition_failed, lost_reply, throttled


def trained_run(stores, spec: ModelSpec, rows, run_id: str, dataset_id: str) -> tuple[TrainingResult, dict]:
    """A run's training and evaluation results, as the pipeline steps produce them."""
    features_key = f"runs/{spec.name}/{run_id}/features.parquet"
    stores.objects.put_frame(features_key, model_frame(rows, spec))
    training = train_run(stores.objects, spec=spec, run_id=run_id, features_key=features_key, dataset_id=dataset_id)
    return training, evaluate_run(stores.objects, spec=spec, training=training).metrics


def register_trained(stores, spec: ModelSpec, run_id: str, training: TrainingResult, metrics: dict,
                     dataset_id: str = "a" * 64):
    return register_version(stores.objects, stores.registry, spec=spec, run_id=run_id, dataset_id=dataset_id,
                            training=training, metrics=metrics, code_version="c1")


def register(stores, spec: ModelSpec, rows, run_id: str, dataset_id: str = "a" * 64):
    training, metrics = trained_run(stores, spec, rows, run_id, dataset_id)
    registration = register_trained(stores, spec, run_id, training, metrics, dataset_id)
    return registration.version, training, metrics


def decide(stores, spec: ModelSpec, version: int, holdout_key: str, metrics: dict) -> PromotionResult:
    return promote(stores.objects, stores.registry, spec=spec, version=version, holdout_key=holdout_key,
                   metrics=metrics)


def decide_v1(stores, champion) -> PromotionResult:
    """The promotion step of the run that registered `champion` (version 1)."""
    return decide(stores, champion.spec, champion.version, champion.record.holdout_key, champion.record.metrics)


def respec(spec: ModelSpec, **changes) -> ModelSpec:
    return ModelSpec.model_validate({**spec.model_dump(), **changes})


# --- registration --------------------------------------------------------------------------------


def test_registration_records_lineage_and_is_idempotent_per_run(stores, churn_spec, churn_rows):
    version, training, metrics = register(stores, churn_spec, churn_rows, "run-1")
    again = register_trained(stores, churn_spec, "run-1", training, metrics)
    assert version == 1 and again.version == 1 and again.format == "onnx"
    assert stores.registry.version_for_run("churn", "run-2") == 2  # the retry took no number
    record = stores.registry.get_version("churn", 1)
    assert record.dataset_id == "a" * 64 and record.run_id == "run-1" and record.metrics == metrics
    assert record.holdout_key == training.holdout_key and record.classes == [0, 1]
    assert record.params["max_iter"] == 300 and record.estimator == "logistic_regression"
    assert record.code_version == "c1" and record.signature == churn_spec.signature
    assert set(record.packages) >= {"python", "scikit-learn", "skops", "onnxruntime"}
    assert stores.objects.keys("models/churn/v1/") == ["models/churn/v1/model.onnx", "models/churn/v1/model.skops"]


def test_a_registration_retried_after_a_failed_write_keeps_its_version_number(stores, churn_spec, churn_rows):
    training, metrics = trained_run(stores, churn_spec, churn_rows, "run-1", "a" * 64)
    stores.objects.faults.inject("put_bytes", throttled())  # S3 refuses the first artifact
    with pytest.raises(RetryableError):
        register_trained(stores, churn_spec, "run-1", training, metrics)
    assert register_trained(stores, churn_spec, "run-1", training, metrics).version == 1
    assert [v.version for v in stores.registry.list_versions("churn")] == [1]


def test_a_registration_whose_reply_was_lost_is_found_by_the_retry(stores, churn_spec, churn_rows):
    training, metrics = trained_run(stores, churn_spec, churn_rows, "run-1", "a" * 64)
    stores.registry.faults.inject("put_version", lost_reply(), after=True)
    with pytest.raises(RetryableError):
        register_trained(stores, churn_spec, "run-1", training, metrics)
    assert register_trained(stores, churn_spec, "run-1", training, metrics).version == 1
    assert [v.version for v in stores.registry.list_versions("churn")] == [1]


@pytest.mark.parametrize("operation, after", [("reserve_version", False), ("reserve_version", True),
                                              ("put_version", False), ("version_for_run", False)],
                         ids=["reservation throttled", "reservation reply lost", "registration throttled",
                              "reservation read throttled"])
def test_a_registration_retried_after_a_registry_fault_keeps_version_1(stores, churn_spec, churn_rows, operation,
                                                                        after):
    training, metrics = trained_run(stores, churn_spec, churn_rows, "run-1", "a" * 64)
    stores.registry.faults.inject(operation, throttled() if not after else lost_reply(), after=after)
    with pytest.raises(RetryableError):
        register_trained(stores, churn_spec, "run-1", training, metrics)
    assert register_trained(stores, churn_spec, "run-1", training, metrics).version == 1
    assert [v.version for v in stores.registry.list_versions("churn")] == [1]
    assert stores.registry.version_for_run("churn", "run-2") == 2, "no number was skipped"


@pytest.mark.parametrize("missing", ["model", "holdout"])
def test_a_run_whose_model_or_holdout_is_gone_fails_before_taking_a_number(stores, churn_spec, churn_rows, missing):
    training, metrics = trained_run(stores, churn_spec, churn_rows, "run-1", "a" * 64)
    del stores.objects.versions[training.model_key if missing == "model" else training.holdout_key]
    with pytest.raises(NotFound, match="not found"):
        register_trained(stores, churn_spec, "run-1", training, metrics)
    assert stores.registry.reservations == {} and stores.registry.version_for_run("churn", "run-2") == 1


def test_a_number_registered_by_another_run_is_never_taken_over(stores, churn_spec, churn_rows):
    training, metrics = trained_run(stores, churn_spec, churn_rows, "run-1", "a" * 64)
    stores.registry.put_version(_other_runs_v1(training))
    with pytest.raises(Conflict, match="version 1 of model 'churn' is already registered by run run-0"):
        register_trained(stores, churn_spec, "run-1", training, metrics)
    assert stores.registry.get_version("churn", 1).run_id == "run-0"


def _other_runs_v1(training: TrainingResult):
    """A version 1 written by run-0 without a reservation (a damaged registry): run-1 will be given number 1."""
    from functions.records import Artifacts, ModelVersion

    return ModelVersion(model="churn", version=1, run_id="run-0", dataset_id="0" * 64, task="classification",
                        target="churned", signature=[], metric="roc_auc", estimator="logistic_regression",
                        code_version="c0", holdout_key=training.holdout_key,
                        artifacts=Artifacts(skops_key="k", skops_sha256="s" * 64, skops_trusted_types=[]))


# --- the promotion gate --------------------------------------------------------------------------


def test_the_first_version_becomes_champion_and_a_retry_changes_nothing(stores, churn_v1):
    decision = decide_v1(stores, churn_v1)
    assert decision.promoted is True and decision.champion == 1 and decision.previous is None
    assert stores.registry.get_alias("churn") == 1
    (audit,) = stores.registry.audit_trail("churn")
    assert audit.reason == decision.reason and "first champion" in audit.reason
    retried = decide_v1(stores, churn_v1)
    assert retried.promoted is True and "already the champion" in retried.reason and retried.previous is None
    assert len(stores.registry.audit_trail("churn")) == 1


def test_a_promotion_whose_alias_reply_was_lost_is_retried_to_the_same_decision(stores, churn_v1):
    stores.registry.faults.inject("set_alias", lost_reply(), after=True)
    with pytest.raises(RetryableError):  # the state machine retries the step
        decide_v1(stores, churn_v1)
    retried = decide_v1(stores, churn_v1)
    assert retried.promoted is True and retried.champion == 1 and "already the champion" in retried.reason
    assert [(a.version, a.from_version) for a in stores.registry.audit_trail("churn")] == [(1, None)]


def test_a_lost_race_is_decided_again(stores, churn_v1):
    stores.registry.faults.inject("set_alias", condition_failed())  # another writer moved the alias first
    assert decide_v1(stores, churn_v1).promoted is True
    assert stores.registry.faults.calls.count("set_alias") == 2 and stores.registry.get_alias("churn") == 1
    assert [(a.version, a.from_version) for a in stores.registry.audit_trail("churn")] == [(1, None)]


def test_aliases_that_keep_moving_fail_the_promotion(stores, churn_v1):
    stores.registry.faults.inject("set_alias", condition_failed(), times=3)
    with pytest.raises(Conflict, match="kept moving"):
        decide_v1(stores, churn_v1)
    assert stores.registry.get_alias("churn") is None and stores.registry.audit_trail("churn") == []


def test_a_throttled_holdout_read_is_retryable_and_moves_nothing(stores, churn_champion, churn_rows):
    version, training, metrics = register(stores, churn_champion.spec, churn_rows, "run-2", "b" * 64)
    stores.objects.faults.inject("get_bytes", throttled())
    with pytest.raises(RetryableError):
        decide(stores, churn_champion.spec, version, training.holdout_key, metrics)
    assert stores.registry.get_alias("churn") == 1 and len(stores.registry.audit_trail("churn")) == 1


def test_a_worse_model_becomes_challenger_scored_on_the_same_holdout(stores, churn_champion, churn_rows):
    stump = respec(churn_champion.spec, estimator={"name": "random_forest", "params": {"n_estimators": 1,
                                                                                      "max_depth": 1}})
    v2, training2, metrics2 = register(stores, stump, churn_rows, "run-2", "b" * 64)

    decision = decide(stores, stump, v2, training2.holdout_key, metrics2)

    assert decision.promoted is False and decision.champion == 1 and decision.challenger == 2
    assert decision.score < decision.champion_score
    assert stores.registry.get_alias("churn") == 1 and stores.registry.get_alias("churn", "challenger") == 2
    # The champion was scored on run 2's holdout, not on its own.
    holdout = stores.objects.get_frame(training2.holdout_key)
    champion = load_predictor(stores.objects, stores.registry.get_version("churn", 1), churn_champion.spec)
    assert decision.champion_score == pytest.approx(score(champion, holdout, churn_champion.spec)["roc_auc"])
    assert decision.champion_score != pytest.approx(churn_champion.record.metrics["roc_auc"])
    assert "does not beat the champion v1" in stores.registry.audit_trail("churn")[-1].reason


def test_lower_is_better_metrics_promote_the_smaller_error(stores, churn_spec, churn_rows):
    spec = respec(churn_spec, task="regression", metric="rmse", target="monthly_charges",
                  features=[{"name": "tenure_months", "type": "numeric"}, {"name": "support_calls", "type": "numeric"},
                            {"name": "plan", "type": "categorical"}, {"name": "churned", "type": "numeric"}],
                  estimator={"name": "linear_regression", "params": {}})
    charges = churn_rows["monthly_charges"].sample(frac=1, random_state=1).to_numpy()
    shuffled = churn_rows.assign(monthly_charges=charges)
    v1, training1, metrics1 = register(stores, spec, shuffled, "run-1")
    decide(stores, spec, v1, training1.holdout_key, metrics1)
    v2, training2, metrics2 = register(stores, spec, churn_rows, "run-2", "b" * 64)
    decision = decide(stores, spec, v2, training2.holdout_key, metrics2)
    assert decision.promoted is True and decision.score < decision.champion_score
    assert stores.registry.get_alias("churn") == 2


def test_a_champion_that_needs_dropped_features_is_replaced(stores, churn_champion, churn_rows):
    narrower = respec(churn_champion.spec, features=churn_champion.spec.model_dump()["features"][:2])
    v2, training2, metrics2 = register(stores, narrower, churn_rows, "run-2", "b" * 64)
    decision = decide(stores, narrower, v2, training2.holdout_key, metrics2)
    assert decision.promoted is True and "lacks (support_calls, plan)" in decision.reason


def test_a_champion_of_another_target_is_not_graded_on_this_one(stores, churn_champion, churn_rows):
    # The spec now predicts another column: v1's answers are about `churned`, not about `stayed`.
    stayed = respec(churn_champion.spec, target="stayed")
    rows = churn_rows.assign(stayed=1 - churn_rows["churned"])
    v2, training2, metrics2 = register(stores, stayed, rows, "run-2", "b" * 64)
    decision = decide(stores, stayed, v2, training2.holdout_key, metrics2)
    assert decision.promoted is True and "predicts another target (churned)" in decision.reason
    assert stores.registry.get_alias("churn") == 2


def test_the_same_model_retrained_ties_and_stays_challenger(stores, churn_champion, churn_rows):
    v2, training2, metrics2 = register(stores, churn_champion.spec, churn_rows, "run-2", churn_champion.dataset_id)

    decision = decide(stores, churn_champion.spec, v2, training2.holdout_key, metrics2)

    # Both versions are scored as served (ONNX), on the same rows: equal models tie exactly.
    assert decision.score == decision.champion_score
    assert decision.promoted is False and stores.registry.get_alias("churn") == 1


# --- rollback ------------------------------------------------------------------------------------


def test_rollback_is_an_audited_alias_move(stores, churn_v1):
    registry = stores.registry
    with pytest.raises(NotFound, match="model 'churn' has no version 2"):
        rollback(registry, "churn", 2, actor="me", reason="no such version")
    with pytest.raises(NotFound, match="no champion"):
        rollback(registry, "churn", 1, actor="me", reason="nothing promoted yet")
    registry.set_status("churn", 1, "Approved", expected="PendingManualApproval", reason="ok", actor="me")
    registry.put_version(churn_v1.record.model_copy(update={"version": 2, "run_id": "r2", "status": "Approved"}))
    registry.set_alias("churn", "champion", 2, expected=None, reason="first")
    outcome = rollback(registry, "churn", 1, actor="me", reason="v2 misbehaves")
    assert outcome.changed and outcome.message == "v1 is the champion of churn again (was v2)"
    assert registry.get_alias("churn") == 1 and registry.audit_trail("churn")[-1].reason == "rollback: v2 misbehaves"
    assert not rollback(registry, "churn", 1, actor="me", reason="again").changed
    assert len(registry.audit_trail("churn")) == 2, "rolling back to the champion moves nothing"


def test_a_version_of_other_classes_is_neither_compared_with_the_champion_nor_replaces_it(stores, churn_champion,
                                                                                         churn_rows):
    from functions.errors import DatasetInvalid

    # A third label slipped into the data: its model's probabilities would be three wide, not two.
    three = churn_rows.assign(churned=[2 if i % 5 == 0 else c for i, c in enumerate(churn_rows["churned"])])
    v2, training2, metrics2 = register(stores, churn_champion.spec, three, "run-2", "b" * 64)
    with pytest.raises(DatasetInvalid) as caught:
        decide(stores, churn_champion.spec, v2, training2.holdout_key, metrics2)
    assert "v2 predicts the classes [0, 1, 2] but the champion v1 predicts [0, 1]" in caught.value.message
    assert "list the classes in the spec" in caught.value.message
    assert stores.registry.get_alias("churn") == 1 and stores.registry.get_alias("churn", "challenger") is None
    assert len(stores.registry.audit_trail("churn")) == 1
    # When the spec says the model now predicts three classes, the new shape is the user's decision.
    three_classes = respec(churn_champion.spec, classes=[0, 1, 2])
    decision = decide(stores, three_classes, v2, training2.holdout_key, metrics2)
    assert decision.promoted and "as the spec's classes now say" in decision.reason
    assert stores.registry.get_alias("churn") == 2


# --- approval at the gate, and the events of registration and promotion ---------------------------


def test_registration_is_announced_by_its_actor_and_the_version_waits_for_approval(stores, churn_spec, churn_rows):
    from tests.fakes import MemoryEventPublisher

    events = MemoryEventPublisher()
    training, metrics = trained_run(stores, churn_spec, churn_rows, "run-1", "a" * 64)
    register_version(stores.objects, stores.registry, spec=churn_spec, run_id="run-1", dataset_id="a" * 64,
                     training=training, metrics=metrics, code_version="c1", events=events, actor="arn:pipeline")
    record = stores.registry.get_version("churn", 1)
    assert record.status == "PendingManualApproval" and record.registered_by == "arn:pipeline"
    (event,) = events.events
    assert event.detail_type == "Model Version State Change" and event.detail == {
        "model": "churn", "version": 1, "from": None, "to": "PendingManualApproval",
        "reason": "registered by run run-1", "actor": "arn:pipeline", "time": record.created_at}
    register_version(stores.objects, stores.registry, spec=churn_spec, run_id="run-1", dataset_id="a" * 64,
                     training=training, metrics=metrics, code_version="c1", events=events, actor="arn:pipeline")
    assert len(events.events) == 1, "a retried registration changes nothing and announces nothing"


def test_with_auto_approval_the_gate_approves_and_crowns_its_winner(stores, churn_v1):
    from tests.fakes import MemoryEventPublisher

    events = MemoryEventPublisher()
    decision = promote(stores.objects, stores.registry, spec=churn_v1.spec, version=1, metrics=churn_v1.record.metrics,
                       holdout_key=churn_v1.record.holdout_key, events=events, actor="arn:pipeline")
    assert decision.promoted and decision.status == "Approved" and stores.registry.get_alias("churn") == 1
    approval, move = stores.registry.changes("churn")
    assert (approval.action, approval.actor, move.action, move.actor) == ("approve", "arn:pipeline", "set_champion",
                                                                          "arn:pipeline")
    assert approval.reason == f"auto-approved: {decision.reason}"
    assert [(e.detail_type, e.detail["to"]) for e in events.events] == [("Model Version State Change", "Approved"),
                                                                        ("Model Alias Change", 1)]


def test_with_manual_approval_the_winner_waits_as_challenger_until_approved_and_promoted(stores, churn_v1):
    from functions.registry.lifecycle import approve
    from functions.registry.lifecycle import promote as promote_by_hand
    from tests.fakes import MemoryEventPublisher

    manual = respec(churn_v1.spec, approval="manual")
    stores.registry.put_spec(manual)
    events = MemoryEventPublisher()
    decision = promote(stores.objects, stores.registry, spec=manual, version=1, metrics=churn_v1.record.metrics,
                       holdout_key=churn_v1.record.holdout_key, events=events, actor="arn:pipeline")
    assert not decision.promoted and decision.challenger == 1 and decision.status == "PendingManualApproval"
    assert "awaits approval" in decision.reason and "`mlops models approve churn 1`" in decision.reason
    assert stores.registry.get_alias("churn") is None and stores.registry.get_alias("churn", "challenger") == 1
    assert [e.detail_type for e in events.events] == ["Model Alias Change"]
    approve(stores.registry, "churn", 1, actor="arn:alice", events=events)
    promote_by_hand(stores.registry, "churn", 1, actor="arn:alice", events=events)
    assert stores.registry.get_alias("churn") == 1
    # The pipeline's step, retried now, finds the decision made.
    again = promote(stores.objects, stores.registry, spec=manual, version=1, metrics=churn_v1.record.metrics,
                    holdout_key=churn_v1.record.holdout_key, events=events, actor="arn:pipeline")
    assert again.promoted and "already the champion" in again.reason and len(events.events) == 3


def test_a_version_that_does_not_pass_the_gate_stays_pending_and_a_rejected_one_gets_no_alias(stores, churn_champion,
                                                                                              churn_rows):
    from functions.registry.lifecycle import reject

    v2, training2, metrics2 = register(stores, churn_champion.spec, churn_rows, "run-2", churn_champion.dataset_id)
    decision = decide(stores, churn_champion.spec, v2, training2.holdout_key, metrics2)
    assert not decision.promoted and decision.status == "PendingManualApproval"
    assert stores.registry.get_version("churn", 2).status == "PendingManualApproval"
    v3, training3, metrics3 = register(stores, churn_champion.spec, churn_rows, "run-3", churn_champion.dataset_id)
    reject(stores.registry, "churn", v3, actor="arn:alice", reason="trained on a bad export")
    decision = decide(stores, churn_champion.spec, v3, training3.holdout_key, metrics3)
    assert decision.challenger is None and "v3 was rejected" in decision.reason
    assert stores.registry.get_alias("churn", "challenger") == 2


def test_a_refused_promotion_announces_nothing(stores, churn_champion, churn_rows):
    from functions.errors import DatasetInvalid
    from tests.fakes import MemoryEventPublisher

    events = MemoryEventPublisher()
    three = churn_rows.assign(churned=[2 if i % 5 == 0 else c for i, c in enumerate(churn_rows["churned"])])
    v2, training2, metrics2 = register(stores, churn_champion.spec, three, "run-2", "b" * 64)
    with pytest.raises(DatasetInvalid):
        promote(stores.objects, stores.registry, spec=churn_champion.spec, version=v2, metrics=metrics2,
                holdout_key=training2.holdout_key, events=events, actor="arn:pipeline")
    assert events.events == [] and stores.registry.get_version("churn", 2).status == "PendingManualApproval"
