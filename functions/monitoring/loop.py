"""What a drift check does once its report is stored: announce drift (Model Drift Detected on the default
bus, which the retraining rule follows) and make sure the model has its alarms (monitoring.alarms)."""

import logging
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from functions.errors import MlopsError
from functions.monitoring.alarms import degraded, model_alarms
from functions.monitoring.aws import model_alarms as cloudwatch_alarms
from functions.monitoring.aws import monitoring_events
from functions.monitoring.events import drift_event, quality_event
from functions.monitoring.settings import monitoring_settings
from functions.registry.store import RegistryStore
from functions.spec import ModelSpec

logger = logging.getLogger(__name__)

_alarmed: set[str] = set()  # the models whose alarms this execution environment put


def close_loop(report: dict[str, Any], registry: RegistryStore) -> dict[str, Any]:
    """The stored report's event (when it drifted) and the model's alarms (once per environment).

    Neither fails the check: its report is stored and its metrics emitted; a failure is logged and said."""
    outcome: dict[str, Any] = {}
    config = monitoring_settings()
    emit_model_metrics(report, config.metrics_namespace)
    model = report["model"]
    spec = registry.get_spec(model)
    for event in (drift_event(report), quality_event(quality_report(report, spec))):
        if event is not None:
            outcome.setdefault("events", []).append(event.detail_type)
            outcome["event"] = event.detail_type
            outcome["event_sent"] = monitoring_events().publish(event) and outcome.get("event_sent", True)
    if model not in _alarmed:
        try:
            cloudwatch_alarms().put(model_alarms(
                spec, prefix=config.alarm_prefix, namespace=config.metrics_namespace,
                topic_arn=config.alarm_topic_arn, latency_ms=config.latency_alarm_ms,
                drift_period_s=config.drift_schedule_minutes * 60))
            _alarmed.add(model)
        except MlopsError as error:
            logger.warning("the model's alarms could not be put", extra={"model": model, "reason": error.message})
            outcome["alarms_error"] = error.message
    return outcome


def quality_report(report: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    """The quality check's figure of the spec's metric (the report's `quality` section), against its threshold."""
    found = report.get("quality")
    section: dict[str, Any] = found if isinstance(found, dict) else {}
    value, threshold = section.get(spec.metric), spec.monitoring.quality_threshold
    figure = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return {"model": report["model"], "version": report.get("version"), "metric": spec.metric, "value": figure,
            "threshold": threshold, "labelled": section.get("labelled"), "window_hours": section.get("window_hours"),
            "report_key": report.get("report_key"), "generated_at": report.get("generated_at"),
            "degraded": degraded(spec.metric, figure, threshold)}


def emit_model_metrics(report: dict[str, Any], namespace: str) -> None:
    """ModelDriftDetected (0/1) and DriftShare by model (the model's drift alarm) and by model and version (the
    dashboard's lines per version)."""
    metrics = EphemeralMetrics(namespace=namespace)
    metrics.add_dimensions(model=report["model"])
    if report.get("version") is not None:
        metrics.add_dimensions(model=report["model"], version=str(report["version"]))
    metrics.add_metric(name="ModelDriftDetected", unit=MetricUnit.Count, value=1 if report.get("drifted") else 0)
    metrics.add_metric(name="DriftShare", unit=MetricUnit.NoUnit, value=float(report.get("drift_share") or 0.0))
    metrics.flush_metrics()


def reset() -> None:
    """Forget which models have their alarms (tests, or a new execution environment)."""
    _alarmed.clear()
