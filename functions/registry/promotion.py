"""Registering a trained model as a version, and the promotion gate.

A new version becomes champion only when there is none yet, or when it beats the champion
on the same holdout: the champion is loaded and scored on this run's holdout with the spec's
metric, so both numbers come from the same rows. Otherwise it becomes the challenger. Every
alias move is a conditional write with its audit entry (see RegistryStore.set_alias).

Approval: a version is registered PendingManualApproval. One that passes the gate is approved by
it when the spec's `approval` is auto (the default), then made champion; with `approval: manual`
it becomes the challenger, still pending, until a person approves and promotes it
(registry.lifecycle). A version that does not pass the gate stays pending. Each change is
announced (registry.events) with who made it (`actor`).
"""

import logging
import platform
from collections.abc import Callable
from importlib import metadata
from typing import Any

import pandas as pd

from functions.errors import Conflict, DatasetInvalid, NotFound
from functions.pipeline.state import EvaluationResult, PromotionResult, RegistrationResult, TrainingResult
from functions.records import Artifacts, AuditEntry, ModelVersion
from functions.registry.artifacts import (
    PARITY_SAMPLE_ROWS,
    load_predictor,
    read_run_model,
    save_model,
    store_run_model,
)
from functions.registry.events import EventPublisher, announce
from functions.registry.lifecycle import registration
from functions.registry.store import UNKNOWN_ACTOR, RegistryStore
from functions.shared.models import classes_of, load_verified_pipeline
from functions.shared.scoring import beats, score
from functions.shared.transform import category
from functions.spec import ModelSpec
from functions.storage.objects import ObjectStore

logger = logging.getLogger(__name__)

PACKAGES = ["scikit-learn", "numpy", "pandas", "scipy", "skops", "skl2onnx", "onnxruntime", "pyarrow"]
SAMPLE_ROWS = PARITY_SAMPLE_ROWS  # holdout rows on which ONNX must agree with scikit-learn
PROMOTION_ATTEMPTS = 3


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def register_version(objects: ObjectStore, registry: RegistryStore, *, spec: ModelSpec, run_id: str,
                     dataset_id: str, training: TrainingResult, metrics: dict[str, float],
                     code_version: str, warnings: list[str] | None = None, events: EventPublisher | None = None,
                     actor: str = UNKNOWN_ACTOR, evaluation: EvaluationResult | None = None) -> RegistrationResult:
    """Store the run's model under models/<model>/v<n>/ and record version n (once per run).

    Idempotent per run: a retried step (throttled, or its reply lost) gets the number the first
    attempt reserved and finds the version if it was registered. What can fail without writing
    (reading and verifying the run's model and holdout) is done before a number is reserved; a
    run that fails after reserving gives its number back (RecordFailure, see training.runs).
    The version is registered PendingManualApproval by `actor`, and its registration announced on `events`.
    The model is not serialized again: the version's files are the bytes Train and Evaluate stored (`evaluation`).
    """
    store_model, classes = _prepared_model(objects, spec, training, evaluation)
    version = registry.version_for_run(spec.name, run_id)
    try:
        existing = registry.get_version(spec.name, version)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.run_id != run_id:  # the store gives a number to one run only: this is not a retry
            raise Conflict(f"version {version} of model {spec.name!r} is already registered by run "
                           f"{existing.run_id}, not by run {run_id}")
        return RegistrationResult(version=existing.version, format=existing.artifacts.format)  # a retried step
    # A retry after a failure below writes the same keys again: the number was reserved for this run.
    artifacts = store_model(f"models/{spec.name}/v{version}")
    record = ModelVersion(
        model=spec.name, version=version, run_id=run_id, dataset_id=dataset_id, task=spec.task, target=spec.target,
        signature=spec.signature, classes=classes, metric=spec.metric, metrics=metrics,
        artifacts=artifacts, estimator=training.estimator, params=training.params, code_version=code_version,
        packages=package_versions(), holdout_key=training.holdout_key, warnings=list(warnings or []),
        registered_by=actor,
    )
    registry.put_version(record)
    logger.info("version registered", extra={"model": spec.name, "version": version, "format": artifacts.format})
    announce(events, registration(record))
    return RegistrationResult(version=version, format=artifacts.format)


