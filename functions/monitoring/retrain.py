"""Automatic retraining: a rule on the monitor's events (Model Drift Detected, Model Quality Degraded)
starts the training pipeline on the model's latest dataset version plus its labelled feedback.

The retrain is an upload, so it runs the pipeline every upload runs (validation, features, training,
evaluation, the promotion gate): its training file, `datasets/<model>/retrain-<event>.<ext>`, carries
the metadata `retrain: true` (an identical earlier run does not stop it) and the event's id; its S3
"Object Created" event starts the run, named after the file's version (training.start). What the gate
decides is decided as for any upload.

The training file is the latest dataset version with the feedback rows added: each label received since
that version (or, when that version is the previous retrain's file, since that retrain started: its rows
are in it already) joined with the request row it labels, as captured in the last `Feedback.hours`
(functions/monitoring/captures.py): the captured features, the label as the target, and as entity id
`feedback:<request id>:<row>` when the spec has one. Labels whose request is no longer captured are left
out (the result says how many labels there were, and how many rows were added). With no new label, the
dataset version is copied on S3's side as it is; otherwise the rows are written as Parquet.

At most one retrain per model per cooldown: the registry's RETRAIN item holds the model's latest
retrain, claimed in one conditional write (only when the last one started before the cooldown)
together with its audit entry (action "retrain", the event that caused it, the training file), so
of concurrent events one retrains and the others change nothing. A retried delivery of the event
that claimed it finishes its start (the file is written once: its key is the event's). A spec with
`monitoring: {retrain: false}` turns it off for that model: the events are still sent.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from functions.data.store import DatasetStore
from functions.errors import InvalidInput
from functions.feedback.store import FeedbackStore, StoredLabel
from functions.monitoring.alarms import ERROR_METRICS
from functions.monitoring.captures import window_records
from functions.monitoring.events import DETAIL_TYPES
from functions.monitoring.quality import requests_in_order
from functions.records import AuditEntry, DatasetVersion, Retrain
from functions.registry.store import RegistryStore, instant
from functions.shared.tabular import frame_bytes, read_dataset, read_upload
from functions.shared.transform import categories
from functions.spec import ModelSpec, check_model_name
from functions.storage.objects import ObjectStore, sha256
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

    def put(self, *, key: str, body: bytes, metadata: dict[str, str]) -> str:
        """Write `body` to `key` with `metadata`; its version id."""
        ...


@dataclass(frozen=True)
class Feedback:
    """Where a retrain finds labelled feedback: the labels, and the captured requests they label."""

    labels: FeedbackStore
    objects: ObjectStore
    hours: int  # how far back the captures are searched for a label's request


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


def retrain_key(model: str, dataset: DatasetVersion, event_id: str, *, with_feedback: bool = False) -> str:
    """The training file of a retrain: one per event, with the dataset's own format (Parquet with feedback rows)."""
    suffix = dataset.key.rsplit(".", 1)[-1].lower() if "." in dataset.key.rsplit("/", 1)[-1] else "csv"
    return f"datasets/{model}/retrain-{sha256(event_id.encode())[:16]}.{'parquet' if with_feedback else suffix}"


def feedback_since(dataset: DatasetVersion, held: Retrain | None) -> str:
    """Where a retrain's new labels start: when `dataset` was made, or when the previous retrain started if
    `dataset` is that retrain's file (the labels received before are rows of it)."""
    return instant(held.started_at if held is not None and held.dataset_key == dataset.key else dataset.created_at)


def new_labels(feedback: Feedback, model: str, since: str, until: str) -> list[StoredLabel]:
    """The labels of `model` received after `since`, up to `until` (both as `instant` writes them)."""
    received = feedback.labels.labels_since(model, datetime.fromisoformat(since))
    return [label for label in received if since < instant(label.received_at) <= until]


def feedback_rows(feedback: Feedback, spec: ModelSpec, labels: list[StoredLabel], now: datetime) -> pd.DataFrame:
    """Training rows from labels: each label's captured request row (its features), the label as the target."""
    wanted = {label.request_id for label in labels}
    records = (r for r in window_records(feedback.objects, spec.name, hours=feedback.hours, now=now)
               if r.get("request_id") in wanted and r.get("variant") != "shadow")
    inputs: dict[tuple[str, int], Any] = {}
    for (request_id, _), parts in requests_in_order(records).items():
        rows = [row for part in parts for row in part["inputs"]]
        inputs.update(((request_id, index), row) for index, row in enumerate(rows) if isinstance(row, dict))
    found = sorted((label for label in labels if label.key in inputs),
                   key=lambda label: (instant(label.received_at), label.request_id, label.index))
    frame = pd.DataFrame.from_records([inputs[label.key] for label in found], columns=spec.feature_names,
                                      coerce_float=False)
    frame[spec.target] = pd.Series([label.label for label in found], dtype=object)
    if spec.entity_id is not None:
        frame[spec.entity_id] = [f"feedback:{label.request_id}:{label.index}" for label in found]
    return frame


