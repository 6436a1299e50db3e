"""Running the pipeline the way the state machine does: its step handlers (under moto), or its
domain steps on the in-memory stores (the same calls the handlers make, without AWS)."""

import io
import json
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
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
    PlanResult,
    RegistrationResult,
    StepResult,
    TrainingJobResult,
    TrainingResult,
    TrialInput,
)
from functions.pipeline.step import metrics
from functions.records import Run
from functions.registry import handler as registry_handler
from functions.registry.promotion import promote, register_version
from functions.spec import Estimator
from functions.training import handler as training_handler
from functions.training import jobs, plan, runs, search, train_entry
from functions.training.settings import TrainingSettings
from functions.training.start import run_id_for

STEPS = [
    ("dataset", data_handler.register_dataset),
    ("validation", data_handler.validate_dataset),
    ("features", features_handler.build_features),
    ("plan", training_handler.plan_training),
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


def handler_section(state: dict, context) -> dict:
    """The training section after PlanTraining, through the handlers (the SageMaker job on the data bucket)."""
    from functions.storage.s3 import data_objects

    planned = state["plan"]
    if planned["search"] != "none":
        items = planned["items"] or data_objects().get_json(planned["trials_key"])
        for item in items:
            training_handler.run_trial({"run_id": state["run_id"], "model": state["model"],
                                        "search_key": planned["search_key"], "trial": item}, context)
        state["search"] = json.loads(json.dumps(training_handler.select_best(state, context)))
    if planned["backend"] == "sagemaker":
        state["training_job"] = run_sagemaker_job(data_objects(), PipelineState.model_validate(state))
        state["training"] = json.loads(json.dumps(training_handler.collect_training(state, context)))
    return state


def run_pipeline(state: dict, context) -> dict:
    """Every step in order; a domain error goes to record_failure with Step Functions' error shape."""
    state = json.loads(json.dumps(state))
    skipping = False
    for path, step in STEPS:
        if skipping and path != "run" or (path == "training" and "training" in state):
            continue
        try:
            result = step(state, context)
            state[path] = json.loads(json.dumps(result))  # what a Lambda result survives: JSON
            if path == "plan":
                state = handler_section(state, context)
        except MlopsError as error:  # the state machine catches every error; any other one is a bug here
            state["error"] = caught(error)
            metrics.clear_metrics()  # its own Lambda would not see what the failed step left in Metrics
            state["run"] = training_handler.record_failure(state, context)
            state["raised"] = error
            return state
        skipping = skipping or already_trained(path, result)
    return state


# --- the same run on the in-memory stores ---------------------------------------------------------

DomainStep = Callable[[Any, PipelineState], StepResult]
# PlanTraining's settings in the tests: a search of more than 4 trials runs in the Distributed Map.
TRAINING_SETTINGS = TrainingSettings.model_validate({
    "DATA_BUCKET": "mlops-test-data", "DATASETS_TABLE": "datasets", "REGISTRY_TABLE": "registry",
    "FEATURES_TABLE": "features", "CODE_VERSION": "test-1", "DISTRIBUTED_SEARCH_THRESHOLD": 4})


def best_of(state: PipelineState) -> Estimator | None:
    """The best trial's estimator, after a search (what the Train step trains)."""
    return Estimator(name=state.search.best.estimator, params=state.search.best.params) if state.search else None


def run_sagemaker_job(objects, state: PipelineState, retry: int = 0) -> dict[str, Any]:
    """The SageMaker training job of the run's plan, as local/sagemaker.py runs it, on an in-memory bucket: the
    channels downloaded, train_entry.main run, the model directory stored as model.tar.gz. Returns what the
    task's ResultSelector keeps; a failed job raises TaskFailed with its description (machine.py)."""
    from tests.pipeline.machine import TaskFailed

    job = state.result(PlanResult).job
    assert job is not None, "the plan names no training job"
    name = f"{job.name}-{retry}"
    with tempfile.TemporaryDirectory() as root:
        base = Path(root)
        environ = {"SM_MODEL_DIR": str(base / "model"), "SM_OUTPUT_DIR": str(base / "output")}
        for channel, uri in (("features", job.features_uri), ("config", job.config_uri)):
            prefix = uri.removeprefix(f"s3://{objects.bucket}/")
            folder = prefix.rsplit("/", 1)[0] + "/"
            for key in objects.list_keys(prefix):
                path = base / channel / key[len(folder):]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(objects.get_bytes(key))
            environ[f"SM_CHANNEL_{channel.upper()}"] = str(base / channel)
        if train_entry.main(environ) != 0:
            reason = (base / "output" / train_entry.FAILURE_FILE).read_text()
            raise TaskFailed({"TrainingJobName": name, "TrainingJobStatus": "Failed", "FailureReason": reason})
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            for path in sorted((base / "model").iterdir()):
                tar.add(path, arcname=path.name)
    key = f"{job.output_uri.removeprefix(f's3://{objects.bucket}/')}{name}/output/model.tar.gz"
    objects.put_bytes(key, archive.getvalue())
    return {"job_name": name, "status": "Completed", "model_artifacts": f"s3://{objects.bucket}/{key}"}


def trial_result(result: Any) -> dict[str, Any]:
    """What the trial function returns to its Map (training.handler.run_trial)."""
    return {"index": result.index, "status": result.status, "score": result.score}


# The training section's states (besides PlanTraining and Train): a task on the state, or on a trial's event.
SECTION_DOMAIN: dict[str, Callable[[Any, Any], Any]] = {
    "SelectBest": lambda s, state: search.select_best(
        s.objects, s.registry, run_id=state.run_id, search_key=state.result(PlanResult).search_key,
        trials_key=state.result(PlanResult).trials_key,
        best_key=plan.training_prefix(state.model, state.run_id) + train_entry.BEST_FILE),
    "CollectTraining": lambda s, state: jobs.collect_training(
        s.objects, spec=state.spec, run_id=state.run_id, job=state.result(TrainingJobResult)),
    "TrainOnSageMaker": lambda s, state: TrainingJobResult.model_validate(run_sagemaker_job(s.objects, state)),
}


def domain_trial(stores, event: dict[str, Any]) -> dict[str, Any]:
    return trial_result(search.run_trial(stores.objects, stores.registry, TrialInput.model_validate(event)))


def run_section(stores, state: PipelineState) -> PipelineState:
    """The training section after PlanTraining, on the in-memory stores: the search's trials and SelectBest (when
    planned), then the SageMaker job and CollectTraining (on that backend); Train is the next step otherwise."""
    planned = state.result(PlanResult)
    if planned.search != "none":
        items = planned.items or [search.TrialItem.model_validate(i) for i in stores.objects.get_json(
            planned.trials_key)]
        for item in items:
            domain_trial(stores, {"run_id": state.run_id, "model": state.model, "search_key": planned.search_key,
                                  "trial": item.model_dump(mode="json")})
        state = state.model_copy(update={"search": SECTION_DOMAIN["SelectBest"](stores, state)})
    if planned.backend == "sagemaker":
        state = state.model_copy(update={"training_job": SECTION_DOMAIN["TrainOnSageMaker"](stores, state)})
        state = state.model_copy(update={"training": SECTION_DOMAIN["CollectTraining"](stores, state)})
    return state

DOMAIN_STEPS: list[tuple[str, DomainStep]] = [
    ("dataset", lambda s, state: register_dataset(
        s.objects, s.datasets, s.registry, model=state.model, key=state.key, version_id=state.version_id,
        run_id=state.run_id, code_version="test-1")),
    ("validation", lambda s, state: validate_upload(
        s.objects, spec=state.spec, key=state.key, version_id=state.version_id,
        dataset_id=state.result(DatasetResult).dataset_id, run_id=state.run_id, dataset=state.result(DatasetResult))),
    ("features", lambda s, state: build_run_features(
        s.objects, spec=state.spec, run_id=state.run_id, dataset=state.result(DatasetResult))),
    ("plan", lambda s, state: plan.plan_training(
        s.objects, spec=state.spec, run_id=state.run_id, dataset=state.result(DatasetResult),
        features=state.result(FeaturesResult), code_version="test-1", settings=TRAINING_SETTINGS)),
    ("training", lambda s, state: runs.train_run(
        s.objects, spec=state.spec, run_id=state.run_id, features_key=state.result(FeaturesResult).features_key,
        dataset_id=state.result(DatasetResult).dataset_id, best=best_of(state))),
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
        if skipping and path != "run" or (path == "training" and state.training is not None):
            continue  # an identical run trains nothing; a SageMaker-trained run's model is collected already
        try:
            result = step(stores, state)
            state = state.model_copy(update={path: result})
            if path == "plan":
                state = run_section(stores, state)
        except MlopsError as error:  # the state machine catches every error; any other one is a bug here
            state = state.model_copy(update={"error": caught(error)})
            return state.model_copy(update={"run": runs.record_failure(stores.registry, state)}), error
        skipping = skipping or already_trained(path, result)
    return state, None
