"""Dataset versions: an upload becomes a version identified by its content hash, with its profile."""

import json
import logging

import pandas as pd

from functions.data.profile import profile_frame
from functions.data.store import DatasetStore
from functions.errors import DatasetInvalid
from functions.pipeline.state import DatasetResult
from functions.records import DatasetVersion
from functions.registry.store import RegistryStore
from functions.shared.tabular import read_dataset, read_upload
from functions.storage.objects import ObjectStore, sha256

logger = logging.getLogger(__name__)

# A DynamoDB item holds 400 KB: the profile must fit with room to spare.
MAX_PROFILE_BYTES = 300_000


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


def register_dataset(objects: ObjectStore, datasets: DatasetStore, registry: RegistryStore, *, model: str, key: str,
                     version_id: str | None, run_id: str) -> DatasetResult:
    """Record the uploaded version (once per content) and link it to the run.

    Fails with UnknownModel when the model has no spec. The result carries the spec, so the
    whole run uses the spec as it was when it started. An unreadable file is not recorded as
    a dataset version; validation reports why.
    """
    spec = registry.get_spec(model)
    data = read_upload(objects, key, version_id)
    dataset_id = sha256(data)
    registry.update_run(model, run_id, dataset_id=dataset_id)
    try:
        frame = read_dataset(data, key)
    except DatasetInvalid as error:
        logger.info("the upload is unreadable; validation will report it", extra={"reason": error.message})
        return DatasetResult(dataset_id=dataset_id, key=key, version_id=version_id, bytes=len(data), spec=spec,
                             readable=False)
    columns = {str(name): str(dtype) for name, dtype in frame.dtypes.items()}
    created = datasets.put_dataset(DatasetVersion(
        model=model, dataset_id=dataset_id, bucket=objects.bucket, key=key, version_id=version_id, rows=len(frame),
        columns=columns, profile=profile_for_storage(frame), runs={run_id},
    ))
    logger.info("dataset version recorded" if created else "dataset version already known",
                extra={"dataset_id": dataset_id, "rows": len(frame)})
    return DatasetResult(dataset_id=dataset_id, key=key, version_id=version_id, bytes=len(data), spec=spec,
                         rows=len(frame), columns=columns, readable=True, new=created)
