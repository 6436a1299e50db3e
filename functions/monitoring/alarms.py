"""Per-model CloudWatch alarms, created by the drift check the first time it checks a model.

Models are data (specs in the registry), not part of the stack, so their alarms cannot be in the
template: as SageMaker Model Monitor creates a monitoring schedule's alerts with the schedule, the
drift function puts each checked model's alarms (PutMetricAlarm: creating an existing alarm again
updates it and keeps its state), once per execution environment. Each is named
`<prefix>-<model>-<kind>` and notifies the platform's alarm topic:

    drift     ModelDriftDetected {model}              Maximum >= 1 over one schedule period
    latency   PredictLatency {model}                  p99 > latency_alarm_ms, 3 of 3 five-minute periods
    errors    ModelLoadFailures {model, service=serving} Sum >= 1 over five minutes
    quality   <the spec's metric> {model, service=monitoring}, as the quality check emits it (RocAuc, F1,
              Accuracy; MAE, RMSE): below (above, for errors) monitoring.quality_threshold over one schedule
              period; only for a spec that sets the threshold

Missing data is not breaching: a model nobody calls is not in alarm. The alarms outlive the stack
(`aws cloudwatch delete-alarms` on the prefix removes them).
"""

from typing import Any, Protocol

from functions.spec import ModelSpec

SERVICE_SERVING = "serving"
# The quality check's CloudWatch metric of each spec metric (functions/monitoring/quality.py emits them).
QUALITY_METRICS = {"accuracy": "Accuracy", "f1": "F1", "roc_auc": "RocAuc", "mae": "MAE", "rmse": "RMSE"}
ERROR_METRICS = {"mae", "rmse"}
LATENCY_PERIOD_S = 300


class ModelAlarms(Protocol):
    def put(self, alarms: list[dict[str, Any]]) -> None:
        """Create or update each alarm (PutMetricAlarm's parameters)."""
        ...


def alarm_names(prefix: str, model: str) -> dict[str, str]:
    return {kind: f"{prefix}-{model}-{kind}" for kind in ("drift", "latency", "errors", "quality")}


def model_alarms(spec: ModelSpec, *, prefix: str, namespace: str, topic_arn: str | None, latency_ms: int,
                 drift_period_s: int) -> list[dict[str, Any]]:
    """The alarms of one model, as PutMetricAlarm takes them."""
    names = alarm_names(prefix, spec.name)
    actions = {"AlarmActions": [topic_arn], "OKActions": [topic_arn]} if topic_arn else {}
    common = {"Namespace": namespace, "TreatMissingData": "notBreaching", "ActionsEnabled": True, **actions}
    # The predict handler's metrics document has the dimension sets {service} and {model}; its
    # ModelLoadFailures, one of its own, {model, service}. CloudWatch matches dimensions exactly.
    by_model = [{"Name": "model", "Value": spec.name}]
    serving = [*by_model, {"Name": "service", "Value": SERVICE_SERVING}]
    alarms: list[dict[str, Any]] = [
        {**common, "AlarmName": names["drift"], "MetricName": "ModelDriftDetected",
         "Dimensions": by_model, "Statistic": "Maximum", "Period": drift_period_s,
         "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
         "AlarmDescription": f"The inputs or outputs of model {spec.name} drifted from its training data"},
        {**common, "AlarmName": names["latency"], "MetricName": "PredictLatency", "Dimensions": by_model,
         "ExtendedStatistic": "p99", "Period": LATENCY_PERIOD_S, "EvaluationPeriods": 3, "DatapointsToAlarm": 3,
         "Threshold": float(latency_ms), "ComparisonOperator": "GreaterThanThreshold",
         "AlarmDescription": f"p99 latency of model {spec.name}'s predictions is above {latency_ms} ms"},
        {**common, "AlarmName": names["errors"], "MetricName": "ModelLoadFailures", "Dimensions": serving,
         "Statistic": "Sum", "Period": LATENCY_PERIOD_S, "EvaluationPeriods": 1, "Threshold": 1.0,
         "ComparisonOperator": "GreaterThanOrEqualToThreshold",
         "AlarmDescription": f"Model {spec.name} could not be loaded to serve a request"},
    ]
    threshold = spec.monitoring.quality_threshold
    if threshold is not None and spec.metric in QUALITY_METRICS:
        lower = spec.metric in ERROR_METRICS  # an error metric degrades upwards
        alarms.append({
            **common, "AlarmName": names["quality"], "MetricName": QUALITY_METRICS[spec.metric],
            "Dimensions": [{"Name": "model", "Value": spec.name}, {"Name": "service", "Value": "monitoring"}],
            "Statistic": "Maximum" if lower else "Minimum", "Period": drift_period_s, "EvaluationPeriods": 1,
            "Threshold": float(threshold),
            "ComparisonOperator": "GreaterThanThreshold" if lower else "LessThanThreshold",
            "AlarmDescription": f"{spec.metric} of model {spec.name} on labelled predictions is "
                                f"{'above' if lower else 'below'} {threshold}"})
    return alarms


def degraded(metric: str, value: float | None, threshold: float | None) -> bool:
    """Whether a quality figure crossed its threshold (an error metric upwards, the others downwards)."""
    if value is None or threshold is None:
        return False
    return value > threshold if metric in ERROR_METRICS else value < threshold
