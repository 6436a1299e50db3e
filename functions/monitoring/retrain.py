"""Automatic retraining: a rule on the monitor's events (Model Drift Detected, Model Quality Degraded)
starts the training pipeline on the model's latest dataset version.

The retrain is an upload, so it runs the pipeline every upload runs (validation, features, training,
evaluation, the promotion gate): the latest dataset version is copied on S3's side to
`datasets/<model>/retrain-<event>.<ext>` with the metadata `retrain: true` (an identical earlier run
does not stop it) and the event's id; its S3 "Object Created" event starts the run, named after the
copy's version (training.start). What the gate decides is decided as for any upload.

At most one retrain per model per cooldown: the registry's RETRAIN item holds the model's latest
retrain, claimed in one conditional write (only when the last one started before the cooldown)
together with its audit entry (action "retrain", the event that caused it, the training file), so
of concurrent events one retrains and the others change nothing. A retried delivery of the event
that claimed it finishes its start (the copy is made once: its key is the event's). A spec with
`monitoring: {retrain: false}` turns it off for that model: the events are still sent.

Labelled feedback is not yet added to the training rows (see README, "Retraining").
"""

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from functions.data.store import DatasetStore
from functions.errors import InvalidInput
from functions.monitoring.events import DETAIL_TYPES
from functions.records import AuditEntry, DatasetVersion, Retrain
from functions.registry.store import RegistryStore, instant
from functions.spec import check_model_name
from functions.storage.objects import sha256
from functions.training.start import run_id_for

logger = logging.getLogger(__name__)

RETRAIN_ACTION = "retrain"
REASON_CHARS = 500


class TrainingUploads(Protocol):
    def version_of(self, key: str) -> str | None:
        """The current version id of `key`; None when there is no such object."""
        ...

    def copy(self, *, source_key: str, source_version: str | None, key: str, metadata: dict[str, str]) -> str:
        """Copy a version of an object to `key` with `metadata`; the copy's version id."""
        ...


class MonitoringDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    version: int | None = None
    report_key: str | None = None


class MonitoringEventEnvelope(BaseModel):
    """The EventBridge event the retraining rule delivers."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(min_length=1, max_length=128)
    source: str
    detail_type: str = Field(alias="detail-type")
    time: str | None = None
    detail: MonitoringDetail


def retrain_key(model: str, dataset: DatasetVersion, event_id: str) -> str:
    """The training file of a retrain: one per event, with the dataset's own format."""
    suffix = dataset.key.rsplit(".", 1)[-1].lower() if "." in dataset.key.rsplit("/", 1)[-1] else "csv"
    return f"datasets/{model}/retrain-{sha256(event_id.encode())[:16]}.{suffix}"


def latest_dataset(datasets: DatasetStore, model: str) -> DatasetVersion | None:
    versions = datasets.list_datasets(model)
    return max(versions, key=lambda d: d.created_at) if versions else None


def reason_of(event: MonitoringEventEnvelope) -> str:
    detail = event.detail.model_dump()
    if event.detail_type == "Model Drift Detected":
        what = ", ".join(detail.get("drifted") or []) or "the model's output"
        text = f"{event.detail_type}: {what} drifted"
    else:
        text = f"{event.detail_type}: {detail.get('metric')} {detail.get('value')} < {detail.get('threshold')}"
    return text[:REASON_CHARS]


def on_event(registry: RegistryStore, datasets: DatasetStore, uploads: TrainingUploads, *,
             event: MonitoringEventEnvelope, bucket: str, cooldown_hours: float, actor: str,
             now: datetime | None = None) -> dict[str, Any]:
    """Start a retrain for the event's model unless it is off, in its cooldown, or has no dataset.

    Returns what happened: {"started": True, "run_id", "dataset_key", ...} or {"started": False, "reason"}.
    Raises UnknownModel for a model without a spec, InvalidInput for an event of another kind.
    """
    if event.detail_type not in DETAIL_TYPES:
        raise InvalidInput(f"retraining follows {' and '.join(DETAIL_TYPES)} events, not {event.detail_type[:64]!r}")
    model = event.detail.model
    check_model_name(model)
    spec = registry.get_spec(model)
    if not spec.monitoring.retrain:
        return {"started": False, "model": model,
                "reason": f"automatic retraining is off for {model} (its spec's monitoring.retrain is false)"}
    now = now or datetime.now(UTC)
    held = registry.get_retrain(model)
    if held is not None and held.event_id == event.id:
        retrain, dataset = held, datasets.get_dataset(model, held.dataset_id)  # a retried delivery: finish it
    else:
        found = latest_dataset(datasets, model)
        if found is None:
            return {"started": False, "model": model, "reason": f"model {model} has no dataset version to retrain on"}
        dataset = found
        at = instant(now)
        version = event.detail.version if event.detail.version is not None else registry.get_alias(model) or 0
        retrain = Retrain(model=model, event_id=event.id, detail_type=event.detail_type, version=version,
                          started_at=at, dataset_id=dataset.dataset_id,
                          dataset_key=retrain_key(model, dataset, event.id))
        entry = AuditEntry(model=model, action=RETRAIN_ACTION, version=version, reason=reason_of(event), at=at,
                           actor=actor, dataset_key=retrain.dataset_key,
                           cause={"id": event.id, "source": event.source, "detail-type": event.detail_type,
                                  "time": event.time, "detail": event.detail.model_dump()})
        since = instant(now - timedelta(hours=cooldown_hours))
        if not registry.claim_retrain(retrain, cooldown_since=since, entry=entry):
            last = registry.get_retrain(model)
            return {"started": False, "model": model,
                    "reason": f"model {model} was retrained at {last.started_at if last else 'a moment ago'}, "
                              f"within the cooldown of {cooldown_hours:g} hours"}
    # The copy is the start: its Object Created event runs the pipeline. Made once per event (its key).
    version_id = uploads.version_of(retrain.dataset_key)
    if version_id is None:
        version_id = uploads.copy(source_key=dataset.key, source_version=dataset.version_id, key=retrain.dataset_key,
                                  metadata={"retrain": "true", "retrain-event": event.id[:128]})
    run_id = run_id_for(model, bucket, retrain.dataset_key, version_id)
    if retrain.run_id != run_id:
        registry.set_retrain_run(model, event.id, run_id)
    logger.info("retrain started", extra={"model": model, "run_id": run_id, "event_id": event.id,
                                          "dataset_id": dataset.dataset_id, "dataset_key": retrain.dataset_key})
    return {"started": True, "model": model, "run_id": run_id, "dataset_key": retrain.dataset_key,
            "dataset_id": dataset.dataset_id, "event_id": event.id}
