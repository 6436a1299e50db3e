"""Model quality from delayed labels: the labels of a window joined with the predictions captured in it.

Labels arrive after their predictions (functions/feedback/). At check time, the labels received in
the last `hours` are joined, by request id and row, with the capture records of the same window
(a request split over parts is put back together in part order). Quality is measured on the
answers clients got (champion and a canary's challenger), overall and per version; a shadow's
unseen answers are measured apart. A label whose request has no captured prediction in the window
is counted as `unmatched`: an unknown request id, a prediction older than the window, or a
capture not delivered yet, whole or in part (Firehose buffers for a minute or more).

Classification: accuracy, F1 (macro over the model's classes, as the holdout's), ROC AUC (binary:
only when both classes are among the labels; multiclass: one-vs-rest, only when every class is).
Regression: MAE and RMSE. Each with the count of labelled predictions.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from functions.feedback.labels import same_value
from functions.feedback.store import FeedbackStore, StoredLabel
from functions.monitoring.alarms import QUALITY_METRICS
from functions.monitoring.captures import window_records
from functions.storage.objects import ObjectStore

METRICS = {"classification": ("accuracy", "f1", "roc_auc"), "regression": ("mae", "rmse")}
# The CloudWatch metric of each, dimensioned by model (and service, as every metric of the platform).
METRIC_NAMES = {"labelled": "LabelledPredictions", **QUALITY_METRICS}


@dataclass(frozen=True)
class Prediction:
    version: int | None
    variant: str
    value: Any
    probabilities: list[float] | None


def requests_in_order(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each captured request's records by (request id, variant), a split request's parts in part order.

    Only whole requests: a row's index counts the rows of the parts before it, so a request with a part
    missing (unreadable, not delivered yet) is left out; a part delivered twice counts once.
    """
    parts: dict[tuple[str, str], dict[Any, dict[str, Any]]] = {}
    for record in records:
        request_id, variant = record.get("request_id"), str(record.get("variant") or "champion")
        if isinstance(request_id, str):
            parts.setdefault((request_id, variant), {}).setdefault(record.get("part", 0), record)
    whole: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for key, by_part in parts.items():
        expected = next(iter(by_part.values())).get("parts", 1)
        if isinstance(expected, int) and set(by_part) == set(range(expected)):
            whole[key] = [by_part[number] for number in range(expected)]
    return whole


def captured_predictions(records: Iterable[dict[str, Any]]) -> dict[str, dict[tuple[str, int], Prediction]]:
    """Per variant, each captured row's prediction by (request id, row in the request)."""
    rows: dict[str, dict[tuple[str, int], Prediction]] = {}
    for (request_id, variant), records_of_request in requests_in_order(
            r for r in records if isinstance(r.get("outputs"), dict)).items():
        index = 0
        for record in records_of_request:
            predictions = record["outputs"].get("predictions") or []
            probabilities = record["outputs"].get("probabilities")
            for position, value in enumerate(predictions):
                proba = probabilities[position] if isinstance(probabilities, list) and position < len(
                    probabilities) else None
                rows.setdefault(variant, {})[(request_id, index)] = Prediction(
                    record.get("version"), variant, value, proba if isinstance(proba, list) else None)
                index += 1
    return rows


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def quality_metrics(task: str, classes: list[Any] | None, pairs: list[tuple[Any, Prediction]]) -> dict[str, Any]:
    """The metrics of (label, prediction) pairs; a metric that cannot be computed is None, with why."""
    result: dict[str, Any] = {"labelled": len(pairs)}
    if not pairs:
        return {**result, **{name: None for name in METRICS[task]}}
    if task == "regression":
        kept = [(float(label), _finite(p.value)) for label, p in pairs]
        errors = np.asarray([label - value for label, value in kept if value is not None], dtype=np.float64)
        if not errors.size:
            return {**result, "mae": None, "rmse": None}
        return {**result, "mae": float(np.mean(np.abs(errors))), "rmse": float(np.sqrt(np.mean(errors ** 2)))}
    from sklearn.metrics import f1_score, roc_auc_score  # the check's only use of scikit-learn: imported here

    known = list(classes or [])

    def position(value: Any) -> int:
        return next((i for i, c in enumerate(known) if same_value(c, value)), -1)  # -1: not a class of the model

    truth = np.asarray([position(label) for label, _ in pairs])
    predicted = np.asarray([position(p.value) for _, p in pairs])
    result["accuracy"] = float(np.mean(truth == predicted))
    labels = list(range(len(known)))
    binary = len(known) == 2
    # Macro over the model's classes, as the holdout's f1 (shared.scoring) that the gate and the spec's metric use;
    # a prediction outside the classes (-1) is a miss of its true class.
    result["f1"] = float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0.0))
    probabilities = [p.probabilities for _, p in pairs]
    present = set(truth.tolist())
    if any(p is None or len(p) != len(known) for p in probabilities):
        result.update(roc_auc=None, roc_auc_note="probabilities are missing for some labelled predictions")
    elif not set(labels) <= present:
        result.update(roc_auc=None, roc_auc_note="ROC AUC needs every class among the labels")
    else:
        scores = np.asarray(probabilities, dtype=np.float64)
        result["roc_auc"] = float(roc_auc_score(truth, scores[:, 1]) if binary
                                  else roc_auc_score(truth, scores, multi_class="ovr", labels=labels))
    return result


