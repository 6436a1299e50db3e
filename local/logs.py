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
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("mlops.local")

MAX_VALUES_PER_CALL = 150  # PutMetricData takes at most 150 values per datum
MAX_DATA_PER_CALL = 1000  # and at most 1000 data per call
MAX_EVENTS_PER_CALL = 1000  # PutLogEvents: at most 10,000 events and 1 MB per call


def metric_data(document: dict) -> list[tuple[str, list[dict]]]:
    """The (namespace, MetricData) a CloudWatch EMF document stands for; [] when it is not one."""
    directives = (document.get("_aws") or {}).get("CloudWatchMetrics") if isinstance(document, dict) else None
    if not isinstance(directives, list):
        return []
    timestamp = datetime.fromtimestamp(document["_aws"].get("Timestamp", time.time() * 1000) / 1000, UTC)
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
    """Ships what the functions print to their log streams, and their metric documents to CloudWatch.

    Output is shipped in batches, at most every BATCH_SECONDS (CloudWatch Logs is not
    immediate either): a busy local API does not pay for two AWS calls per request. Each worker
    (execution environment) writes to its own log stream, named by the runtime as Lambda names it.
    """

    BATCH_SECONDS = 0.5

    def __init__(self, logs_client: Any, cloudwatch_client: Any) -> None:
        self.logs, self.cloudwatch = logs_client, cloudwatch_client
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="log-shipper")
        self._streams: set[tuple[str, str]] = set()  # (log group, log stream) created so far

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def __call__(self, log_group: str, log_stream: str, text: str) -> None:
        """The runtime's log sink: what a worker printed (whole lines), as it prints it."""
        self._queue.put((log_group, log_stream, int(time.time() * 1000), text))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            batch, deadline = [], time.monotonic() + self.BATCH_SECONDS
            while item is not None:
                batch.append(item)
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            stopping = item is None
            try:
                self._ship(batch)
            except Exception:  # losing a log line must never stop the local cloud
                log.exception("could not ship the functions' logs")

    def _ship(self, batch: list[tuple[str, str, int, str]]) -> None:
        events: dict[tuple[str, str], list[dict]] = {}
        metrics: dict[str, list[dict]] = {}
        for group, stream, at_ms, text in batch:
            # Lines end with "\n" only: a "\r" joins the lines of one event (Lambda logs a traceback so).
            for line in text.split("\n"):
                if not line.strip():
                    continue
                events.setdefault((group, stream), []).append({"timestamp": at_ms, "message": line})
                for namespace, data in _metric_data_of(line):
                    metrics.setdefault(namespace, []).extend(data)
        for (group, stream), stream_events in events.items():
            if (group, stream) not in self._streams:
                self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
                self._streams.add((group, stream))
            for start in range(0, len(stream_events), MAX_EVENTS_PER_CALL):
                self.logs.put_log_events(logGroupName=group, logStreamName=stream,
                                         logEvents=stream_events[start:start + MAX_EVENTS_PER_CALL])
        for namespace, data in metrics.items():
            for start in range(0, len(data), MAX_DATA_PER_CALL):
                self.cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start:start + MAX_DATA_PER_CALL])


def _metric_data_of(line: str) -> list[tuple[str, list[dict]]]:
    if '"_aws"' not in line:
        return []
    try:
        return metric_data(json.loads(line))
    except ValueError:
        return []
