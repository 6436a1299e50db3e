"""One drift check: a model's captured requests against its champion's reference profile.

The reference is the version's own (functions.shared.reference: stored by its training run, among
the run's artifacts, with its sha256), loaded and verified, never recomputed. A version registered
before references were stored falls back to its dataset's profile (101 quantiles per numeric
column, category frequencies), and the report says so ("reference": {"source": "profile", "warning"}).

The report is written to reports/drift/<model>/<iso-ts>.json, its readable page (report_html) beside it as
.html, and returned with both keys.
"""

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from functions.data.store import DatasetStore
from functions.errors import IntegrityError, NoChampion, NotFound
from functions.feedback.store import FeedbackStore
from functions.monitoring import report_html
from functions.monitoring.captures import read_captures
from functions.monitoring.drift import drift_report, max_psi, window_frame
from functions.monitoring.quality import quality_section
from functions.monitoring.reports import html_key, report_key
from functions.records import ModelVersion
from functions.registry.store import RegistryStore
from functions.shared.reference import (
    OTHER,
    CategoricalReference,
    Column,
    NumericReference,
    Reference,
    from_bytes,
    output_values,
)
from functions.spec import ModelSpec, check_model_name
from functions.storage.objects import ObjectStore

logger = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "reference"  # its name among a run's artifacts
MAX_REFERENCE_BYTES = 512 * 1024 * 1024
FALLBACK_WARNING = ("this version has no reference profile (it was registered before they were stored): its "
                    "dataset's profile stands in (101 quantiles per numeric column), a coarser reference; "
                    "retrain to store one")


def profile_reference(profile: dict[str, Any]) -> Reference:
    """A stand-in reference from a dataset profile: its quantiles as the numeric sample, its frequencies as counts."""
    rows = int(profile.get("rows") or 0)
    columns: dict[str, Column] = {}
    for name, column in (profile.get("columns") or {}).items():
        if column.get("kind") == "numeric":
            sample = np.sort(np.asarray([q for q in column.get("quantiles") or [] if q is not None], dtype=np.float64))
            columns[name] = NumericReference(sample=sample, rows=rows, missing=int(column.get("missing") or 0))
        elif column.get("kind") == "categorical":
            frequencies = {k: float(v) for k, v in (column.get("frequencies") or {}).items() if v}
            counts = np.maximum(np.rint(np.asarray(list(frequencies.values())) * max(rows, 1)), 1).astype(np.int64)
            columns[name] = CategoricalReference(categories=np.asarray(list(frequencies) or [OTHER], dtype=str),
                                                 counts=counts if counts.size else np.zeros(1, np.int64), rows=rows)
    return Reference(columns=columns)


def version_reference(objects: ObjectStore, registry: RegistryStore,
                      record: ModelVersion) -> tuple[Reference, dict[str, Any]] | None:
    """The version's stored reference, verified, and where it came from; None when it has none."""
    try:
        run = registry.get_run(record.model, record.run_id)
    except NotFound:
        return None
    artifact = run.artifacts.get(REFERENCE_ARTIFACT)
    if artifact is None:
        return None
    data = objects.get_verified(artifact.key, artifact.sha256, max_bytes=MAX_REFERENCE_BYTES)
    try:
        reference = from_bytes(data)
    except ValueError as error:
        raise IntegrityError(f"the reference profile of {record.model} v{record.version} is unreadable") from error
    return reference, {"source": "version", "key": artifact.key, "sha256": artifact.sha256}


def check_model(objects: ObjectStore, registry: RegistryStore, datasets: DatasetStore, *, model: str,
                window_hours: int, psi_threshold: float, ks_pvalue: float,
                now: datetime | None = None, feedback: FeedbackStore | None = None) -> dict[str, Any]:
    """Compare the last `window_hours` of captures of `model` with its champion's reference.

    `ks_pvalue` and `psi_threshold` are the deployment's defaults for what the spec's `monitoring:`
    leaves out. Returns the stored report plus its "report_key". Raises UnknownModel or NoChampion.
    """
    now = now or datetime.now(UTC)
    check_model_name(model)
    spec = registry.get_spec(model)  # UnknownModel first: a clearer answer than "no champion"
    version = registry.get_alias(model, "champion")
    if version is None:
        raise NoChampion(f"model {model!r} has no champion yet: there is nothing to compare captures with")
    record = registry.get_version(model, version)
    stored = version_reference(objects, registry, record)
    if stored is None:
        logger.warning("no reference profile: the dataset profile stands in", extra={"model": model,
                                                                                   "version": version})
        stored = (profile_reference(datasets.get_dataset(model, record.dataset_id).profile),
                  {"source": "profile", "warning": FALLBACK_WARNING})
    reference, source = stored
    trained = record.trained_spec(spec)
    # The window's labels first: its captures are read once, for drift and for the records the labels join with.
    labels = feedback.labels_since(model, now - timedelta(hours=window_hours)) if feedback is not None else []
    labelled = {label.request_id for label in labels}
    joined: list[dict[str, Any]] = []

    def keep_labelled(capture: dict[str, Any]) -> None:
        if capture.get("request_id") in labelled:
            joined.append(capture)

    window = read_captures(objects, model, hours=window_hours, now=now, every=keep_labelled if labels else None)
    config = spec.monitoring.with_defaults(pvalue=ks_pvalue, psi_threshold=psi_threshold)
    live = window_frame(window.instances, trained.feature_names)
    outputs = window_outputs(window, trained, record, reference)
    report = drift_report(
        model=model, version=version, signature=trained.signature, reference=reference,
        live=live, window_hours=window_hours, config=config, outputs=outputs,
    )
    report.update({
        "dataset_id": record.dataset_id,
        "reference": source,
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "requests": window.requests,
        "versions": window.versions,
        "skipped": window.skipped,
        "truncated": window.truncated,
        "drift_score": max_psi(report),
    })
    if feedback is not None:  # model quality from the labels of the same window (functions/monitoring/quality.py)
        report["quality"] = quality_section(labels, joined, task=trained.task, classes=record.classes,
                                            hours=window_hours)
    key = report_key(model, now)
    objects.put_json(key, report)
    page = html_key(key)
    objects.put_bytes(page, report_html.render({**report, "report_key": key},
                                               report_html.distributions(report, reference, live, outputs)).encode(),
                      content_type="text/html; charset=utf-8")
    return {**report, "report_key": key, "html_key": page}


def window_outputs(window: Any, spec: ModelSpec, record: ModelVersion, reference: Reference) -> Any:
    """The window's model outputs as the reference profiles them, when the capture window carries them
    (`outputs`: {"predictions": [...], "probabilities": [[...]]}, one per instance) in the reference's form
    (a binary classifier's probabilities, not only its labels); else None."""
    outputs = getattr(window, "outputs", None)
    if reference.output is None or not isinstance(outputs, dict) or not isinstance(outputs.get("predictions"), list):
        return None
    if len(outputs["predictions"]) != len(window.instances):
        return None
    values, kind = output_values(spec.task, outputs["predictions"], outputs.get("probabilities"), record.classes)
    return values if kind == reference.output.kind else None
