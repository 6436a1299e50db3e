"""Monitoring events: drift or decay, announced on EventBridge's default bus once the report is stored.

Source `mlops.monitoring`; two detail types. The retraining rule listens to both (monitoring.retrain);
users may hook their own rules to them (a notification, a ticket):

    Model Drift Detected     {"model": "churn", "version": 3, "drifted": ["tenure_months"],
                              "prediction_drift": false, "dataset_drift": false, "drift_share": 0.25,
                              "scores": {"tenure_months": {"test": "ks", "statistic": 0.41, "pvalue": 1e-12,
                                                           "threshold": 0.0025, "psi": 0.9}, ...},
                              "samples": 1200, "window_hours": 24, "report_key": "reports/drift/churn/...json",
                              "time": "2026-01-31T12:00:05+00:00"}
    Model Quality Degraded   {"model": "churn", "version": 3, "metric": "roc_auc", "value": 0.61,
                              "threshold": 0.7, "labelled": 412, "window_hours": 24,
                              "report_key": "reports/quality/churn/...json", "time": "..."}

`scores` holds every feature the check decided on (and `prediction`, the model's output, when it was
checked), drifted or not. An event is sent only after its report is stored, so `report_key` can be read.
"""

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

SOURCE = "mlops.monitoring"
DetailType = Literal["Model Drift Detected", "Model Quality Degraded"]
DRIFT_DETECTED: DetailType = "Model Drift Detected"
QUALITY_DEGRADED: DetailType = "Model Quality Degraded"
DETAIL_TYPES: tuple[DetailType, ...] = (DRIFT_DETECTED, QUALITY_DEGRADED)
SCORE_FIELDS = ("test", "statistic", "pvalue", "threshold", "psi", "drifted")


class MonitoringEvent(BaseModel):
    """One event of the monitor: its detail type, its detail (the shapes above) and when the check ran."""

    model_config = ConfigDict(frozen=True)

    detail_type: DetailType
    detail: dict[str, Any]
    time: str


def _time(report: dict[str, Any]) -> str:
    return str(report.get("generated_at") or datetime.now(UTC).isoformat(timespec="seconds"))


def drift_event(report: dict[str, Any]) -> MonitoringEvent | None:
    """The event of a stored drift report (it has its `report_key`); None when nothing drifted."""
    if not report.get("drifted") or not report.get("report_key"):
        return None
    features: dict[str, Any] = report.get("features") or {}
    scores = {name: {k: feature.get(k) for k in SCORE_FIELDS}
              for name, feature in features.items() if feature.get("test") is not None}
    if isinstance(report.get("prediction"), dict):
        scores["prediction"] = {k: report["prediction"].get(k) for k in SCORE_FIELDS}
    time = _time(report)
    return MonitoringEvent(detail_type=DRIFT_DETECTED, time=time, detail={
        "model": report["model"], "version": report.get("version"),
        "drifted": sorted(name for name, feature in features.items() if feature.get("drifted")),
        "prediction_drift": bool(report.get("prediction_drift")), "dataset_drift": bool(report.get("dataset_drift")),
        "drift_share": report.get("drift_share"), "scores": scores, "samples": report.get("samples"),
        "window_hours": report.get("window_hours"), "report_key": report["report_key"], "time": time,
    })


def quality_event(report: dict[str, Any]) -> MonitoringEvent | None:
    """The event of a stored quality report whose metric fell below its threshold; None otherwise.

    The report (item 4's quality check) gives model, version, metric, value, threshold, labelled and
    report_key; `degraded` true when the value crossed the threshold."""
    if not report.get("degraded") or not report.get("report_key"):
        return None
    time = _time(report)
    return MonitoringEvent(detail_type=QUALITY_DEGRADED, time=time, detail={
        **{key: report.get(key) for key in ("model", "version", "metric", "value", "threshold", "labelled",
                                            "window_hours")},
        "report_key": report["report_key"], "time": time,
    })
