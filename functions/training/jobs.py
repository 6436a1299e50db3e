"""CollectTraining: a SageMaker training job's model.tar.gz unpacked where the Lambda step stores a run's model.

The job (training.train_entry, run by SageMaker's scikit-learn container) leaves the model, the train
and holdout frames and its summary in its model directory; SageMaker uploads them as one archive. Here
they are checked (the model against the sha256 the job recorded) and stored under runs/<model>/<run>/,
so that Evaluate, RegisterModel and Promote read a SageMaker-trained run exactly as a Lambda-trained one.
"""

from functions.errors import IntegrityError
from functions.pipeline.state import TrainingJobResult, TrainingResult
from functions.spec import ModelSpec
from functions.storage.objects import ObjectStore
from functions.training.train_entry import HOLDOUT_FILE, MODEL_FILE, TRAIN_FILE, read_model_archive


def archive_key(objects: ObjectStore, uri: str, model: str, run_id: str) -> str:
    """The key of a job's model.tar.gz: only in the data bucket, under the run's own prefix."""
    prefix = f"s3://{objects.bucket}/"
    key = uri.removeprefix(prefix)
    if not uri.startswith(prefix) or not key.startswith(f"runs/{model}/{run_id}/") or ".." in key.split("/"):
        raise IntegrityError(f"the training job's model is not under the run's prefix: {uri[:300]}")
    return key


def collect_training(objects: ObjectStore, *, spec: ModelSpec, run_id: str, job: TrainingJobResult) -> TrainingResult:
    summary, files = read_model_archive(objects.get_bytes(archive_key(objects, job.model_artifacts, spec.name, run_id)))
    prefix = f"runs/{spec.name}/{run_id}"
    train_key, holdout_key, model_key = f"{prefix}/train.parquet", f"{prefix}/holdout.parquet", f"{prefix}/model.skops"
    objects.put_bytes(train_key, files[TRAIN_FILE], content_type="application/vnd.apache.parquet")
    objects.put_bytes(holdout_key, files[HOLDOUT_FILE], content_type="application/vnd.apache.parquet")
    return TrainingResult(
        model_key=model_key, model_sha256=objects.put_bytes(model_key, files[MODEL_FILE]),
        trusted_types=summary.trusted_types, train_key=train_key, holdout_key=holdout_key, params=summary.params,
        estimator=summary.estimator, seed=summary.seed, stratified=summary.stratified, grouped=summary.grouped,
        rows=summary.rows, backend="sagemaker", job_name=job.job_name,
    )
