"""CloudWatch alarms on the local cloud: evaluated on the metrics the functions emit, as CloudWatch does.

moto stores alarms and metric data but never evaluates an alarm. The evaluator does, on a thread, every
`interval_s`: for each metric alarm (a single metric: namespace, name, exact dimensions), the datapoints
of its last EvaluationPeriods complete periods (the statistic over the values of each period: SampleCount,
Sum, Average, Minimum, Maximum or a percentile pNN), each compared with the threshold; ALARM when at
least DatapointsToAlarm of them breach, else OK. A period without values is missing data, treated as the
alarm says (TreatMissingData): `notBreaching` good, `breaching` bad, `ignore` keeps the state when every
period is missing, `missing` (the default) makes the alarm INSUFFICIENT_DATA when every period is missing.
On a change of state it sets the state (SetAlarmState: `aws cloudwatch describe-alarms` shows it), notifies
the state's actions (an SNS action gets CloudWatch's JSON message) and sends the "CloudWatch Alarm State
Change" event to the default event bus, with the detail AWS documents, so rules on it (a roll-out's
rollback) run.

Local periods may be shorter than the template's: MLOPS_ALARM_PERIOD_SCALE (default 1) multiplies every
alarm's Period and the evaluation follows (0.05 makes a 60-second period 3 seconds), so that a test sees an
alarm fire in seconds. Alarms on metric math (the pipeline-failure alarm) are not evaluated here, and AWS's
own metrics (API Gateway, Lambda) are not emitted locally: those alarms stay as created.
"""

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import MetricDatum, cloudwatch_backends

from local.events import put_on_default_bus, service_event

log = logging.getLogger("mlops.local")

PERIOD_SCALE_VARIABLE = "MLOPS_ALARM_PERIOD_SCALE"
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}


def period_scale() -> float:
    """The local setting: how much shorter an alarm's period is here (1: as in the template)."""
    text = os.environ.get(PERIOD_SCALE_VARIABLE, "1")
    try:
        scale = float(text)
    except ValueError:
        raise ValueError(f"{PERIOD_SCALE_VARIABLE} is a number above 0 and at most 1, not {text!r}") from None
    if not (0 < scale <= 1):
        raise ValueError(f"{PERIOD_SCALE_VARIABLE} is a number above 0 and at most 1, not {text!r}")
    return scale


def statistic(values: list[float], name: str) -> float:
    """CloudWatch's statistic of a period's values (pNN: the nearest-rank percentile)."""
    if name == "SampleCount":
        return float(len(values))
    if name == "Sum":
        return math.fsum(values)
    if name == "Average":
        return math.fsum(values) / len(values)
    if name == "Minimum":
        return min(values)
    if name == "Maximum":
        return max(values)
    if name.startswith("p"):
        ordered = sorted(values)
        rank = math.ceil(float(name[1:]) / 100 * len(ordered))
        return ordered[min(max(rank, 1), len(ordered)) - 1]
    raise ValueError(f"the local cloud does not evaluate the statistic {name!r}")


@dataclass(frozen=True)
class Evaluation:
    state: str
    reason: str
    datapoints: list[float | None]  # the periods', oldest first (None: missing)
    breaching: int


