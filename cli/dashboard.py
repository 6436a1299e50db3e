"""`mlops dashboard`: the platform's CloudWatch dashboard drawn to files, for where there is no console.

The widgets are read from the dashboard itself (GetDashboard: the template's DashboardBody, resolved),
their metrics fetched with GetMetricData (the same call against the local cloud and a deployed stack:
metric arrays become MetricStat queries, expressions stay expressions), and each metric widget is
drawn to a PNG with matplotlib (Agg); alarm widgets show the alarms' states (DescribeAlarms). One
self-contained HTML page holds them all (the PNGs inline, base64).
"""

import base64
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

MAX_QUERIES = 500  # GetMetricData takes at most 500 queries a call


@dataclass
class Series:
    label: str
    timestamps: list[datetime]
    values: list[float]
    right: bool = False


@dataclass
class Widget:
    title: str
    kind: str  # "metric" | "alarm" | other CloudWatch widget types (shown by name only)
    series: list[Series] = field(default_factory=list)
    alarms: list[tuple[str, str]] = field(default_factory=list)  # (name, state)
    note: str | None = None

    @property
    def has_data(self) -> bool:
        return any(s.values for s in self.series)


def metric_queries(properties: dict[str, Any], period: int, prefix: str) -> list[dict[str, Any]]:
    """A metric widget's `metrics` as GetMetricData queries (CloudWatch's dashboard body format)."""
    queries: list[dict[str, Any]] = []
    previous: list[Any] = []
    for i, item in enumerate(properties.get("metrics") or []):
        if not isinstance(item, list) or not item:
            continue
        options = item[-1] if isinstance(item[-1], dict) else {}
        parts = item[:-1] if options is item[-1] else item
        query: dict[str, Any] = {"Id": str(options.get("id") or f"{prefix}{i}"),
                                 "ReturnData": options.get("visible", True) is not False}
        if options.get("label"):
            query["Label"] = str(options["label"])
        if "expression" in options:
            query["Expression"] = str(options["expression"])
            if options.get("period") or re.match(r"\s*(SEARCH\(|SELECT\b)", query["Expression"]):
                # a search's granularity; metric math takes its inputs' periods
                query["Period"] = int(options.get("period") or properties.get("period") or period)
        else:
            parts = [previous[j] if p == "." and j < len(previous) else p for j, p in enumerate(parts)]
            previous = parts
            if len(parts) < 2:
                continue
            namespace, name, *pairs = (str(p) for p in parts)
            dimensions = [{"Name": pairs[k], "Value": pairs[k + 1]} for k in range(0, len(pairs) - 1, 2)]
            query["MetricStat"] = {
                "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions},
                "Period": int(options.get("period") or properties.get("period") or period),
                "Stat": str(options.get("stat") or properties.get("stat") or "Average"),
            }
            query.setdefault("Label", options.get("label") or f"{name} {' '.join(pairs[1::2])}".strip())
        query["_right"] = options.get("yAxis") == "right"
        queries.append(query)
    return queries


