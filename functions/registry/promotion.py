"""Registering a trained model as a version, and the promotion gate.

A new version becomes champion only when there is none yet, or when it beats the champion
on the same holdout: the champion is loaded and scored on this run's holdout with the spec's
metric, so both numbers come from the same rows. Otherwise it becomes the challenger. Every
alias move is a conditional write with its audit item (see RegistryStore.set_alias).
"""

import logging
import platform
from importlib import metadata

import pandas as pd

from functions.errors import Conflict, NotFound
from functions.features.store import read_frame
from functions.registry.artifacts import load_predictor, save_model
from functions.registry.store import RegistryStore
from functions.spec import ModelSpec
from functions.training.evaluate import beats, score
from functions.training.runs import load_run_pipeline

logger = logging.getLogger(__name__)

PACKAGES = ["scikit-learn", "numpy", "pandas", "scipy", "skops", "skl2onnx", "onnxruntime", "pyarrow"]
SAMPLE_ROWS = 200  # rows on which ONNX must agree with scikit-learn
PROMOTION_ATTEMPTS = 3


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def register_version(s3, registry: RegistryStore, *, spec: ModelSpec, bucket: str, run_id: str, dataset_id: str,
                     training: dict, metrics: dict, code_version: str) -> dict:
    """Store the run's model under models/<model>/v<n>/ and record version n (once per run)."""
    version = registry.version_for_run(spec.name, run_id)
    try:
        existing = registry.get_version(spec.name, version)
    except NotFound:
        existing = None
    if existing is not None:  # a retried step: the version is already there
        artifacts = existing.get("artifacts") or {}
        return {"version": existing["version"], "onnx": bool(artifacts.get("onnx_key")),
                "format": "onnx" if artifacts.get("onnx_key") else "skops"}
    # A retry after a failure below writes the same keys again: the number was reserved for this run.
    pipeline = load_run_pipeline(s3, bucket, training)
    holdout = read_frame(s3, bucket, training["holdout_key"])
    artifacts = save_model(s3, bucket, f"models/{spec.name}/v{version}", pipeline, spec, holdout.head(SAMPLE_ROWS))
    registry.put_version(spec.name, version, {
        "run_id": run_id,
        "dataset_id": dataset_id,
        "metrics": metrics,
        "metric": spec.metric,
        "signature": spec.signature,
        "task": spec.task,
        "target": spec.target,
        "classes": artifacts.get("classes"),
        "artifacts": artifacts,
        "estimator": spec.estimator.name,
        "params": training.get("params", {}),
        "code_version": code_version,
        "packages": package_versions(),
        "status": "registered",
        "holdout_key": training["holdout_key"],
    })
    onnx = bool(artifacts.get("onnx_key"))
    logger.info("version registered", extra={"model": spec.name, "version": version, "onnx": onnx})
    return {"version": version, "onnx": onnx, "format": "onnx" if onnx else "skops"}


def served_score(s3, registry: RegistryStore, *, spec: ModelSpec, bucket: str, version: int,
                 holdout: pd.DataFrame) -> tuple[float | None, str | None]:
    """The score of `version` on `holdout` as it is served, or (None, why it cannot be compared)."""
    record = registry.get_version(spec.name, version)
    if record.get("task", spec.task) != spec.task:
        return None, f"v{version} solves another task ({record.get('task')})"
    if record.get("target", spec.target) != spec.target:
        # Scored against this holdout's target, it would be graded on a question it never learned.
        return None, f"v{version} predicts another target ({record.get('target')})"
    version_spec = spec.for_version(record)
    lacking = [name for name in version_spec.feature_names if name not in holdout.columns]
    if lacking:
        return None, f"v{version} needs features this holdout lacks ({', '.join(lacking)})"
    predictor = load_predictor(s3, bucket, record["artifacts"], version_spec)
    return score(predictor, holdout, version_spec).get(spec.metric), None


def promote(s3, registry: RegistryStore, *, spec: ModelSpec, bucket: str, version: int, holdout_key: str,
            metrics: dict) -> dict:
    """Make `version` champion if it earns it, else challenger; returns the decision and why."""
    holdout = None
    new_score = metrics.get(spec.metric)
    for _ in range(PROMOTION_ATTEMPTS):
        champion = registry.get_alias(spec.name, "champion")
        decision = {"metric": spec.metric, "score": new_score, "previous": champion}
        if champion == version:  # a retried step that already promoted
            return {**decision, "promoted": True, "champion": version, "previous": _previous(registry, spec.name, version),
                    "reason": f"v{version} is already the champion"}
        try:
            if champion is None:
                reason = f"v{version} is the first champion of model {spec.name!r}"
                registry.set_alias(spec.name, "champion", version, expected=None, reason=reason)
                return {**decision, "promoted": True, "champion": version, "reason": reason}
            if holdout is None:
                holdout = read_frame(s3, bucket, holdout_key)
                # Both sides are scored as they are served (ONNX when they have it) on the same rows,
                # so float32 noise cannot decide between two equal models.
                served, _ = served_score(s3, registry, spec=spec, bucket=bucket, version=version, holdout=holdout)
                new_score = served if served is not None else new_score
                decision["score"] = new_score
            current, incomparable = served_score(s3, registry, spec=spec, bucket=bucket, version=champion,
                                                 holdout=holdout)
            decision["champion_score"] = current
            if incomparable and new_score is not None:
                reason = f"v{version} replaces the champion: {incomparable}"
                registry.set_alias(spec.name, "champion", version, expected=champion, reason=reason)
                return {**decision, "promoted": True, "champion": version, "reason": reason}
            comparison = f"{spec.metric} {_fmt(new_score)} vs {_fmt(current)} for v{champion} on the same holdout"
            if beats(new_score, current, spec.higher_is_better):
                reason = f"v{version} beats the champion v{champion}: {comparison}"
                registry.set_alias(spec.name, "champion", version, expected=champion, reason=reason)
                return {**decision, "promoted": True, "champion": version, "reason": reason}
            reason = f"v{version} does not beat the champion v{champion}: {incomparable or comparison}"
            challenger = registry.get_alias(spec.name, "challenger")
            if challenger != version:
                registry.set_alias(spec.name, "challenger", version, expected=challenger, reason=reason)
            return {**decision, "promoted": False, "champion": champion, "challenger": version, "reason": reason}
        except Conflict:
            logger.info("an alias moved during promotion; deciding again", extra={"model": spec.name})
    raise Conflict(f"the aliases of model {spec.name!r} kept moving during promotion; run it again")


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _previous(registry: RegistryStore, model: str, version: int) -> int | None:
    for item in reversed(registry.audit_trail(model)):
        if item.get("alias") == "champion" and item.get("version") == version:
            return item.get("from_version")
    return None


def rollback(registry: RegistryStore, model: str, to_version: int, reason: str) -> dict:
    """Point the champion back at an earlier registered version (audited like any alias move)."""
    registry.get_version(model, to_version)  # NotFound for a version that does not exist
    current = registry.get_alias(model, "champion")
    if current is None:
        raise NotFound(f"model {model!r} has no champion to roll back")
    if current != to_version:
        registry.set_alias(model, "champion", to_version, expected=current, reason=f"rollback: {reason}")
    return {"champion": to_version, "previous": current}
