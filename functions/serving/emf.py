"""The CloudWatch embedded-metric-format documents the predict function writes on every request, built directly:
what Powertools' Metrics writes (the service dimension set first, each value in a list), without its per-metric
validation and flush, which cost 20-40 us a document."""

import json
import sys
import time

from aws_lambda_powertools.metrics.functions import is_metrics_disabled

OFF = is_metrics_disabled()  # POWERTOOLS_METRICS_DISABLED (or POWERTOOLS_DEV), as Powertools reads it


def write(namespace: str | None, service: str | None, dimensions: list[list[str]], properties: dict[str, str],
          values: dict[str, tuple[str, float]]) -> None:
    """One document: `values` are metric name -> (unit, value); `properties` hold the dimensions' values."""
    if OFF:
        return
    document = {"_aws": {"Timestamp": int(time.time() * 1000),
                         "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [["service"], *dimensions],
                                                "Metrics": [{"Name": name, "Unit": unit}
                                                            for name, (unit, _) in values.items()]}]},
                "service": service, **properties, **{name: [float(value)] for name, (_, value) in values.items()}}
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
