"""The training entry point: the same code trains the model in the Lambda step and in a SageMaker training job.

`train_model` fits the spec's pipeline (the best trial's estimator and parameters after a search) on
the run's features, split as training splits them. The Lambda step (training.runs.train_run) calls it
on the features it reads from S3. SageMaker's scikit-learn container runs `main()` (through the
`train_entry.py` at the root of the job's source directory, infra/training.py) with the job's channels:

    SM_CHANNEL_FEATURES   the run's features (one Parquet file)
    SM_CHANNEL_CONFIG     job.json (spec, dataset id, run id) and, after a search, best.json (the best trial)
    SM_MODEL_DIR          model.skops, train.parquet, holdout.parquet and training.json (what was trained, the
                          model's sha256): SageMaker uploads the directory as <output>/<job>/output/model.tar.gz
    SM_OUTPUT_DIR         a run that cannot be trained writes its reason to `failure` (SageMaker reports it as
                          the job's FailureReason) and exits 1

CollectTraining (training.runs.collect_training) unpacks model.tar.gz where the Lambda step stores its model.
"""

import io
import json
import os
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from functions.errors import IntegrityError, MlopsError
from functions.shared.models import dumps_skops
from functions.spec import Estimator, ModelSpec
from functions.storage.objects import sha256
from functions.training.train import TrainResult, fit

CONFIG_FILE = "job.json"
BEST_FILE = "best.json"
MODEL_FILE, TRAIN_FILE, HOLDOUT_FILE, SUMMARY_FILE = "model.skops", "train.parquet", "holdout.parquet", "training.json"
FAILURE_FILE = "failure"
MAX_FAILURE_CHARS = 1024  # what SageMaker keeps of a job's FailureReason


class JobConfig(BaseModel):
    """What to train: job.json in the config channel (PlanTraining writes it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    spec: ModelSpec
    dataset_id: str
    run_id: str


class BestTrial(BaseModel):
    """best.json (SelectBest writes the whole trial): the estimator and parameters to train."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    estimator: str
    params: dict[str, Any]

    def as_estimator(self) -> Estimator:
        return Estimator(name=self.estimator, params=self.params)


class TrainingSummary(BaseModel):
    """training.json: what was trained, and the model's hash (CollectTraining verifies the model by it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    estimator: str
    params: dict[str, Any]
    seed: int
    stratified: bool
    grouped: bool
    rows: dict[str, int]
    model_sha256: str
    trusted_types: list[str]


@dataclass
class TrainedModel:
    result: TrainResult
    model_bytes: bytes
    trusted_types: list[str]
    estimator: str

    def summary(self) -> TrainingSummary:
        return TrainingSummary(estimator=self.estimator, params=self.result.params, seed=self.result.seed,
                               stratified=self.result.stratified, grouped=self.result.grouped,
                               rows={"train": len(self.result.train), "holdout": len(self.result.holdout)},
                               model_sha256=sha256(self.model_bytes), trusted_types=self.trusted_types)


def training_spec(spec: ModelSpec, best: Estimator | None = None) -> ModelSpec:
    """The spec as it is trained: after a search, with the best trial's estimator and parameters."""
    return spec if best is None else spec.model_copy(update={"estimator": best})


def train_model(frame: pd.DataFrame, spec: ModelSpec, dataset_id: str, best: Estimator | None = None) -> TrainedModel:
    """Fit the model the run trains on `frame` (features + target): the spec's, or the best trial's."""
    trained_spec = training_spec(spec, best)
    result = fit(frame, trained_spec, dataset_id)
    columns = trained_spec.feature_names + [trained_spec.target]
    result.train, result.holdout = result.train[columns], result.holdout[columns]
    model_bytes, trusted_types = dumps_skops(result.pipeline)
    return TrainedModel(result, model_bytes, trusted_types, trained_spec.estimator.name)


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def model_files(trained: TrainedModel) -> dict[str, bytes]:
    """What a training job leaves in its model directory."""
    return {
        MODEL_FILE: trained.model_bytes,
        TRAIN_FILE: _frame_bytes(trained.result.train),
        HOLDOUT_FILE: _frame_bytes(trained.result.holdout),
        SUMMARY_FILE: trained.summary().model_dump_json(indent=2).encode(),
    }


def read_model_archive(archive: bytes) -> tuple[TrainingSummary, dict[str, bytes]]:
    """The files of a job's model.tar.gz, its model checked against the summary's sha256 (IntegrityError)."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and name in {MODEL_FILE, TRAIN_FILE, HOLDOUT_FILE, SUMMARY_FILE}:
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        files[name] = extracted.read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise IntegrityError("the training job's model.tar.gz is not a readable archive") from error
    lacking = sorted({MODEL_FILE, TRAIN_FILE, HOLDOUT_FILE, SUMMARY_FILE} - set(files))
    if lacking:
        raise IntegrityError(f"the training job's model.tar.gz lacks {', '.join(lacking)}")
    summary = TrainingSummary.model_validate_json(files[SUMMARY_FILE])
    if sha256(files[MODEL_FILE]) != summary.model_sha256:
        raise IntegrityError("the training job's model does not match the sha256 it recorded")
    return summary, files


def _channel(environ: Mapping[str, str], name: str) -> Path:
    return Path(environ[f"SM_CHANNEL_{name.upper()}"])


def main(environ: Mapping[str, str] | None = None) -> int:
    """Train from SageMaker's channels into its model directory; 1 (and the reason in `failure`) when it cannot."""
    environ = os.environ if environ is None else environ
    output_dir = Path(environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))
    try:
        config_dir = _channel(environ, "config")
        config = JobConfig.model_validate_json((config_dir / CONFIG_FILE).read_bytes())
        best_file = config_dir / BEST_FILE
        best = BestTrial.model_validate_json(best_file.read_bytes()).as_estimator() if best_file.exists() else None
        parquet = sorted(_channel(environ, "features").glob("*.parquet"))
        if not parquet:
            raise IntegrityError("the features channel holds no Parquet file")
        trained = train_model(pd.read_parquet(parquet[0]), config.spec, config.dataset_id, best)
        model_dir = Path(environ["SM_MODEL_DIR"])
        model_dir.mkdir(parents=True, exist_ok=True)
        for name, data in model_files(trained).items():
            (model_dir / name).write_bytes(data)
    except MlopsError as error:  # the run's reason, as SageMaker reports a job's failure
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / FAILURE_FILE).write_text(error.message[:MAX_FAILURE_CHARS])
        print(json.dumps({"error": type(error).__name__, "message": error.message}), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
