"""Dataset versions: an upload becomes a version identified by its content hash, with its profile."""

import json
import logging
from urllib.parse import unquote_plus


from functions.data.profile import profile_frame, read_dataset
from functions.data.store import DatasetStore
from functions.errors import DatasetInvalid, NotFound
from functions.registry.store import RegistryStore
from functions.storage import sha256, storage_errors

logger = logging.getLogger(__name__)

# A Lambda function holds the file, its frame and a model in memory: larger data belongs to
# SageMaker training jobs or AWS Batch (see DESIGN.md), not here.
MAX_DATASET_BYTES = 256 * 1024 * 1024
# A DynamoDB item holds 400 KB: the profile must fit with room to spare.
MAX_PROFILE_BYTES = 300_000


def read_upload(s3, bucket: str, key: str, version_id: str | None) -> bytes:
    """The bytes of exactly the uploaded object version."""
    version = {"VersionId": version_id} if version_id and version_id != "null" else {}
    # S3 event notifications may URL-encode keys: try the decoded form before giving up.
    for candidate in dict.fromkeys([key, unquote_plus(key)]):
        try:
            with storage_errors(f"reading the dataset {candidate}"):
                response = s3.get_object(Bucket=bucket, Key=candidate, **version)
        except NotFound:
            continue
        if int(response.get("ContentLength") or 0) > MAX_DATASET_BYTES:
            raise DatasetInvalid(f"the dataset {candidate.rsplit('/', 1)[-1]!r} is larger than "
                                 f"{MAX_DATASET_BYTES // 2**20} MB, the limit of in-Lambda training")
        with storage_errors(f"reading the dataset {candidate}"):
            return response["Body"].read()
    raise NotFound(f"the uploaded dataset {key} (version {version_id}) no longer exists")


def profile_for_storage(frame) -> dict:
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


def register_dataset(s3, store: DatasetStore, registry: RegistryStore, *, model: str, bucket: str, key: str,
                     version_id: str | None, run_id: str) -> dict:
    """Record the uploaded version (once per content) and link it to the run.

    Fails with UnknownModel when the model has no spec. The result carries the spec, so the
    whole run uses the spec as it was when it started. An unreadable file is not recorded as
    a dataset version; validation reports why.
    """
    spec = registry.get_spec(model)
    data = read_upload(s3, bucket, key, version_id)
    dataset_id = sha256(data)
    registry.update_run(model, run_id, dataset_id=dataset_id)
    result = {"dataset_id": dataset_id, "key": key, "version_id": version_id, "bytes": len(data),
              "spec": spec.model_dump(mode="json")}
    try:
        frame = read_dataset(data, key)
    except DatasetInvalid as error:
        logger.info("the upload is unreadable; validation will report it", extra={"reason": error.message})
        return {**result, "rows": 0, "columns": {}, "readable": False}
    columns = {str(name): str(dtype) for name, dtype in frame.dtypes.items()}
    created = store.put_dataset(
        model, dataset_id, bucket=bucket, key=key, version_id=version_id, rows=len(frame), columns=columns,
        profile=profile_for_storage(frame), run_id=run_id,
    )
    logger.info("dataset version recorded" if created else "dataset version already known",
                extra={"dataset_id": dataset_id, "rows": len(frame)})
    return {**result, "rows": len(frame), "columns": columns, "readable": True, "new": created}