def latest_dataset(datasets: DatasetStore, model: str) -> DatasetVersion | None:
    versions = datasets.list_datasets(model)
    return max(versions, key=lambda d: d.created_at) if versions else None


def reason_of(event: MonitoringEventEnvelope) -> str:
    detail = event.detail.model_dump()
    if event.detail_type == "Model Drift Detected":
        what = ", ".join(detail.get("drifted") or []) or "the model's output"
        text = f"{event.detail_type}: {what} drifted"
    else:
        crossed = ">" if detail.get("metric") in ERROR_METRICS else "<"  # an error metric degrades upwards
        text = f"{event.detail_type}: {detail.get('metric')} {detail.get('value')} {crossed} {detail.get('threshold')}"
    return text[:REASON_CHARS]


def on_event(registry: RegistryStore, datasets: DatasetStore, uploads: TrainingUploads, *,
             event: MonitoringEventEnvelope, bucket: str, cooldown_hours: float, actor: str,
             feedback: Feedback | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Start a retrain for the event's model unless it is off, in its cooldown, or has no dataset; with
    `feedback`, its training rows include the labelled feedback.

    Returns what happened: {"started": True, "run_id", "dataset_key", "labels", ...} or {"started": False,
    "reason"}. Raises UnknownModel for a model without a spec, InvalidInput for an event of another kind.
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
        labels = (new_labels(feedback, model, retrain.feedback_since, retrain.started_at)
                  if feedback is not None and retrain.feedback_since is not None else [])
    else:
        found = latest_dataset(datasets, model)
        if found is None:
            return {"started": False, "model": model, "reason": f"model {model} has no dataset version to retrain on"}
        dataset = found
        at = instant(now)
        since = feedback_since(dataset, held) if feedback is not None else None
        labels = new_labels(feedback, model, since, at) if feedback is not None and since is not None else []
        version = event.detail.version if event.detail.version is not None else registry.get_alias(model) or 0
        retrain = Retrain(model=model, event_id=event.id, detail_type=event.detail_type, version=version,
                          started_at=at, dataset_id=dataset.dataset_id, feedback_since=since,
                          dataset_key=retrain_key(model, dataset, event.id, with_feedback=bool(labels)))
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
    # The training file is the start: its Object Created event runs the pipeline. Made once per event (its key).
    result: dict[str, Any] = {"started": True, "model": model, "dataset_key": retrain.dataset_key,
                              "dataset_id": dataset.dataset_id, "event_id": event.id, "labels": len(labels)}
    version_id = uploads.version_of(retrain.dataset_key)
    if version_id is None:
        metadata = {"retrain": "true", "retrain-event": event.id[:128]}
        if labels and feedback is not None:
            rows = feedback_rows(feedback, spec, labels, now)
            result["feedback_rows"] = len(rows)
            frame = with_rows(read_dataset(read_upload(feedback.objects, dataset.key, dataset.version_id), dataset.key),
                              rows, spec)
            version_id = uploads.put(key=retrain.dataset_key, metadata=metadata,
                                     body=frame_bytes(frame, retrain.dataset_key.rsplit("/", 1)[-1]))
        else:
            version_id = uploads.copy(source_key=dataset.key, source_version=dataset.version_id,
                                      key=retrain.dataset_key, metadata=metadata)
    run_id = run_id_for(model, bucket, retrain.dataset_key, version_id)
    if retrain.run_id != run_id:
        registry.set_retrain_run(model, event.id, run_id)
    result["run_id"] = run_id
    logger.info("retrain started", extra=result)
    return result


def with_rows(dataset: pd.DataFrame, rows: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The dataset's rows, then the feedback's (the dataset's other columns empty there).

    Requests send categories as text: a categorical column the dataset holds as numbers (codes 1, 2) becomes
    the canonical text training makes of them ("1", "2"), so that one file holds both; the entity ids too.
    """
    if rows.empty:
        return dataset
    combined = pd.concat([dataset, rows], ignore_index=True)
    for name in spec.categorical_features:
        column = combined[name]
        if pd.api.types.infer_dtype(column, skipna=True) not in {"string", "empty"}:
            combined[name] = categories(column).where(column.notna(), None)
    if spec.entity_id is not None:  # the feedback's ids are text: the column becomes text (5 -> "5")
        combined[spec.entity_id] = combined[spec.entity_id].astype("string")
    return combined
