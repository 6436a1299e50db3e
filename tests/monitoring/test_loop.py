"""After a drift check stores its report: the Model Drift Detected event (only then, and only on drift), the
model's alarms (put once per execution environment) and its per-model metrics."""

from datetime import UTC, datetime, timedelta

from functions.errors import RetryableError
from functions.monitoring.alarms import model_alarms
from tests.monitoring.helpers import capture, instances, shifted_instances
from tests.serving.events import emf_documents


def recent() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=5)


def test_drift_is_announced_after_its_report_is_stored(churn_champion, stores, memory_handler, monitor_outputs,
                                                       lambda_context):
    events, alarms = monitor_outputs
    capture(stores.objects, recent(), shifted_instances())
    (summary,) = memory_handler({"model": "churn"}, lambda_context)["reports"]
    assert summary["event"] == "Model Drift Detected" and summary["event_sent"] is True
    (detail,) = events.details("Model Drift Detected")
    assert detail["model"] == "churn" and detail["version"] == 1 and detail["report_key"] == summary["report_key"]
    assert stores.objects.get_json(detail["report_key"])["drifted"] is True  # stored before it was announced
    assert "tenure_months" in detail["drifted"] and detail["scores"]["tenure_months"]["drifted"] is True
    assert sorted(alarms.alarms) == ["mlops-test-model-churn-drift", "mlops-test-model-churn-errors",
                                     "mlops-test-model-churn-latency"]


def test_no_drift_no_event_and_alarms_are_put_once(churn_champion, churn_rows, stores, memory_handler,
                                                   monitor_outputs, lambda_context):
    events, alarms = monitor_outputs
    capture(stores.objects, recent(), instances(churn_rows.sample(200, random_state=3)))
    for _ in range(2):
        (summary,) = memory_handler({"model": "churn"}, lambda_context)["reports"]
        assert summary["drifted"] is False and "event" not in summary
    assert events.details() == []
    assert alarms.faults.calls.count("put") == 1


def test_alarms_that_cannot_be_put_do_not_fail_the_check(churn_champion, stores, memory_handler, monitor_outputs,
                                                         lambda_context):
    events, alarms = monitor_outputs
    alarms.faults.inject("put", RetryableError("CloudWatch is busy"))
    capture(stores.objects, recent(), shifted_instances())
    (summary,) = memory_handler({"model": "churn"}, lambda_context)["reports"]
    assert summary["alarms_error"] == "CloudWatch is busy" and summary["event_sent"] is True
    memory_handler({"model": "churn"}, lambda_context)  # tried again on the next check
    assert len(alarms.alarms) == 3


def test_per_model_metrics_by_model_and_by_version(churn_champion, stores, memory_handler, monitor_outputs,
                                                   lambda_context, capsys):
    capture(stores.objects, recent(), shifted_instances())
    capsys.readouterr()
    memory_handler({"model": "churn"}, lambda_context)
    (document,) = [d for d in emf_documents(capsys.readouterr().out)
                   if any(m["Name"] == "ModelDriftDetected" for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"])]
    assert ["model"] in document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert ["model", "version"] in document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert document["ModelDriftDetected"] == [1.0] and document["version"] == "1"


def test_the_quality_alarm_only_for_a_spec_with_a_minimum(churn_spec):
    alarms = model_alarms(churn_spec, prefix="p", namespace="Mlops", topic_arn="arn:aws:sns:us-east-1:1:t",
                          latency_ms=800, drift_period_s=3600)
    by_name = {a["AlarmName"]: a for a in alarms}
    assert set(by_name) == {"p-churn-drift", "p-churn-latency", "p-churn-errors"}
    latency = by_name["p-churn-latency"]
    assert latency["ExtendedStatistic"] == "p99" and latency["Threshold"] == 800.0
    assert latency["Dimensions"] == [{"Name": "model", "Value": "churn"}]  # as the predict handler emits it
    assert all(a["AlarmActions"] == ["arn:aws:sns:us-east-1:1:t"] and a["TreatMissingData"] == "notBreaching"
               for a in alarms)


def test_quality_below_the_specs_threshold_is_announced_and_alarmed(churn_spec):
    from functions.monitoring.loop import quality_report

    spec = churn_spec.model_copy(update={"monitoring": churn_spec.monitoring.model_copy(
        update={"quality_threshold": 0.7})})
    report = {"model": "churn", "version": 2, "report_key": "reports/drift/churn/a.json",
              "quality": {"labelled": 40, "window_hours": 24, spec.metric: 0.55}}
    degraded = quality_report(report, spec)
    assert degraded["degraded"] is True and degraded["value"] == 0.55 and degraded["threshold"] == 0.7
    assert quality_report({**report, "quality": {"labelled": 40, spec.metric: 0.9}}, spec)["degraded"] is False
    assert quality_report({**report, "quality": None}, spec)["degraded"] is False
    assert quality_report(report, churn_spec)["degraded"] is False  # no threshold: not watched
    alarms = {a["AlarmName"]: a for a in model_alarms(spec, prefix="p", namespace="Mlops", topic_arn=None,
                                                      latency_ms=800, drift_period_s=3600)}
    quality = alarms["p-churn-quality"]
    assert quality["ComparisonOperator"] == "LessThanThreshold" and quality["Threshold"] == 0.7
    assert "AlarmActions" not in quality