def evaluate(alarm: dict[str, Any], datapoints: list[float | None]) -> Evaluation:
    """The state an alarm (DescribeAlarms' shape) takes on its periods' datapoints, oldest first."""
    compare = COMPARISONS[alarm["ComparisonOperator"]]
    threshold = float(alarm["Threshold"])
    needed = int(alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"])
    treat = alarm.get("TreatMissingData") or "missing"
    present = [d for d in datapoints if d is not None]
    breaching = sum(compare(d, threshold) for d in present)
    if treat == "breaching":
        breaching += len(datapoints) - len(present)
    shown = ", ".join("missing" if d is None else repr(round(d, 6)) for d in reversed(datapoints))
    if breaching >= needed:
        return Evaluation("ALARM", f"Threshold Crossed: {breaching} out of the last {len(datapoints)} datapoints "
                                   f"[{shown}] were {_said(alarm['ComparisonOperator'])} the threshold ({threshold})",
                          datapoints, breaching)
    if not present and treat == "missing":
        return Evaluation("INSUFFICIENT_DATA", f"Insufficient Data: {len(datapoints)} datapoints were unknown.",
                          datapoints, breaching)
    if not present and treat == "ignore":
        return Evaluation(alarm.get("StateValue") or "INSUFFICIENT_DATA", "no data: state kept (ignore)",
                          datapoints, breaching)
    return Evaluation("OK", f"Threshold Crossed: {breaching} out of the last {len(datapoints)} datapoints "
                            f"[{shown}] were {_said(alarm['ComparisonOperator'])} the threshold ({threshold}) "
                            f"(minimum {needed} datapoints for OK -> ALARM transition).", datapoints, breaching)


def _said(operator: str) -> str:
    return {"GreaterThanOrEqualToThreshold": "greater than or equal to", "GreaterThanThreshold": "greater than",
            "LessThanThreshold": "less than", "LessThanOrEqualToThreshold": "less than or equal to"}[operator]


class AlarmEvaluator:
    """Evaluates the account's metric alarms in moto, and acts on their changes as CloudWatch does."""

    def __init__(self, cloudwatch_client: Any, sns_client: Any, account: str, region: str, *,
                 scale: float | None = None, interval_s: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cloudwatch, self.sns = cloudwatch_client, sns_client
        self.account, self.region = account, region
        self.scale = period_scale() if scale is None else scale
        # Every scaled minute at least, and never slower than a second (CloudWatch evaluates every minute).
        self.interval_s = interval_s if interval_s is not None else min(1.0, 60 * self.scale / 4)
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="alarms")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.evaluate_all()
            except Exception:  # an evaluation failing must never stop the local cloud
                log.exception("the alarms could not be evaluated")

    def evaluate_all(self) -> list[tuple[str, str, str]]:
        """Evaluate every metric alarm once; returns the changes made (alarm, old state, new state)."""
        changes = []
        now = self.clock()
        pages = self.cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"])
        # Metric math is not evaluated locally.
        alarms = [a for page in pages for a in page["MetricAlarms"] if "MetricName" in a and not a.get("Metrics")]
        series = self._series(min((self._window(a, now)[0] for a in alarms), default=now), now)
        for alarm in alarms:
            result = evaluate(alarm, self.datapoints(alarm, now, series))
            if result.state != alarm["StateValue"]:
                self._change(alarm, result, now)
                changes.append((alarm["AlarmName"], alarm["StateValue"], result.state))
        return changes

    def _window(self, alarm: dict[str, Any], now: float) -> tuple[float, float, float]:
        """(start, end, period) of the alarm's last EvaluationPeriods complete (scaled) periods."""
        period = float(alarm["Period"]) * self.scale
        end = math.floor(now / period) * period
        return end - int(alarm["EvaluationPeriods"]) * period, end, period

    def _series(self, start: float, end: float) -> dict[tuple[str, str, frozenset[tuple[str, str]]],
                                                         list[tuple[float, float]]]:
        """The account's data points in [start, end), by metric (namespace, name, exact dimensions): one pass over
        moto's data for every alarm of an evaluation."""
        series: dict[tuple[str, str, frozenset[tuple[str, str]]], list[tuple[float, float]]] = {}
        for datum in list(cloudwatch_backends[self.account][self.region].metric_data):
            if isinstance(datum, MetricDatum) and start <= (at := _epoch(datum.timestamp)) < end:
                key = (datum.namespace, datum.name, frozenset((str(d.name), str(d.value)) for d in datum.dimensions))
                series.setdefault(key, []).append((at, float(datum.value)))
        return series

    def datapoints(self, alarm: dict[str, Any], now: float,
                   series: dict[tuple[str, str, frozenset[tuple[str, str]]], list[tuple[float, float]]] | None = None,
                   ) -> list[float | None]:
        """The statistic of each of the alarm's last EvaluationPeriods complete (scaled) periods, oldest first."""
        start, end, period = self._window(alarm, now)
        if series is None:
            series = self._series(start, end)
        # CloudWatch matches a metric's dimensions exactly.
        dimensions = frozenset((d["Name"], d["Value"]) for d in alarm.get("Dimensions", []))
        buckets: list[list[float]] = [[] for _ in range(int(alarm["EvaluationPeriods"]))]
        for at, value in series.get((alarm["Namespace"], alarm["MetricName"], dimensions), []):
            if start <= at < end:
                buckets[int((at - start) // period)].append(value)
        name = alarm.get("ExtendedStatistic") or alarm["Statistic"]
        return [statistic(values, name) if values else None for values in buckets]

    def _change(self, alarm: dict[str, Any], result: Evaluation, now: float) -> None:
        at = datetime.fromtimestamp(now, UTC)
        reason_data = {"version": "1.0", "queryDate": _iso(at), "statistic": alarm.get("Statistic"),
                       "period": alarm["Period"], "recentDatapoints": [d for d in result.datapoints if d is not None],
                       "threshold": alarm["Threshold"], "evaluatedDatapoints": []}
        self.cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=result.state,
                                        StateReason=result.reason[:1023], StateReasonData=json.dumps(reason_data))
        log.info("alarm %s: %s -> %s", alarm["AlarmName"], alarm["StateValue"], result.state)
        if alarm.get("ActionsEnabled", True):
            actions = {"ALARM": "AlarmActions", "OK": "OKActions", "INSUFFICIENT_DATA": "InsufficientDataActions"}
            for arn in alarm.get(actions[result.state], []):
                if arn.startswith("arn:aws:sns:"):
                    self._notify(arn, alarm, result, at)
        self._emit(alarm_state_change(alarm, result, at, self.account, self.region))

    def _notify(self, topic_arn: str, alarm: dict[str, Any], result: Evaluation, at: datetime) -> None:
        message = {
            "AlarmName": alarm["AlarmName"], "AlarmDescription": alarm.get("AlarmDescription"),
            "AWSAccountId": self.account,
            "NewStateValue": result.state, "NewStateReason": result.reason, "StateChangeTime": _iso(at),
            "Region": self.region, "AlarmArn": alarm["AlarmArn"], "OldStateValue": alarm["StateValue"],
            "Trigger": {"MetricName": alarm["MetricName"], "Namespace": alarm["Namespace"],
                        "StatisticType": "ExtendedStatistic" if alarm.get("ExtendedStatistic") else "Statistic",
                        "Statistic": alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
                        "Unit": alarm.get("Unit"),
                        "Dimensions": [{"value": d["Value"], "name": d["Name"]} for d in alarm.get("Dimensions", [])],
                        "Period": alarm["Period"], "EvaluationPeriods": alarm["EvaluationPeriods"],
                        "DatapointsToAlarm": alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"],
                        "ComparisonOperator": alarm["ComparisonOperator"], "Threshold": alarm["Threshold"],
                        "TreatMissingData": alarm.get("TreatMissingData") or "missing",
                        "EvaluateLowSampleCountPercentile": ""},
        }
        try:
            subject = f'{result.state}: "{alarm["AlarmName"]}" in {self.region}'[:100]
            self.sns.publish(TopicArn=topic_arn, Subject=subject, Message=json.dumps(message))
        except Exception:  # a notification that cannot be sent never stops the evaluation
            log.exception("alarm %s: the notification to %s failed", alarm["AlarmName"], topic_arn)

    def _emit(self, event: dict[str, Any]) -> None:
        try:
            put_on_default_bus(event)
        except Exception:  # EventBridge delivery failures never reach CloudWatch
            log.exception("the state change of alarm %s was not delivered", event["detail"]["alarmName"])


def alarm_state_change(alarm: dict[str, Any], result: Evaluation, at: datetime, account: str,
                       region: str) -> dict[str, Any]:
    """The "CloudWatch Alarm State Change" event CloudWatch sends to the default bus."""
    stat = alarm.get("ExtendedStatistic") or alarm.get("Statistic")
    detail = {
        "alarmName": alarm["AlarmName"],
        "state": {"value": result.state, "reason": result.reason, "timestamp": _iso(at)},
        "previousState": {"value": alarm["StateValue"], "reason": alarm.get("StateReason", ""),
                          "timestamp": _iso(alarm["StateUpdatedTimestamp"])
                          if isinstance(alarm.get("StateUpdatedTimestamp"), datetime) else None},
        "configuration": {
            "description": alarm.get("AlarmDescription"),
            "metrics": [{"id": "m1", "returnData": True, "metricStat": {
                "metric": {"namespace": alarm["Namespace"], "name": alarm["MetricName"],
                           "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}},
                "period": alarm["Period"], "stat": stat}}],
        },
    }
    return service_event("aws.cloudwatch", "CloudWatch Alarm State Change", account=account, region=region,
                         resources=[alarm["AlarmArn"]], detail=detail, at=at)


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _iso(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
