"""PlanTraining: where the run's model trains (Lambda or a SageMaker training job) and whether a search runs first.

The backend is the spec's `backend`, else the dataset's size: past `sagemaker_threshold_cells` (rows x
feature columns) a SageMaker training job, else the Lambda step. A spec with a search gets its trials
(drawn from the dataset id's seed), written for the Map that runs them: inline, with the trials in the
state, up to `distributed_search_threshold` trials; past it a Distributed Map reads them from S3
(trials.json), so that a search of thousands of trials never meets Step Functions' state size limit.
Without a search nothing is read: the simple path stays one small write at most.
"""

from functions.pipeline.state import DatasetResult, FeaturesResult, PlanResult, TrainingJob
from functions.spec import Backend, ModelSpec
from functions.storage.objects import ObjectStore, sha256
from functions.training.search import SearchContext, check_folds, search_prefix, trials_for
from functions.training.settings import TrainingSettings
from functions.training.train import prepare
from functions.training.train_entry import CONFIG_FILE, JobConfig


def training_prefix(model: str, run_id: str) -> str:
    """Where a run's training inputs are: job.json (what to train) and best.json (after a search)."""
    return f"runs/{model}/{run_id}/training/"


def job_name(model: str, run_id: str) -> str:
    """The run's SageMaker training job (the template adds -<retry>): unique per run, within 63 characters."""
    return f"{model[:30].rstrip('-')}-{sha256(run_id.encode())[:16]}"


def choose_backend(spec: ModelSpec, features: FeaturesResult, threshold_cells: int) -> tuple[Backend, str]:
    if spec.backend is not None:
        return spec.backend, f"the spec asks for {spec.backend}"
    cells = features.rows * len(spec.features)
    size = f"{features.rows:,} rows x {len(spec.features)} features = {cells:,} cells"
    if cells > threshold_cells:
        return "sagemaker", f"{size}, past {threshold_cells:,}"
    return "lambda", f"{size}, within {threshold_cells:,}"


def plan_training(objects: ObjectStore, *, spec: ModelSpec, run_id: str, dataset: DatasetResult,
                  features: FeaturesResult, code_version: str, settings: TrainingSettings) -> PlanResult:
    backend, reason = choose_backend(spec, features, settings.sagemaker_threshold_cells)
    job = None
    if backend == "sagemaker":
        inputs = training_prefix(spec.name, run_id)
        objects.put_json(inputs + CONFIG_FILE, JobConfig(spec=spec, dataset_id=dataset.dataset_id, run_id=run_id)
                         .model_dump(mode="json"))
        job = TrainingJob(name=job_name(spec.name, run_id), features_uri=f"s3://{objects.bucket}/{features.features_key}",
                          config_uri=f"s3://{objects.bucket}/{inputs}",
                          output_uri=f"s3://{objects.bucket}/runs/{spec.name}/{run_id}/sagemaker/")
    if spec.search is None:
        return PlanResult(backend=backend, backend_reason=reason, job=job)
    prepared = prepare(objects.get_frame(features.features_key), spec, dataset.dataset_id)
    check_folds(prepared.train, spec, spec.search.cv_folds, prepared.groups)
    trials = trials_for(spec.search, prepared.seed)
    prefix = search_prefix(spec.name, run_id)
    search_key, trials_key = f"{prefix}/search.json", f"{prefix}/trials.json"
    objects.put_json(search_key, SearchContext(
        spec=spec, dataset_id=dataset.dataset_id, features_key=features.features_key,
        results_prefix=f"{prefix}/trials/", bucket=objects.bucket, key=dataset.key, version_id=dataset.version_id,
        code_version=code_version,
    ).model_dump(mode="json"))
    objects.put_json(trials_key, [trial.model_dump(mode="json") for trial in trials])
    inline = len(trials) <= settings.distributed_search_threshold
    return PlanResult(backend=backend, backend_reason=reason, search="inline" if inline else "distributed",
                      trials=len(trials), search_key=search_key, trials_key=trials_key,
                      items=trials if inline else [], job=job)
