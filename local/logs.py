"""Function output on the local cloud, where Lambda would put it.

Lambda sends a function's stdout to its CloudWatch Logs group, and CloudWatch turns the
embedded-metric-format documents in it into metrics (which the alarms and the dashboard
read). The shipper does both, on its own thread so that an invocation never waits for it:
`aws logs filter-log-events` and `aws cloudwatch get-metric-statistics` against the local
endpoint then answer as they would on AWS.
"""

import json
import logging
import queue
import threading
import time
from datetime import datetime, timezone

log = logging.getLogger("mlops.local")

MAX_VALUES_PER_CALL = 150  # PutMetricData takes at most 150 values per datum


def metric_data(document: dict) -> list[tuple[str, list[dict]]]:
    """The (namespace, MetricData) a CloudWatch EMF document stands for; [] when it is not one."""
    directives = (document.get("_aws") or {}).get("CloudWatchMetrics") if isinstance(document, dict) else None
    if not isinstance(directives, list):
        return []
    timestamp = datetime.fromtimestamp(document["_aws"].get("Timestamp", time.time() * 1000) / 1000, timezone.utc)
    result = []
    for directive in directives:
        data = []
        for dimension_set in directive.get("Dimensions") or [[]]:
            dimensions = [{"Name": name, "Value": str(document[name])} for name in dimension_set if name in document]
            for metric in directive.get("Metrics") or []:
                values = document.get(metric["Name"])
                values = values if isinstance(values, list) else [values]
                values = [float(v) for v in values if isinstance(v, (int, float))][:MAX_VALUES_PER_CALL]
                if values:
                    data.append({"MetricName": metric["Name"], "Dimensions": dimensions, "Values": values,
                                 "Unit": metric.get("Unit", "None"), "Timestamp": timestamp})
        if data:
            result.append((directive["Namespace"], data))
    return result


class LogShipper:
    """Ships each invocation's output to its log group, and its metric documents to CloudWatch."""

    def __init__(self, logs_client, cloudwatch_client):
        self.logs, self.cloudwatch = logs_client, cloudwatch_client
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="log-shipper")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def __call__(self, config, context, text: str) -> None:
        """The runtime's log sink: called at the end of an invocation with what it printed."""
        self._queue.put((context.log_group_name or f"/aws/lambda/{config.name}", context.aws_request_id,
                         int(time.time() * 1000), text))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._ship(*item)
            except Exception:  # noqa: BLE001 - losing a log line must never stop the local cloud
                log.exception("could not ship the logs of an invocation")

    def _ship(self, group: str, request_id: str, at_ms: int, text: str) -> None:
        lines = [line for line in text.splitlines() if line.strip()]
        stream = f"{datetime.now(timezone.utc):%Y/%m/%d}/[$LATEST]{request_id.replace('-', '')}"
        self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
        self.logs.put_log_events(logGroupName=group, logStreamName=stream,
                                 logEvents=[{"timestamp": at_ms, "message": line} for line in lines])
        for line in lines:
            if '"_aws"' not in line:
                continue
            try:
                document = json.loads(line)
            except ValueError:
                continue
            for namespace, data in metric_data(document):
                self.cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)
