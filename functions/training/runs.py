"""Training runs: training and evaluating a run's model, and recording how the run ended."""

import logging
from typing import Any

from functions.errors import MlopsError
from functions.pipeline.failures import step_error
from functions.pipeline.state import (
    DatasetResult,
    EvaluationResult,
    PipelineState,
    PromotionResult,
    RegistrationResult,
    RunResult,
    TrainingResult,
)
from functions.records import RunArtifact, now_iso
from functions.registry.artifacts import PARITY_SAMPLE_ROWS, save_served_model
from functions.registry.promotion import package_versions
from functions.registry.store import RegistryStore
from functions.shared.models import ArrayAnswers, SkopsPredictor, classes_of, load_verified_pipeline
from functions.shared.reference import FILE_NAME as REFERENCE_FILE
from functions.shared.reference import build_reference, output_values, to_bytes
from functions.shared.scoring import chance_warnings, metrics_of
from functions.spec import Estimator, ModelSpec
from functions.storage.objects import ObjectStore
from functions.training.train_entry import train_model

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 2000
# Errors of the Lambda service itself (the step's function never ran, or its reply never came).
LAMBDA_UNAVAILABLE = {"Lambda.TooManyRequestsException", "Lambda.ServiceException", "Lambda.AWSLambdaException",
                      "Lambda.SdkClientException"}


def run_prefix(model: str, run_id: str) -> str:
    return f"runs/{model}/{run_id}"


def train_run(objects: ObjectStore, *, spec: ModelSpec, run_id: str, features_key: str,
              dataset_id: str, best: Estimator | None = None) -> TrainingResult:
    """Fit the spec's pipeline (after a search: the best trial's) on the run's features, with the training entry
    point a SageMaker job runs too; store train/holdout frames and the model (skops)."""
    trained = train_model(objects.get_frame(features_key), spec, dataset_id, best)
    result = trained.result
    prefix = run_prefix(spec.name, run_id)
    train_key, holdout_key, model_key = f"{prefix}/train.parquet", f"{prefix}/holdout.parquet", f"{prefix}/model.skops"
    objects.put_frame(train_key, result.train)
    objects.put_frame(holdout_key, result.holdout)
    return TrainingResult(
        model_key=model_key, model_sha256=objects.put_bytes(model_key, trained.model_bytes),
        trusted_types=trained.trusted_types, train_key=train_key, holdout_key=holdout_key, params=result.params,
        estimator=trained.estimator, seed=result.seed, stratified=result.stratified, grouped=result.grouped,
        rows={"train": len(result.train), "holdout": len(result.holdout)},
    )


def evaluate_run(objects: ObjectStore, *, spec: ModelSpec, training: TrainingResult) -> EvaluationResult:
    """The run's model scored on its holdout, with a warning when it scores at chance level; and its served
    format, converted here once (the model is loaded once in a run: here), beside the run's model.skops."""
    pipeline = load_verified_pipeline(objects, training.model_key, training.model_sha256, training.trusted_types)
    holdout = objects.get_frame(training.holdout_key)
    predictor = SkopsPredictor(pipeline, spec)
    answers = predictor.predict_columns(holdout)  # once: scored, and profiled as the version's reference output
    metrics = metrics_of(spec, holdout[spec.target], answers, predictor.classes)
    warnings = chance_warnings(spec, metrics, holdout[spec.target])
    if warnings:
        logger.warning("the model scores at chance level", extra={"model": spec.name, "metrics": metrics})
    prefix = training.model_key.rsplit('/', 1)[0]
    onnx_key, onnx_sha256, skipped = save_served_model(objects, f"{prefix}/model.onnx",
                                                       pipeline, spec, holdout.head(PARITY_SAMPLE_ROWS))
    classes = classes_of(pipeline, spec)
    reference_key = f"{prefix}/{REFERENCE_FILE}"
    reference_sha256 = objects.put_bytes(reference_key, reference_profile(objects, spec, training, answers, classes))
    return EvaluationResult(metrics=metrics, holdout_rows=len(holdout), warnings=warnings,
                            classes=classes, onnx_key=onnx_key, onnx_sha256=onnx_sha256,
                            onnx_skipped=skipped, reference_key=reference_key, reference_sha256=reference_sha256)


def reference_profile(objects: ObjectStore, spec: ModelSpec, training: TrainingResult, holdout_answers: ArrayAnswers,
                      classes: list[Any] | None) -> bytes:
    """The version's reference for drift checks: its training columns, and its output on the holdout (rows it
    did not learn from, as live rows are)."""
    output, kind = output_values(spec.task, *holdout_answers, classes)
    reference = build_reference(objects.get_frame(training.train_key), {f.name: f.type for f in spec.features},
                                output=output, output_kind=kind, seed=training.seed)
    return to_bytes(reference)


