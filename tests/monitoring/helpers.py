"""Captured requests written the way the predict API writes them, and champions to check."""

import gzip
import uuid
from datetime import UTC, datetime

import pandas as pd

from cli.demo_data import churn_frame
from functions.data.store import DatasetStore
from functions.records import DatasetVersion
from functions.registry.store import RegistryStore
from functions.serving.capture import capture_lines, capture_record, hour_prefix
from functions.storage.objects import ObjectStore
from tests.conftest import CHURN_FEATURES, Champion


def instances(frame: pd.DataFrame) -> list[dict]:
    """Rows as predict instances (plain Python values, the churn signature only)."""
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in frame[CHURN_FEATURES].to_dict("records")]


def shifted_instances(rows: int = 90, seed: int = 21) -> list[dict]:
    """Traffic from a market that has moved since training."""
    return instances(churn_frame(rows=rows, seed=seed, shift=1.0))


def capture(objects: ObjectStore, at: datetime, rows: list[dict], *, model: str = "churn", version: int = 1,
            per_request: int = 30, delivered: datetime | None = None,
            predictions: list | None = None) -> list[str]:
    """Capture `rows` at `at`, `per_request` instances a request, delivered as Firehose delivers them: one GZIP
    object of newline-delimited records in the records' model, day and hour partition, named after its delivery
    time (`delivered`, by default `at`). Returns the key. Without `predictions` (one per row) the records carry
    no outputs, so a check compares the inputs only (made-up answers would be a prediction drift)."""
    lines = []
    for start in range(0, len(rows), per_request):
        batch = rows[start:start + per_request]
        answers = predictions[start:start + per_request] if predictions is not None else [0] * len(batch)
        record = capture_record(model=model, version=version, request_id=f"r-{start}", at=at, inputs=batch,
                                predictions=answers)
        if predictions is None:
            del record["outputs"]
        lines.extend(capture_lines(record))
    return [deliver(objects, hour_prefix(model, at), lines, delivered or at)]


def deliver(objects: ObjectStore, prefix: str, lines: list[str], at: datetime) -> str:
    """One object as Firehose names it: <stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>.gz."""
    key = f"{prefix}captures-1-{at.astimezone(UTC):%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}.gz"
    objects.put_bytes(key, gzip.compress("".join(f"{line}\n" for line in lines).encode()))
    return key


def serve_copy(registry: RegistryStore, datasets: DatasetStore, champion: Champion, dataset: DatasetVersion | None,
               name: str) -> None:
    """Make `name` a champion with the champion's records (spec, version, training profile) renamed.

    A drift check reads records, never the model: no second training. Without `dataset`, the copy's
    training data is not registered (a broken lineage).
    """
    registry.put_spec(champion.spec.model_copy(update={"name": name}))
    registry.put_version(champion.record.model_copy(update={"model": name}))
    registry.set_alias(name, "champion", champion.version, expected=None, reason="test champion")
    if dataset is not None:
        datasets.put_dataset(dataset.model_copy(update={"model": name}))