def _prepared_model(objects: ObjectStore, spec: ModelSpec, training: TrainingResult,
                    evaluation: EvaluationResult | None) -> tuple[Callable[[str], Artifacts], list[Any] | None]:
    """How to store the run's model under a key prefix, and its classes; the reads and checks that can fail
    without writing anything are done here. When Evaluate converted the model, its files are copied byte for
    byte (verified by sha256); for a state from before that, the model is converted here."""
    if evaluation is not None and evaluation.onnx_skipped is not None:
        model = read_run_model(objects, skops_key=training.model_key, skops_sha256=training.model_sha256,
                               trusted_types=training.trusted_types, onnx_key=evaluation.onnx_key,
                               onnx_sha256=evaluation.onnx_sha256, onnx_skipped=evaluation.onnx_skipped)
        return (lambda prefix: store_run_model(objects, prefix, model, spec)), evaluation.classes
    pipeline = load_verified_pipeline(objects, training.model_key, training.model_sha256, training.trusted_types)
    sample = objects.get_frame(training.holdout_key).head(SAMPLE_ROWS)
    return (lambda prefix: save_model(objects, prefix, pipeline, spec, sample)), classes_of(pipeline, spec)


def served_score(objects: ObjectStore, registry: RegistryStore, *, spec: ModelSpec, version: int,
                 holdout: pd.DataFrame) -> tuple[float | None, str | None]:
    """The score of `version` on `holdout` as it is served, or (None, why it cannot be compared)."""
    record = registry.get_version(spec.name, version)
    if record.task != spec.task:
        return None, f"v{version} solves another task ({record.task})"
    if record.target != spec.target:
        # Scored against this holdout's target, it would be graded on a question it never learned.
        return None, f"v{version} predicts another target ({record.target})"
    version_spec = record.trained_spec(spec)
    lacking = [name for name in version_spec.feature_names if name not in holdout.columns]
    if lacking:
        return None, f"v{version} needs features this holdout lacks ({', '.join(lacking)})"
    predictor = load_predictor(objects, record, version_spec)
    return score(predictor, holdout, version_spec).get(spec.metric), None


def promote(objects: ObjectStore, registry: RegistryStore, *, spec: ModelSpec, version: int, holdout_key: str,
            metrics: dict[str, float], events: EventPublisher | None = None,
            actor: str = UNKNOWN_ACTOR) -> PromotionResult:
    """Make `version` champion if it earns it (and is, or is auto-, approved), else challenger; the decision and why."""
    for _ in range(PROMOTION_ATTEMPTS):
        try:
            return _decide(objects, registry, spec=spec, version=version, holdout_key=holdout_key,
                           score=metrics.get(spec.metric), actor=actor, announced=lambda c: announce(events, c))
        except Conflict:
            logger.info("an alias moved during promotion; deciding again", extra={"model": spec.name})
    raise Conflict(f"the aliases of model {spec.name!r} kept moving during promotion; run it again")