def run_artifacts(state: PipelineState) -> dict[str, RunArtifact]:
    """What the run stored so far, by name: the validation report, the features, the train and holdout
    frames and the trained model (the registered version's own files are on its record)."""
    found: dict[str, RunArtifact] = {}
    if state.validation is not None:
        found["validation"] = RunArtifact(key=state.validation.report_key)
    if state.features is not None:
        found["features"] = RunArtifact(key=state.features.features_key, sha256=state.features.features_sha256)
    if state.training is not None:
        training = state.training
        found["train"] = RunArtifact(key=training.train_key)
        found["holdout"] = RunArtifact(key=training.holdout_key)
        found["model"] = RunArtifact(key=training.model_key, sha256=training.model_sha256)
    if state.evaluation is not None and state.evaluation.onnx_key:
        found["onnx"] = RunArtifact(key=state.evaluation.onnx_key, sha256=state.evaluation.onnx_sha256)
    if state.evaluation is not None and state.evaluation.reference_key:
        found["reference"] = RunArtifact(key=state.evaluation.reference_key, sha256=state.evaluation.reference_sha256)
    return found


def record_success(registry: RegistryStore, state: PipelineState) -> RunResult:
    """The run's success: what it trained, registered and promoted; or, for a run identical to an earlier one
    that succeeded (RegisterDataset found it), that run's id and model version: it trained nothing."""
    dataset = state.result(DatasetResult)
    if dataset.duplicate_of is not None:
        registry.update_run(state.model, state.run_id, status="SUCCEEDED", ended_at=now_iso(),
                            duplicate_of=dataset.duplicate_of, model_version=dataset.duplicate_version,
                            dataset_id=dataset.dataset_id, packages=package_versions())
        return RunResult(status="SUCCEEDED", model_version=dataset.duplicate_version,
                         duplicate_of=dataset.duplicate_of)
    registration = state.result(RegistrationResult)
    promotion = state.result(PromotionResult)
    registry.update_run(
        state.model, state.run_id,
        status="SUCCEEDED", ended_at=now_iso(), metrics=state.result(EvaluationResult).metrics,
        model_version=registration.version, promoted=promotion.promoted, champion=promotion.champion,
        promotion_reason=promotion.reason, dataset_id=state.result(DatasetResult).dataset_id,
        params=state.result(TrainingResult).params, warnings=state.warnings(),
        packages=package_versions(), artifacts=run_artifacts(state),
    )
    return RunResult(status="SUCCEEDED", model_version=registration.version, promoted=promotion.promoted)


def failure_reason(error: dict[str, Any] | None, run_id: str, step: str) -> str:
    """Why a run failed, for its user: a domain error's own message, never internal details."""
    failed = step_error(error)
    name, error_type, cause = failed.name, failed.error_type, failed.cause
    if failed.domain_message:
        return failed.domain_message[:MAX_REASON_CHARS]
    if "TrainingJobStatus" in cause:  # a SageMaker training job that ended badly: the .sync task's cause describes it
        why = " ".join(str(cause.get("FailureReason") or "no reason given").split())
        return (f"the SageMaker training job {cause.get('TrainingJobName', '')} "
                f"{str(cause['TrainingJobStatus']).lower()}: {why}")[:MAX_REASON_CHARS]
    if name.startswith("SageMaker."):
        return f"step {step}: SageMaker refused to start the training job; see the execution history of run {run_id}"
    if name in {"States.Timeout", "States.HeartbeatTimeout"} or error_type == "Sandbox.Timedout":
        return f"step {step} timed out; see the logs of run {run_id}"
    if name in LAMBDA_UNAVAILABLE:
        return (f"step {step} could not be run: AWS Lambda was busy or unavailable past the pipeline's retries; "
                "upload the file again to start a new run")
    return f"internal error in the pipeline; see the logs of run {run_id}"


def record_failure(registry: RegistryStore, state: PipelineState) -> RunResult:
    """Record why the run failed and what it had done; give back a version number it reserved but never registered.

    Each write is tried even when the other fails (the first failure is raised, for the state
    machine to retry the step; both writes are idempotent).
    """
    step = state.failed_step()
    reason = failure_reason(state.error, state.run_id, step)
    error_type = str((state.error or {}).get("Error", "")) or "unknown"
    outcome: dict[str, Any] = {}
    if state.registration is not None:  # the version stays registered: the record says which
        outcome["model_version"] = state.registration.version
    if state.promotion is not None:  # it failed after the promotion gate (recording its success)
        promotion = state.promotion
        outcome.update(promoted=promotion.promoted, champion=promotion.champion,
                       promotion_reason=promotion.reason)
        became = "the champion" if promotion.promoted else "the challenger"
        version = state.registration.version if state.registration else "?"
        reason = f"v{version} became {became}, but the run's success was not recorded: {reason}"
        reason = reason[:MAX_REASON_CHARS]
    logger.warning("run failed", extra={"run_id": state.run_id, "failed_step": step, "error": error_type})
    failures: list[MlopsError] = []
    try:
        registry.update_run(
            state.model, state.run_id,
            status="FAILED", ended_at=now_iso(), failure_reason=reason, failed_step=step, error_type=error_type,
            dataset_id=state.dataset.dataset_id if state.dataset else None, packages=package_versions(),
            artifacts=run_artifacts(state), **outcome,
        )
    except MlopsError as error:
        failures.append(error)
    if step == "RegisterModel":  # it may have reserved a number it never registered
        try:
            if registry.release_version(state.model, state.run_id):
                logger.info("version number given back", extra={"run_id": state.run_id})
        except MlopsError as error:
            failures.append(error)
    if failures:
        raise failures[0]
    return RunResult(status="FAILED", failure_reason=reason, failed_step=step)
