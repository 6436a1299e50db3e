"""The scheduled drift check (EventBridge), also invoked directly with {"model": "x"}.

Checks every model that has a champion (or the one named), writes one report each and
emits DriftScore (max PSI) per model, and DriftDetected (0/1) and DriftSamples for the service.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, ValidationError

from functions.data.dynamo import dataset_store
from functions.errors import InvalidInput, MlopsError, NoChampion
from functions.feedback.dynamo import feedback_store
from functions.feedback.settings import FeedbackSettings
from functions.feedback.store import FeedbackStore
from functions.monitoring.check import check_model
from functions.monitoring.loop import close_loop
from functions.monitoring.quality import emit_quality
from functions.registry.dynamo import registry_store
from functions.settings import settings
from functions.storage.s3 import data_objects

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class DriftRequest(BaseModel):
    """A direct invocation names a model; a scheduled event (any other fields) checks them all."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None


def _emit(report: dict, namespace: str) -> None:
    # The service-level figures feed the platform alarm (one metric, whatever the models);
    # DriftScore is per model, so the dashboard tells which model drifted.
    metrics.add_metric(name="DriftDetected", unit=MetricUnit.Count, value=1 if report["drifted"] else 0)
    metrics.add_metric(name="DriftSamples", unit=MetricUnit.Count, value=report["samples"])
    with single_metric(name="DriftScore", unit=MetricUnit.NoUnit, value=float(report.get("drift_score") or 0.0),
                       namespace=namespace) as metric:
        metric.add_dimension(name="model", value=report["model"])


def _feedback() -> FeedbackStore | None:
    """The labels' store, when the function is given its table (the template gives it to the drift check)."""
    return feedback_store() if os.environ.get(FeedbackSettings.variable("feedback_table")) else None


def _summary(report: dict) -> dict:
    summary = {key: report.get(key) for key in ("model", "version", "drifted", "report_key", "samples")}
    if report.get("note"):
        summary["note"] = report["note"]
    return summary


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def check_drift(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = DriftRequest.model_validate({} if event is None else event)  # a non-object event is refused
    except ValidationError as error:
        raise InvalidInput('the drift check takes {"model": "<name>"} or a scheduled event') from error
    config = settings()
    registry, datasets, objects = registry_store(), dataset_store(), data_objects()

    def check(model: str) -> dict:
        report = check_model(objects, registry, datasets, model=model,
                             window_hours=config.drift_window_hours, psi_threshold=config.drift_psi_threshold,
                             ks_pvalue=config.drift_ks_pvalue, feedback=_feedback())
        _emit(report, config.metrics_namespace)
        emit_quality(report.get("quality"), model, config.metrics_namespace)
        loop = close_loop(report, registry)  # after the report is stored: its event, the model's alarms
        drifted = [name for name, feature in report["features"].items() if feature["drifted"]]
        logger.info("drift checked", extra={"model": model, "drifted": report["drifted"], "features": drifted,
                                            "samples": report["samples"], "report_key": report["report_key"],
                                            **loop})
        return {**_summary(report), **loop}

    if request.model is not None:
        return {"reports": [check(request.model)]}

    # Scheduled: one model's failure must not hide the others' drift.
    reports, failed = [], []
    for spec in registry.list_specs():
        try:
            reports.append(check(spec.name))
        except NoChampion:
            continue  # nothing is served yet: nothing to check
        except MlopsError as error:
            logger.error("drift check failed", extra={"model": spec.name, "code": error.code, "reason": error.message})
            failed.append({"model": spec.name, "error": error.message})
    return {"reports": reports, "failed": failed} if failed else {"reports": reports}
