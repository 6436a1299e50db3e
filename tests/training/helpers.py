"""Running the pipeline the way the state machine does: its step handlers (under moto), or its
domain steps on the in-memory stores (the same calls the handlers make, without AWS)."""

import json
from collections.abc import Callable
from typing import Any

from functions.data import handler as data_handler
from functions.data.datasets import register_dataset
from functions.data.validation import validate_upload
from functions.errors import MlopsError
from functions.features import handler as features_handler
from functions.features.build import build_run_features, publish_run_features
from functions.pipeline.state import (
    DatasetResult,
    EvaluationResult,
    FeaturesResult,
    PipelineState,
    RegistrationResult,
    StepResult,
    TrainingResult,
)
from functions.pipeline.step import metrics
from functions.records import Run
from functions.registry import handler as registry_handler
from functions.registry.promotion import promote, register_version
from functions.training import handler as training_handler
from functions.training import runs
from functions.training.start import run_id_for

STEPS = [
    ("dataset", data_handler.register_dataset),
    ("validation", data_handler.validate_dataset),
    ("features", features_handler.build_features),
    ("training", training_handler.train),
    ("evaluation", training_handler.evaluate),
    ("registration", registry_handler.register_model),
    ("promotion", registry_handler.promote),
    ("publication", features_handler.publish_features),
    ("run", training_handler.record_success),
]


def upload_state(aws, model: str, name: str, body: bytes) -> dict:
    """Upload a file under datasets/<model>/ and return the execution input start_pipeline builds."""
    from functions.registry.dynamo import registry_store

    key = f"datasets/{model}/{name}"
    version_id = aws.upload(key, body)
    run_id = run_id_for(model, aws.bucket, key, version_id)
    registry_store().start_run(Run(model=model, run_id=run_id, bucket=aws.bucket, key=key, version_id=version_id,
                                   code_version="test-1"))
    return {"run_id": run_id, "model": model, "bucket": aws.bucket, "key": key, "version_id": version_id}


def caught(error: Exception) -> dict[str, str]:
    """Step Functions' {"Error", "Cause"} of a Lambda task that raised `error`."""
    cause = json.dumps({"errorMessage": str(error), "errorType": type(error).__name__})
    return {"Error": type(error).__name__, "Cause": cause}


def already_trained(path: str, result: Any) -> bool:
    """The state machine's Choice after RegisterDataset: a run identical to one that succeeded goes to RecordSuccess."""
    duplicate_of = result.get("duplicate_of") if isinstance(result, dict) else getattr(result, "duplicate_of", None)
    return path == "dataset" and isinstance(duplicate_of, str)


def run_pipeline(state: dict, context) -> dict:
    """Every step in order; a domain error goes to record_failure with Step Functions' error shape."""
    state = json.loads(json.dumps(state))
    skipping = False
    for path, step in STEPS:
        if skipping and path != "run":
            continue
        try:
            result = step(state, context)
        except MlopsError as error:  # the state machine catches every error; any other one is a bug here
            state["error"] = caught(error)
            metrics.clear_metrics()  # its own Lambda would not see what the failed step left in Metrics
            state["run"] = training_handler.record_failure(state, context)
            state["raised"] = error
            return state
        state[path] = json.loads(json.dumps(result))  # what a Lambda result survives: JSON
        skipping = skipping or already_trained(path, result)
    return state


# --- the same run on the in-memory stores ---------------------------------------------------------

DomainStep = Callable[[Any, PipelineState], StepResult]

DOMAIN_STEPS: list[tuple[str, DomainStep]] = [
    ("dataset", lambda s, state: register_dataset(
        s.objects, s.datasets, s.registry, model=state.model, key=state.key, version_id=state.version_id,
        run_id=state.run_id, code_version="test-1")),
    ("validation", lambda s, state: validate_upload(
        s.objects, spec=state.spec, key=state.key, version_id=state.version_id,
        dataset_id=state.result(DatasetResult).dataset_id, run_id=state.run_id, dataset=state.result(DatasetResult))),
    ("features", lambda s, state: build_run_features(
        s.objects, spec=state.spec, run_id=state.run_id, dataset=state.result(DatasetResult))),
    ("training", lambda s, state: runs.train_run(
        s.objects, spec=state.spec, run_id=state.run_id, features_key=state.result(FeaturesResult).features_key,
        dataset_id=state.result(DatasetResult).dataset_id)),
    ("evaluation", lambda s, state: runs.evaluate_run(s.objects, spec=state.spec,
                                                      training=state.result(TrainingResult))),
    ("registration", lambda s, state: register_version(
        s.objects, s.registry, spec=state.spec, run_id=state.run_id, dataset_id=state.result(DatasetResult).dataset_id,
        training=state.result(TrainingResult), metrics=state.result(EvaluationResult).metrics,
        code_version="test-1", warnings=state.warnings(), evaluation=state.result(EvaluationResult))),
    ("promotion", lambda s, state: promote(
        s.objects, s.registry, spec=state.spec, version=state.result(RegistrationResult).version,
        holdout_key=state.result(TrainingResult).holdout_key, metrics=state.result(EvaluationResult).metrics)),
    ("publication", lambda s, state: publish_run_features(
        s.objects, s.online, spec=state.spec, features=state.result(FeaturesResult),
        dataset_id=state.result(DatasetResult).dataset_id, ttl_days=30)),
    ("run", lambda s, state: runs.record_success(s.registry, state)),
]


def run_in_memory(stores, model: str, name: str, body: bytes,
                  metadata: dict[str, str] | None = None) -> tuple[PipelineState, Exception | None]:
    """Upload `body` as datasets/<model>/<name> (with user `metadata`) and run every domain step on `stores`,
    as the state machine would; a raised error is recorded by record_failure and returned."""
    key = f"datasets/{model}/{name}"
    version_id = stores.objects.put(key, body, metadata)
    run_id = run_id_for(model, stores.objects.bucket, key, version_id)
    stores.registry.start_run(Run(model=model, run_id=run_id, bucket=stores.objects.bucket, key=key,
                                  version_id=version_id, code_version="test-1"))
    state = PipelineState(run_id=run_id, model=model, bucket=stores.objects.bucket, key=key, version_id=version_id)
    skipping = False
    for path, step in DOMAIN_STEPS:
        if skipping and path != "run":
            continue
        try:
            result = step(stores, state)
        except MlopsError as error:  # the state machine catches every error; any other one is a bug here
            state = state.model_copy(update={"error": caught(error)})
            return state.model_copy(update={"run": runs.record_failure(stores.registry, state)}), error
        state = state.model_copy(update={path: result})
        skipping = skipping or already_trained(path, result)
    return state, None
