"""Dataset versions: an upload becomes a version identified by its content hash, with its profile."""

import json
import logging

import pandas as pd

from functions.data.profile import profile_frame
from functions.data.store import DatasetStore
from functions.errors import DatasetInvalid, NotFound
from functions.pipeline.state import DatasetResult
from functions.records import DatasetVersion, Run
from functions.registry.store import RegistryStore
from functions.shared.tabular import frame_bytes, read_dataset, read_upload, upload_metadata
from functions.spec import ModelSpec
from functions.storage.objects import ObjectStore, sha256

logger = logging.getLogger(__name__)

# A DynamoDB item holds 400 KB: the profile must fit with room to spare.
MAX_PROFILE_BYTES = 300_000
# The upload's user metadata that asks to train again what was trained already (`mlops data push --retrain`,
# `aws s3 cp ... --metadata retrain=true`).
RETRAIN_METADATA = "retrain"
CLAIM_ATTEMPTS = 3


def profile_for_storage(frame: pd.DataFrame) -> dict:
    """The profile, made coarser when a very wide table would not fit in its item.

    The item also holds the column map (name -> dtype), so it counts against the same budget.
    """
    columns_bytes = len(json.dumps({str(name): str(dtype) for name, dtype in frame.dtypes.items()}))
    for points in (101, 21):
        profile = profile_frame(frame, quantile_points=points)
        if columns_bytes + len(json.dumps(profile)) <= MAX_PROFILE_BYTES:
            return profile
    raise DatasetInvalid(
        f"the dataset has too many columns ({len(frame.columns)}), or too long column names, to profile"
    )


def run_key_for(dataset_id: str, spec: ModelSpec, code_version: str) -> str:
    """A run's identity: the dataset's content, the spec (its description aside) and the code version."""
    identity = {"dataset": dataset_id, "spec": spec.model_dump(mode="json", exclude={"description"}),
                "code": code_version}
    return sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False).encode())


def asks_for_retrain(metadata: dict[str, str]) -> bool:
    """Whether an upload's metadata asks to train again what was trained already (retrain: true)."""
    return metadata.get(RETRAIN_METADATA, "").strip().lower() in {"true", "1", "yes"}


def earlier_run(datasets: DatasetStore, registry: RegistryStore, *, model: str, run_key: str, run_id: str,
                retrain: bool) -> Run | None:
    """The run of the same identity that succeeded before, or None when this run is to train.

    The first run of an identity claims it; a later one finds the claim: when the claiming run
    succeeded, it matches it (unless it asks for a retrain); when that run failed (or is gone)
    it takes the claim over; while that run is still running, both train (at worst the work is
    done twice, never skipped wrongly).
    """
    for _ in range(CLAIM_ATTEMPTS):
        holder = datasets.identified_run(model, run_key)
        if holder == run_id:  # a retried step: this run holds it
            return None
        if holder is not None:
            try:
                held = registry.get_run(model, holder)
            except NotFound:
                held = None
            if held is not None and held.status == "SUCCEEDED":
                return None if retrain else held
            if held is not None and held.status == "RUNNING":
                return None
        if datasets.claim_identity(model, run_key, run_id, expected=holder):
            return None
    return None  # other runs keep claiming it: train (never skip wrongly)


def dataset_frame_key(model: str, run_id: str) -> str:
    """Where a run keeps the upload parsed once: the typed frame every later step reads."""
    return f"runs/{model}/{run_id}/dataset.parquet"


def register_dataset(objects: ObjectStore, datasets: DatasetStore, registry: RegistryStore, *, model: str, key: str,
                     version_id: str | None, run_id: str, code_version: str) -> DatasetResult:
    """Record the uploaded version (once per content) and link it to the run.

    Fails with UnknownModel when the model has no spec. The result carries the spec, so the
    whole run uses the spec as it was when it started. The upload is read and parsed here, once:
    the typed frame is stored as the run's Parquet copy (`frame_key`, verified by `frame_sha256`),
    which validation, features and training read. An unreadable file is not recorded as a dataset
    version; the result says why (`unreadable`) and validation reports it. When a run of the same
    identity (content, spec, code version) succeeded before, the result names it (`duplicate_of`):
    the state machine then ends the run as a success without training, unless the upload asks for
    a retrain (object metadata `retrain: true`).
    """
    spec = registry.get_spec(model)
    data = read_upload(objects, key, version_id)
    dataset_id, size = sha256(data), len(data)
    run_key = run_key_for(dataset_id, spec, code_version)
    retrain = asks_for_retrain(upload_metadata(objects, key, version_id))
    registry.update_run(model, run_id, dataset_id=dataset_id, run_key=run_key, retrain=retrain)
    try:
        frame = read_dataset(data, key)
        del data  # one copy of the table in memory: the frame
        parquet = frame_bytes(frame, key.rsplit("/", 1)[-1])
    except DatasetInvalid as error:
        logger.info("the upload is unreadable; validation will report it", extra={"reason": error.message})
        return DatasetResult(dataset_id=dataset_id, key=key, version_id=version_id, bytes=size, spec=spec,
                             readable=False, run_key=run_key, retrain=retrain, unreadable=error.message)
    columns = {str(name): str(dtype) for name, dtype in frame.dtypes.items()}
    created = datasets.put_dataset(DatasetVersion(
        model=model, dataset_id=dataset_id, bucket=objects.bucket, key=key, version_id=version_id, rows=len(frame),
        columns=columns, profile=profile_for_storage(frame), runs={run_id},
    ))
    logger.info("dataset version recorded" if created else "dataset version already known",
                extra={"dataset_id": dataset_id, "rows": len(frame)})
    earlier = earlier_run(datasets, registry, model=model, run_key=run_key, run_id=run_id, retrain=retrain)
    if earlier is not None:
        logger.info("an identical run succeeded before: nothing to train",
                    extra={"duplicate_of": earlier.run_id, "model_version": earlier.model_version})
        frame_key = frame_sha256 = None  # nothing reads it: the run ends here
    else:
        frame_key = dataset_frame_key(model, run_id)
        frame_sha256 = objects.put_bytes(frame_key, parquet, content_type="application/vnd.apache.parquet")
    return DatasetResult(dataset_id=dataset_id, key=key, version_id=version_id, bytes=size, spec=spec,
                         rows=len(frame), columns=columns, readable=True, new=created, run_key=run_key,
                         retrain=retrain, duplicate_of=earlier.run_id if earlier else None,
                         duplicate_version=earlier.model_version if earlier else None,
                         frame_key=frame_key, frame_sha256=frame_sha256)
