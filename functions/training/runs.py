"""Training runs: starting one per upload, training and evaluating, and recording how it ended.

A run is named after the uploaded object version, so a duplicate event (EventBridge delivers
at least once) finds its run record and its execution already there and starts nothing.
"""

import json
import logging

from botocore.exceptions import ClientError

from functions.errors import MlopsError
from functions.features.store import read_frame, write_frame
from functions.registry.artifacts import SkopsPredictor, loads_skops, read_verified
from functions.registry.store import RegistryStore, now_iso
from functions.spec import ModelSpec, is_model_name
from functions.storage import sha256, storage_errors
from functions.training.evaluate import score
from functions.training.state import PipelineState
from functions.training.train import fit

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 2000


def run_id_for(model: str, bucket: str, key: str, version_id: str | None) -> str:
    """The run an upload starts: the same object version always gives the same id."""
    return f"{model}-{sha256(f'{bucket}/{key}/{version_id}'.encode())[:16]}"


def model_of_key(key: str) -> str | None:
    """The model an upload is for: datasets/<model>/<file>; None for any other key."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "datasets" or not parts[2] or not is_model_name(parts[1]):
        return None
    return parts[1]


def start_run(registry: RegistryStore, sfn, *, state_machine_arn: str, bucket: str, key: str,
              version_id: str | None, code_version: str) -> dict:
    """Record the run (RUNNING) and start its execution; both are no-ops for a duplicate event.

    `recorded` says whether this event created the run: a duplicate finds the record there, and
    Step Functions answers a repeated start of the same name either with the running execution
    (same input) or ExecutionAlreadyExists (finished), never a second execution.
    """
    model = model_of_key(key)
    if model is None:
        return {"started": False, "reason": f"{key} is not under datasets/<model>/<file>"}
    run_id = run_id_for(model, bucket, key, version_id)
    recorded = registry.start_run(model, run_id, bucket=bucket, key=key, version_id=version_id,
                                  code_version=code_version)
    execution_input = {"run_id": run_id, "model": model, "bucket": bucket, "key": key, "version_id": version_id}
    started = True
    with storage_errors(f"starting run {run_id}"):
        try:
            sfn.start_execution(stateMachineArn=state_machine_arn, name=run_id, input=json.dumps(execution_input))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise
            started = False
    return {"started": started, "recorded": recorded, "run_id": run_id, "model": model}


def run_prefix(model: str, run_id: str) -> str:
    return f"runs/{model}/{run_id}"


def train_run(s3, *, spec: ModelSpec, bucket: str, run_id: str, features_key: str, dataset_id: str) -> dict:
    """Fit the spec's pipeline on the run's features; store train/holdout frames and the model (skops)."""
    import skops.io as sio

    frame = read_frame(s3, bucket, features_key)
    result = fit(frame, spec, dataset_id)
    prefix = run_prefix(spec.name, run_id)
    columns = spec.feature_names + [spec.target]
    train_key, holdout_key, model_key = f"{prefix}/train.parquet", f"{prefix}/holdout.parquet", f"{prefix}/model.skops"
    write_frame(s3, bucket, train_key, result.train[columns])
    write_frame(s3, bucket, holdout_key, result.holdout[columns])
    model_bytes = sio.dumps(result.pipeline)
    model_sha256 = sha256(model_bytes)
    with storage_errors("saving the trained model"):
        s3.put_object(Bucket=bucket, Key=model_key, Body=model_bytes, Metadata={"sha256": model_sha256})
    return {
        "model_key": model_key,
        "model_sha256": model_sha256,
        "trusted_types": sorted(sio.get_untrusted_types(data=model_bytes)),
        "train_key": train_key,
        "holdout_key": holdout_key,
        "params": result.params,
        "estimator": spec.estimator.name,
        "seed": result.seed,
        "stratified": result.stratified,
        "rows": {"train": len(result.train), "holdout": len(result.holdout)},
    }


def load_run_pipeline(s3, bucket: str, training: dict):
    """The pipeline a run trained, verified by its sha256 and loaded with its recorded types only."""
    data = read_verified(s3, bucket, training["model_key"], training.get("model_sha256"))
    return loads_skops(data, training.get("trusted_types") or [])


def evaluate_run(s3, *, spec: ModelSpec, bucket: str, training: dict) -> dict:
    """The run's model scored on its holdout."""
    pipeline = load_run_pipeline(s3, bucket, training)
    holdout = read_frame(s3, bucket, training["holdout_key"])
    metrics = score(SkopsPredictor(pipeline, spec), holdout, spec)
    return {"metrics": metrics, "holdout_rows": len(holdout)}


def record_success(registry: RegistryStore, state: PipelineState) -> dict:
    registration = state.require("registration")
    promotion = state.require("promotion")
    metrics = state.require("evaluation").get("metrics", {})
    fields = {
        "status": "SUCCEEDED",
        "ended_at": now_iso(),
        "metrics": metrics,
        "model_version": registration["version"],
        "promoted": bool(promotion.get("promoted")),
        "champion": promotion.get("champion"),
        "promotion_reason": promotion.get("reason", ""),
        "dataset_id": (state.dataset or {}).get("dataset_id"),
        "params": (state.training or {}).get("params", {}),
    }
    registry.update_run(state.model, state.run_id, **fields)
    return {"status": "SUCCEEDED", "model_version": fields["model_version"], "promoted": fields["promoted"]}


def _domain_errors() -> set[str]:
    names, pending = set(), [MlopsError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


def failure_reason(error: dict | None, run_id: str, step: str) -> str:
    """Why a run failed, for its user: a domain error's own message, never internal details."""
    error = error or {}
    name = str(error.get("Error", ""))
    cause = error.get("Cause")
    if isinstance(cause, str):
        try:
            cause = json.loads(cause)
        except ValueError:
            cause = {}
    cause = cause if isinstance(cause, dict) else {}
    error_type = str(cause.get("errorType") or name)
    message = cause.get("errorMessage")
    if error_type in _domain_errors() and isinstance(message, str) and message.strip():
        return message.strip()[:MAX_REASON_CHARS]
    if name in {"States.Timeout", "States.HeartbeatTimeout"} or error_type == "Sandbox.Timedout":
        return f"step {step} timed out; see the logs of run {run_id}"
    return f"internal error in the pipeline; see the logs of run {run_id}"


def record_failure(registry: RegistryStore, state: PipelineState) -> dict:
    step = state.failed_step()
    reason = failure_reason(state.error, state.run_id, step)
    error_type = str((state.error or {}).get("Error", "")) or "unknown"
    logger.warning("run failed", extra={"run_id": state.run_id, "failed_step": step, "error": error_type})
    registry.update_run(
        state.model, state.run_id,
        status="FAILED", ended_at=now_iso(), failure_reason=reason, failed_step=step, error_type=error_type,
        dataset_id=(state.dataset or {}).get("dataset_id"),
    )
    return {"status": "FAILED", "failure_reason": reason, "failed_step": step}