def _grouped(task: str, classes: list[Any] | None, pairs: list[tuple[Any, Prediction]]) -> dict[str, Any]:
    versions: dict[str, list[tuple[Any, Prediction]]] = {}
    for label, prediction in pairs:
        versions.setdefault(str(prediction.version), []).append((label, prediction))
    return {version: quality_metrics(task, classes, rows) for version, rows in sorted(versions.items())}


def join(labels: list[StoredLabel], predictions: dict[str, dict[tuple[str, int], Prediction]],
         task: str, classes: list[Any] | None) -> dict[str, Any]:
    """The quality section of a report, from the window's labels and captured predictions."""
    answered = {**predictions.get("challenger", {}), **predictions.get("champion", {})}
    pairs = [(label.label, answered[label.key]) for label in labels if label.key in answered]
    shadow = predictions.get("shadow", {})
    shadow_pairs = [(label.label, shadow[label.key]) for label in labels if label.key in shadow]
    matched = {label.key for label in labels} & (set(answered) | set(shadow))
    section: dict[str, Any] = {
        "task": task,
        "labels": len(labels),
        "unmatched": len({label.key for label in labels} - matched),
        **quality_metrics(task, classes, pairs),
        "by_version": _grouped(task, classes, pairs),
    }
    if shadow_pairs:
        section["shadow"] = _grouped(task, classes, shadow_pairs)
    return section


def model_quality(objects: ObjectStore, feedback: FeedbackStore, *, model: str, task: str,
                  classes: list[Any] | None, hours: int, now: datetime | None = None) -> dict[str, Any]:
    """Quality of `model` over the last `hours`: its labels received then, joined with its captures then."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    labels = feedback.labels_since(model, now - timedelta(hours=hours))
    # No capture is read when there is nothing to join.
    records = window_records(objects, model, hours=hours, now=now) if labels else iter(())
    return quality_section(labels, records, task=task, classes=classes, hours=hours)


def quality_section(labels: list[StoredLabel], records: Iterable[dict[str, Any]], *, task: str,
                    classes: list[Any] | None, hours: int) -> dict[str, Any]:
    """The quality section of a report: `labels` joined with the capture `records` of the same window (the
    drift check passes the records its own reading of the window saw)."""
    if not labels:
        return {"task": task, "window_hours": hours, "labels": 0, "unmatched": 0,
                **quality_metrics(task, classes, []), "by_version": {}}
    return {"window_hours": hours, **join(labels, captured_predictions(records), task, classes)}


def emit_quality(section: dict[str, Any] | None, model: str, namespace: str) -> None:
    """The section's metrics as one EMF document dimensioned by model; nothing when no prediction is labelled."""
    if not section or not section.get("labelled"):
        return
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    metrics = EphemeralMetrics(namespace=namespace)
    metrics.add_dimension(name="model", value=model)
    for field, name in METRIC_NAMES.items():
        value = section.get(field)
        if isinstance(value, (int, float)) and math.isfinite(value):
            metrics.add_metric(name=name, unit=MetricUnit.Count if field == "labelled" else MetricUnit.NoUnit,
                               value=float(value))
    metrics.flush_metrics()
