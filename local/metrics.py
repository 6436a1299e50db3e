"""GetMetricData on the local cloud, answered as CloudWatch answers it.

moto's GetMetricData matches a metric without dimensions against every metric of that name, knows no
percentile statistic (pNN) and no metric math beyond naming another query. The dashboard's widgets use
all three (the p90 latency, the pipeline's FILL(failed, 0) + ..., the drift score's SEARCH), so the local
cloud answers them here, over the metric data moto stores:

- MetricStat: the metric whose namespace, name and dimensions are exactly the query's (as CloudWatch
  matches them), the statistic per period (local.alarms.statistic: SampleCount, Sum, Average, Minimum,
  Maximum, pNN), periods counted from StartTime, a period without values left out;
- SEARCH('{Namespace,dim,...} MetricName="name"', 'Stat', period): one result per stored metric of that
  namespace and exactly those dimension names (and that name, when given), labelled by its dimension values;
- metric math over other queries' ids: numbers, + - * /, FILL(series, value) (a missing period filled);
  what is unsupported answers with status InternalError and no values, never a failed call.
"""

import ast
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from moto.cloudwatch.models import CloudWatchBackend, MetricDatum

from local.alarms import statistic

Points = dict[datetime, float]
SEARCH = re.compile(r"""^\s*SEARCH\(\s*'\{(?P<schema>[^}]*)\}\s*(?P<terms>[^']*)'\s*,\s*'(?P<stat>[^']+)'\s*"""
                    r"""(?:,\s*(?P<period>\d+)\s*)?\)\s*$""")
OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b if b else math.nan,
}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _data(backend: CloudWatchBackend, start: datetime, end: datetime) -> Iterator[MetricDatum]:
    for datum in list(backend.get_all_metrics()):
        if isinstance(datum, MetricDatum) and start <= _aware(datum.timestamp) < end:
            yield datum


def stat_points(data: list[MetricDatum], stat: str, start: datetime, period: int) -> Points:
    """The statistic of each period (from `start`) that has values."""
    buckets: dict[int, list[float]] = {}
    for datum in data:
        index = int((_aware(datum.timestamp) - start).total_seconds() // period)
        buckets.setdefault(index, []).append(float(datum.value))
    return {start + timedelta(seconds=index * period): statistic(values, stat)
            for index, values in sorted(buckets.items())}


def _dimensions(datum: MetricDatum) -> frozenset[tuple[str, str]]:
    return frozenset((str(d.name), str(d.value)) for d in datum.dimensions)


def metric_stat(data: list[MetricDatum], query: dict[str, Any], start: datetime) -> Points:
    stat = query["MetricStat"]
    metric = stat["Metric"]
    wanted = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions") or [])
    matching = [d for d in data if d.namespace == metric["Namespace"] and d.name == metric["MetricName"]
                and _dimensions(d) == wanted]
    return stat_points(matching, stat["Stat"], start, int(stat["Period"]))


def search(data: list[MetricDatum], expression: str, start: datetime, period: int) -> list[tuple[str, Points]]:
    """The series SEARCH finds: its schema's namespace and exact dimension names, MetricName="..." if given."""
    match = SEARCH.match(expression)
    if match is None:
        raise ValueError("not a SEARCH expression the local cloud answers")
    namespace, *names = [part.strip().strip('"') for part in match["schema"].split(",")]
    metric_name = re.search(r'MetricName\s*=\s*"([^"]*)"', match["terms"])
    series: dict[tuple[str, frozenset], list[MetricDatum]] = {}
    for datum in data:
        if datum.namespace != namespace or {d.name for d in datum.dimensions} != set(names):
            continue
        if metric_name and datum.name != metric_name[1]:
            continue
        series.setdefault((datum.name, _dimensions(datum)), []).append(datum)
    step = int(match["period"] or period)
    found = []
    for (name, dimensions), points in sorted(series.items(), key=lambda item: (item[0][0], sorted(item[0][1]))):
        values = dict(dimensions)
        label = " ".join(values[n] for n in names) or name
        found.append((label, stat_points(points, match["stat"], start, step)))
    return found


def evaluate(expression: str, named: dict[str, Points]) -> Points:
    """Metric math over named series: numbers, + - * / and FILL(series, value)."""
    every = sorted({t for points in named.values() for t in points})

    def value(node: ast.AST) -> Points | float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id in named:
            return named[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = value(node.operand)
            return -inner if isinstance(inner, float) else {t: -v for t, v in inner.items()}
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            left, right, op = value(node.left), value(node.right), OPERATORS[type(node.op)]
            if isinstance(left, float) and isinstance(right, float):
                return op(left, right)
            if isinstance(left, float):
                assert isinstance(right, dict)
                return {t: op(left, v) for t, v in right.items()}
            if isinstance(right, float):
                return {t: op(v, right) for t, v in left.items()}
            return {t: op(left[t], right[t]) for t in left if t in right}
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "FILL"
                and len(node.args) == 2):
            series, fill = value(node.args[0]), value(node.args[1])
            if isinstance(series, dict) and isinstance(fill, float):
                return {t: series.get(t, fill) for t in every}
        raise ValueError(f"the local cloud does not evaluate {ast.unparse(node)!r}")

    result = value(ast.parse(expression, mode="eval").body)
    return result if isinstance(result, dict) else {t: result for t in every}


def get_metric_data(self: CloudWatchBackend, queries: list[dict[str, Any]], start_time: datetime,
                    end_time: datetime, scan_by: str = "TimestampAscending") -> list[dict[str, Any]]:
    start, end = _aware(start_time), _aware(end_time)
    data = list(_data(self, start, end))
    named: dict[str, Points] = {}
    answers: list[tuple[dict[str, Any], str, Points, str]] = []  # query, label, points, status
    for query in (q for q in queries if "MetricStat" in q):
        named[query["Id"]] = metric_stat(data, query, start)
        metric = query["MetricStat"]["Metric"]
        answers.append((query, query.get("Label") or metric["MetricName"], named[query["Id"]], "Complete"))
    for query in (q for q in queries if "Expression" in q):
        expression = str(query["Expression"])
        try:
            if expression.lstrip().startswith("SEARCH("):
                for label, points in search(data, expression, start, int(query.get("Period") or 300)):
                    answers.append((query, label, points, "Complete"))
                continue
            named[query["Id"]] = evaluate(expression, named)
            answers.append((query, query.get("Label") or query["Id"], named[query["Id"]], "Complete"))
        except (ValueError, SyntaxError, KeyError):
            answers.append((query, query.get("Label") or query["Id"], {}, "InternalError"))
    results = []
    for query, label, points, status in answers:
        if query.get("ReturnData", True) is False:
            continue
        points = {t: v for t, v in points.items() if math.isfinite(v)}  # CloudWatch drops what is not a number
        timestamps = sorted(points, reverse=scan_by == "TimestampDescending")
        results.append({"id": query["Id"], "label": label, "timestamps": timestamps,
                        "values": [points[t] for t in timestamps], "status_code": status})
    return results


@contextmanager
def faithful_metric_data() -> Iterator[None]:
    with mock.patch.object(CloudWatchBackend, "get_metric_data", get_metric_data):
        yield