def _decide(objects: ObjectStore, registry: RegistryStore, *, spec: ModelSpec, version: int, holdout_key: str,
            score: float | None, actor: str, announced: Callable[[AuditEntry], object]) -> PromotionResult:
    """One promotion decision (Conflict when an alias or the version's state moved under it)."""
    champion = registry.get_alias(spec.name, "champion")
    status = registry.get_version(spec.name, version).status
    current: float | None = None

    def decided(reason: str, promoted: bool = True, previous: int | None = champion,
                challenger: int | None = version) -> PromotionResult:
        return PromotionResult(promoted=promoted, champion=version if promoted else champion,
                               challenger=None if promoted else challenger, previous=previous, metric=spec.metric,
                               score=score, champion_score=current, reason=reason, status=status)

    def crown(reason: str) -> PromotionResult:
        """The gate passed: approved (when the spec allows it) and made champion; else the challenger, pending."""
        nonlocal status
        if status == "PendingManualApproval" and spec.approval == "auto":
            announced(registry.set_status(spec.name, version, "Approved", expected=status, actor=actor,
                                          reason=f"auto-approved: {reason}"))
            status = "Approved"
        if status == "Approved":
            announced(registry.set_alias(spec.name, "champion", version, expected=champion, reason=reason,
                                         actor=actor, approved_only=True))
            return decided(reason)
        if status == "Rejected":
            return challenge(reason)
        return challenge(f"v{version} passed the gate ({reason}) and awaits approval (the spec's approval is manual): "
                         f"`mlops models approve {spec.name} {version}`, then `mlops models promote {spec.name} "
                         f"{version}`")

    def challenge(reason: str) -> PromotionResult:
        if status == "Rejected":  # rejected by a person since it was registered: no alias
            return decided(f"{reason}; v{version} was rejected, so it stays registered without an alias",
                           promoted=False, challenger=None)
        challenger = registry.get_alias(spec.name, "challenger")
        if challenger != version:
            announced(registry.set_alias(spec.name, "challenger", version, expected=challenger, reason=reason,
                                         actor=actor))
        return decided(reason, promoted=False)

    if champion == version:  # a retried step that already promoted
        return decided(f"v{version} is already the champion", previous=_previous(registry, spec.name, version))
    if champion is None:
        return crown(f"v{version} is the first champion of model {spec.name!r}")
    if reshaped := _output_change(registry, spec.name, version, champion):
        if spec.classes is None:  # the data changed the model's output, not the user
            raise DatasetInvalid(
                f"{reshaped}: a model whose output has another shape is neither compared with the champion nor "
                f"put in its place (v{version} stays registered, without an alias); fix the labels of the "
                "dataset, or list the classes in the spec (`classes`) to change the model's output on purpose"
            )
        return crown(f"v{version} replaces the champion: {reshaped}, as the spec's classes now say")
    holdout = objects.get_frame(holdout_key)
    # Both sides are scored as they are served (ONNX when they have it) on the same rows,
    # so float32 noise cannot decide between two equal models.
    served, _ = served_score(objects, registry, spec=spec, version=version, holdout=holdout)
    score = served if served is not None else score
    current, incomparable = served_score(objects, registry, spec=spec, version=champion, holdout=holdout)
    if incomparable and score is not None:
        return crown(f"v{version} replaces the champion: {incomparable}")
    comparison = f"{spec.metric} {_fmt(score)} vs {_fmt(current)} for v{champion} on the same holdout"
    if beats(score, current, spec.higher_is_better):
        return crown(f"v{version} beats the champion v{champion}: {comparison}")
    return challenge(f"v{version} does not beat the champion v{champion}: {incomparable or comparison}")


def _output_change(registry: RegistryStore, model: str, version: int, champion: int) -> str | None:
    """How `version` predicts other classes than the champion (same task and target), or None."""
    new, current = registry.get_version(model, version), registry.get_version(model, champion)
    if new.task != "classification" or current.task != new.task or current.target != new.target:
        return None  # another question altogether: served_score says so
    if new.classes is None or current.classes is None:
        return None
    if {category(c) for c in new.classes} == {category(c) for c in current.classes}:
        return None
    return (f"v{version} predicts the classes [{', '.join(map(repr, new.classes))}] but the champion v{champion} "
            f"predicts [{', '.join(map(repr, current.classes))}]")


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _previous(registry: RegistryStore, model: str, version: int) -> int | None:
    for entry in reversed(registry.audit_trail(model)):
        if entry.alias == "champion" and entry.version == version:
            return entry.from_version
    return None
