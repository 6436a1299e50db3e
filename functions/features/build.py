"""Building a run's features: the offline frame for training, the latest values online.

The upload goes through the one transformation (shared.transform) and is stored as the
run's model input (Parquet: features, target and entity id). When the spec names an entity
id, each entity's latest row is written to the online store (serving does not read it yet).
"""

import pandas as pd

from functions.features.store import OnlineStore, entity_key, latest_rows
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


def build_run_features(objects: ObjectStore, online: OnlineStore, *, spec: ModelSpec, key: str,
                       version_id: str | None, run_id: str, dataset_id: str, ttl_days: int) -> FeaturesResult:
    frame = read_dataset(read_upload(objects, key, version_id), key)
    features = model_frame(frame, spec)
    features_key = f"runs/{spec.name}/{run_id}/features.parquet"
    digest = objects.put_frame(features_key, features)
    entities = 0
    if spec.entity_id and spec.entity_id in features.columns:
        rows = latest_rows(features, spec.entity_id, spec.feature_names)
        entities = online.put_latest(spec.name, rows, dataset_id=dataset_id, ttl_days=ttl_days)
    return FeaturesResult(features_key=features_key, features_sha256=digest, rows=len(features), entities=entities)
