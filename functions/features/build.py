"""Building a run's features: the offline frame for training, then, once the model is registered, the
latest values online.

BuildFeatures puts the run's parsed upload (RegisterDataset's Parquet copy) through the one
transformation (shared.transform) and stores it as the run's model input (Parquet: features,
target and entity id). It checks that each entity's features fit an online item, so a run whose
features could never be served fails before training. PublishFeatures, after the registration
and the promotion (off the path to a registered model), writes each entity's latest row to the
online store in chunks, so a few of them are in memory at a time.
"""

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd

from functions.errors import DatasetInvalid, shown
from functions.features.store import MAX_ONLINE_ROW_BYTES, OnlineStore, entity_keys, latest_rows, row_bytes
from functions.pipeline.state import DatasetResult, FeaturesResult, PublicationResult
from functions.shared.tabular import read_dataset, read_frame, read_upload
from functions.shared.transform import model_input
from functions.spec import ModelSpec
from functions.storage.objects import ObjectStore

PUBLISH_CHUNK = 20_000  # entities handed to the online store at a time
# The longest JSON text of a number (a float's repr, "-1.2345678901234567e-308") and of one character
# (a control character's \uXXXX escape): an upper bound of a row's size without writing every row out.
MAX_NUMBER_JSON_BYTES = 24
MAX_CHAR_JSON_BYTES = 6


def model_frame(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Features, then the target, then the entity id (as canonical strings) when the spec has one."""
    result = model_input(frame, spec)
    if spec.entity_id and spec.entity_id in frame.columns:
        result[spec.entity_id] = entity_keys(frame[spec.entity_id])
    return result.reset_index(drop=True)


def _row_bytes_bound(features: pd.DataFrame, spec: ModelSpec) -> int:
    """At least the size of any row's online JSON (row_json), from each column's longest value."""
    size = 1 + len(spec.features)  # braces and commas
    for feature in spec.features:
        size += len(json.dumps(feature.name, ensure_ascii=False).encode()) + 1
        if feature.type == "numeric":
            size += MAX_NUMBER_JSON_BYTES
        else:
            lengths = features[feature.name].str.len()
            size += 2 + MAX_CHAR_JSON_BYTES * int(lengths.max() if len(lengths) else 0)
    return size


def _check_row_sizes(features: pd.DataFrame, spec: ModelSpec) -> None:
    """DatasetInvalid, before anything is written, when an entity's features would not fit an online item.

    Each row is measured only when the bound from the columns' longest values does not fit.
    """
    if _row_bytes_bound(features, spec) <= MAX_ONLINE_ROW_BYTES:
        return
    assert spec.entity_id is not None
    rows = latest_rows(features, spec.entity_id, spec.feature_names)
    sizes = {entity: row_bytes(row) for entity, row in rows.items()}
    too_large = [entity for entity, size in sizes.items() if size > MAX_ONLINE_ROW_BYTES]
    if too_large:
        largest = max(too_large, key=sizes.__getitem__)
        raise DatasetInvalid(
            f"the features of {len(too_large)} entit(y/ies) take more than {MAX_ONLINE_ROW_BYTES} bytes, what an "
            f"online item holds (entity {shown(largest, 40)}: {sizes[largest]} bytes): use fewer or shorter "
            "categorical values"
        )


def dataset_frame(objects: ObjectStore, dataset: DatasetResult) -> pd.DataFrame:
    """The run's parsed upload: RegisterDataset's Parquet copy (verified), or, for a state from before that copy
    existed, the upload itself."""
    if dataset.frame_key:
        return read_frame(objects, dataset.frame_key, dataset.frame_sha256)
    return read_dataset(read_upload(objects, dataset.key, dataset.version_id), dataset.key)


def build_run_features(objects: ObjectStore, *, spec: ModelSpec, run_id: str,
                       dataset: DatasetResult) -> FeaturesResult:
    """The run's model input (runs/<model>/<run>/features.parquet), and how many entities it holds."""
    features = model_frame(dataset_frame(objects, dataset), spec)
    entities = 0
    if spec.entity_id and spec.entity_id in features.columns:
        _check_row_sizes(features, spec)
        entities = int(features[spec.entity_id].nunique(dropna=True))
    features_key = f"runs/{spec.name}/{run_id}/features.parquet"
    digest = objects.put_frame(features_key, features)
    return FeaturesResult(features_key=features_key, features_sha256=digest, rows=len(features), entities=entities)


def _latest_chunks(features: pd.DataFrame, entity: str, names: list[str]) -> Iterator[dict[str, dict[str, Any]]]:
    """Each entity's last row (file order: a later row of the same entity is newer), PUBLISH_CHUNK at a time."""
    keyed = features[features[entity].notna()]
    latest = keyed.drop_duplicates(subset=[entity], keep="last")
    for start in range(0, len(latest), PUBLISH_CHUNK):
        chunk = latest.iloc[start:start + PUBLISH_CHUNK]
        yield dict(zip(chunk[entity].tolist(), chunk[names].to_dict("records"), strict=True))


def publish_run_features(objects: ObjectStore, online: OnlineStore, *, spec: ModelSpec, features: FeaturesResult,
                         dataset_id: str, ttl_days: int) -> PublicationResult:
    """Write each entity's latest features (from the run's model input) to the online store.

    Writing is idempotent (each entity's item is overwritten with the same values), so a retried
    step writes everything again safely.
    """
    if not spec.entity_id:
        return PublicationResult(entities=0)
    frame = read_frame(objects, features.features_key, features.features_sha256)
    if spec.entity_id not in frame.columns:
        return PublicationResult(entities=0)
    written = 0
    for rows in _latest_chunks(frame, spec.entity_id, spec.feature_names):
        written += online.put_latest(spec.name, rows, dataset_id=dataset_id, ttl_days=ttl_days)
    return PublicationResult(entities=written)
