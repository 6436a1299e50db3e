"""Building a run's features: the offline frame for training, the latest values online.

The upload goes through the one transformation (shared.transform) and is stored as the
run's model input (Parquet: features, target and entity id). When the spec names an entity
id, each entity's latest row is written to the online store (serving does not read it yet).
"""

import pandas as pd

from functions.errors import DatasetInvalid, shown
from functions.features.store import MAX_ONLINE_ROW_BYTES, OnlineStore, entity_key, latest_rows, row_bytes
from functions.pipeline.state import FeaturesResult
from functions.shared.tabular import read_dataset, read_upload
from functions.shared.transform import model_input
from functions.spec import ModelSpec
from functions.storage.objects import ObjectStore


def model_frame(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Features, then the target, then the entity id (as canonical strings) when the spec has one."""
    result = model_input(frame, spec)
    if spec.entity_id and spec.entity_id in frame.columns:
        result[spec.entity_id] = pd.Series([entity_key(v) for v in frame[spec.entity_id].tolist()],
                                           index=frame.index, dtype=object)
    return result.reset_index(drop=True)


def _check_row_sizes(rows: dict[str, dict]) -> None:
    """DatasetInvalid, before anything is written, when an entity's features would not fit an online item."""
    sizes = {entity: row_bytes(row) for entity, row in rows.items()}
    too_large = [entity for entity, size in sizes.items() if size > MAX_ONLINE_ROW_BYTES]
    if too_large:
        largest = max(too_large, key=sizes.__getitem__)
        raise DatasetInvalid(
            f"the features of {len(too_large)} entit(y/ies) take more than {MAX_ONLINE_ROW_BYTES} bytes, what an "
            f"online item holds (entity {shown(largest, 40)}: {sizes[largest]} bytes): use fewer or shorter "
            "categorical values"
        )


def build_run_features(objects: ObjectStore, online: OnlineStore, *, spec: ModelSpec, key: str,
                       version_id: str | None, run_id: str, dataset_id: str, ttl_days: int) -> FeaturesResult:
    frame = read_dataset(read_upload(objects, key, version_id), key)
    features = model_frame(frame, spec)
    features_key = f"runs/{spec.name}/{run_id}/features.parquet"
    digest = objects.put_frame(features_key, features)
    entities = 0
    if spec.entity_id and spec.entity_id in features.columns:
        rows = latest_rows(features, spec.entity_id, spec.feature_names)
        _check_row_sizes(rows)
        entities = online.put_latest(spec.name, rows, dataset_id=dataset_id, ttl_days=ttl_days)
    return FeaturesResult(features_key=features_key, features_sha256=digest, rows=len(features), entities=entities)