def fetch(cloudwatch: Any, queries: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, list[Series]]:
    """GetMetricData over the queries (paged), by query id: a SEARCH expression answers several series."""
    found: dict[str, dict[str, Series]] = {}
    right = {q["Id"]: q.pop("_right", False) for q in queries}
    for at in range(0, len(queries), MAX_QUERIES):
        batch = queries[at:at + MAX_QUERIES]
        kwargs: dict[str, Any] = {"MetricDataQueries": batch, "StartTime": start, "EndTime": end,
                                  "ScanBy": "TimestampAscending"}
        while True:
            page = cloudwatch.get_metric_data(**kwargs)
            for result in page.get("MetricDataResults", []):
                label = str(result.get("Label") or result["Id"])
                series = found.setdefault(result["Id"], {}).setdefault(
                    label, Series(label, [], [], right.get(result["Id"], False)))
                points = sorted(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
                series.timestamps.extend(t for t, v in points if v is not None)
                series.values.extend(float(v) for _, v in points if v is not None)
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return {key: list(by_label.values()) for key, by_label in found.items()}


def read_widgets(cloudwatch: Any, body: dict[str, Any], hours: float, now: datetime | None = None) -> list[Widget]:
    """Every widget of a dashboard body, with its metrics over the last `hours` (or its alarms' states)."""
    end = (now or datetime.now(UTC)).replace(microsecond=0)
    start = end - timedelta(hours=hours)
    period = max(60, int(hours * 3600 / 360) // 60 * 60)  # about 360 points a line
    widgets = []
    for n, raw in enumerate(body.get("widgets") or []):
        properties = raw.get("properties") or {}
        kind = str(raw.get("type") or "")
        widget = Widget(title=str(properties.get("title") or f"widget {n + 1}"), kind=kind)
        if kind == "metric":
            queries = metric_queries(properties, period, prefix=f"w{n}q")
            if queries:
                found = fetch(cloudwatch, queries, start, end)
                widget.series = [s for q in queries if q["ReturnData"] for s in found.get(q["Id"], [])]
        elif kind == "alarm":
            names = [str(arn).split(":alarm:", 1)[-1] for arn in properties.get("alarms") or []]
            states = {}
            for at in range(0, len(names), 100):
                answer = cloudwatch.describe_alarms(AlarmNames=names[at:at + 100])
                states.update({a["AlarmName"]: a["StateValue"] for a in answer.get("MetricAlarms", [])})
                states.update({a["AlarmName"]: a["StateValue"] for a in answer.get("CompositeAlarms", [])})
            widget.alarms = [(name, states.get(name, "unknown")) for name in names]
        else:
            widget.note = f"a {kind or 'untyped'} widget: not drawn here"
        widgets.append(widget)
    return widgets


def draw(widget: Widget) -> bytes:
    """One metric widget as a PNG (left and right axes as CloudWatch draws them)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    figure, left = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    try:
        right = left.twinx() if any(s.right for s in widget.series) else None
        for s in widget.series:
            axis = right if s.right and right is not None else left
            style = "o-" if len(s.values) < 3 else "-"
            axis.plot(mdates.date2num(s.timestamps), s.values, style, label=s.label, markersize=3,
                      color=None if axis is left else "tab:red")
        if not widget.has_data:
            left.text(0.5, 0.5, "no data in this window", ha="center", va="center", transform=left.transAxes,
                      color="grey")
        left.set_title(widget.title, fontsize=10)
        left.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        handles = [h for axis in (left, right) if axis is not None for h in axis.get_legend_handles_labels()[0]]
        if handles:
            left.legend(handles=handles, fontsize=7, loc="upper left")
        left.grid(alpha=0.3)
        figure.autofmt_xdate()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)


def file_name(n: int, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "widget"
    return f"{n:02d}-{slug}.png"


def write(widgets: list[Widget], out: Path, *, name: str, hours: float) -> list[Path]:
    """The PNG of each metric widget and dashboard.html (them inline, the alarms' states as a table)."""
    out.mkdir(parents=True, exist_ok=True)
    written, parts = [], []
    for n, widget in enumerate(widgets, start=1):
        if widget.kind == "metric":
            png = draw(widget)
            path = out / file_name(n, widget.title)
            path.write_bytes(png)
            written.append(path)
            data = base64.b64encode(png).decode()
            parts.append(f'<figure><img alt="{escape(widget.title)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{escape(widget.title)}</figcaption></figure>")
        elif widget.kind == "alarm":
            rows = "".join(f'<tr><td>{escape(a)}</td><td class="{escape(s)}">{escape(s)}</td></tr>'
                           for a, s in widget.alarms)
            parts.append(f"<figure><h2>{escape(widget.title)}</h2><table>{rows}</table></figure>")
        else:
            parts.append(f"<figure><h2>{escape(widget.title)}</h2><p>{escape(widget.note or '')}</p></figure>")
    page = out / "dashboard.html"
    page.write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(name)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{escape(name)}</h1>"
        f"<p>The last {hours:g} hours, drawn {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>"
        f'<div class="grid">{"".join(parts)}</div></body></html>\n')
    return [page, *written]


STYLE = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#222}.grid{display:flex;flex-wrap:wrap;gap:1rem}"
         "figure{margin:0;border:1px solid #ddd;padding:.5rem}figcaption{font-size:.8rem;color:#555}"
         "img{max-width:640px}td{padding:.2rem .6rem;border-bottom:1px solid #eee}"
         "td.ALARM{color:#b00020;font-weight:600}td.OK{color:#2e7d32}td.INSUFFICIENT_DATA{color:#8a5a00}")
