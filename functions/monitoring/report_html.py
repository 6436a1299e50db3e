"""The drift report as a page people read: one self-contained HTML file beside the JSON report.

A summary sentence first, then a table of every feature (test, statistic, threshold, drifted), a plot per
drifted feature (the reference's distribution against the live window's: a histogram over shared bins for a
numeric column, bar pairs of category shares for a categorical one), the prediction drift and the model
quality when the report has them. Plots are inline SVG drawn here (bars need no plotting library, and the
drift function imports nothing more to draw them); styles are inline: the page loads nothing.

The page is built from the report dict as it is, tolerant of sections that are missing or new keys: what
is there is shown. Every string from the report (feature, category and model names are user data) is
escaped. The plot data comes from the reference and the live window (`distributions`), never stored twice.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from functions.monitoring.alarms import QUALITY_METRICS
from functions.shared.reference import OTHER, OUTPUT, category_strings
from functions.shared.transform import numbers

BINS = 20  # histogram bins of a numeric plot
MAX_BARS = 15  # categories shown in a categorical plot; the rest are summed as "(other)"
MAX_LABEL_CHARS = 24  # a category's label under its bars (the full name is in its tooltip)
WIDTH, HEIGHT, MARGIN = 640, 240, 44
REFERENCE_COLOUR, LIVE_COLOUR = "#4c78a8", "#f58518"


@dataclass(frozen=True)
class Distribution:
    """What one plot shows: the share of each bin (or category) in the reference and in the live window."""

    kind: str  # "numeric" | "categorical"
    labels: list[str]  # per bar pair: a bin's range or a category
    reference: list[float]  # shares, summing to 1
    live: list[float]
    reference_count: int
    live_count: int


# --- plot data -------------------------------------------------------------------------------------------------


def numeric_distribution(sample: np.ndarray, values: Any, bins: int = BINS) -> Distribution | None:
    """Shares of the reference sample and of the live values over shared bins (the central 99% of both, the
    tails counted in the outer bins, so one outlier does not flatten the plot); None without values."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    live = numbers(series).to_numpy(dtype=np.float64, na_value=np.nan)
    live = live[np.isfinite(live)]
    reference = np.asarray(sample, dtype=np.float64)
    reference = reference[np.isfinite(reference)]
    if live.size == 0 or reference.size == 0:
        return None
    low = min(np.quantile(reference, 0.005), np.quantile(live, 0.005))
    high = max(np.quantile(reference, 0.995), np.quantile(live, 0.995))
    if not high > low:
        low, high = low - 0.5, high + 0.5  # one value on both sides: one bin around it
    edges = np.linspace(low, high, bins + 1)

    def shares(x: np.ndarray) -> list[float]:
        counts, _ = np.histogram(np.clip(x, low, high), bins=edges)
        return (counts / x.size).tolist()

    labels = [f"{_number(a)} to {_number(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return Distribution("numeric", labels, shares(reference), shares(live), int(reference.size), int(live.size))


def categorical_distribution(categories: np.ndarray, counts: np.ndarray, values: Any,
                             max_bars: int = MAX_BARS) -> Distribution | None:
    """Shares per category in the reference's counts and in the live values (categories the reference
    never saw are their own bars); the `max_bars` largest shown, the rest summed. None without values."""
    live = category_strings(values).value_counts()
    reference = pd.Series(np.asarray(counts, dtype=np.float64), index=[str(c) for c in categories])
    reference = reference.groupby(level=0).sum()
    if live.empty or reference.sum() <= 0:
        return None
    table = pd.DataFrame({"reference": reference / reference.sum(), "live": live / live.sum()}).fillna(0.0)
    table = table.loc[table.max(axis=1).sort_values(ascending=False, kind="stable").index]
    if len(table) > max_bars:
        rest = table.iloc[max_bars - 1:].sum()
        table = pd.concat([table.iloc[:max_bars - 1], pd.DataFrame([rest], index=["(other)"])])
    labels = ["(other)" if name == OTHER else str(name) for name in table.index]
    return Distribution("categorical", labels, table["reference"].tolist(), table["live"].tolist(),
                        int(reference.sum()), int(live.sum()))


def distribution(column: Any, values: Any) -> Distribution | None:
    """The plot data of a reference column (numeric: a sorted `sample`; categorical: `categories`, `counts`)."""
    if getattr(column, "sample", None) is not None:
        return numeric_distribution(column.sample, values)
    if getattr(column, "categories", None) is not None and getattr(column, "counts", None) is not None:
        return categorical_distribution(column.categories, column.counts, values)
    return None


def distributions(report: Mapping[str, Any], reference: Any, live: pd.DataFrame,
                  outputs: Any = None) -> dict[str, Distribution]:
    """Plot data for each drifted feature of `report` (and the model's output, when it drifted)."""
    plots: dict[str, Distribution] = {}
    columns = getattr(reference, "columns", None) or {}
    for name, entry in _features(report).items():
        if _drifted(entry) and name in columns and name in live.columns:
            plot = distribution(columns[name], live[name])
            if plot is not None:
                plots[name] = plot
    prediction = report.get("prediction")
    output = getattr(reference, "output", None)
    if isinstance(prediction, Mapping) and _drifted(prediction) and output is not None and outputs is not None:
        plot = distribution(output, outputs)
        if plot is not None:
            plots[OUTPUT] = plot
    return plots


# --- the page --------------------------------------------------------------------------------------------------


def render(report: Mapping[str, Any], plots: Mapping[str, Distribution] | None = None) -> str:
    """The report as one self-contained HTML page."""
    plots = plots or {}
    model = _text(report.get("model", "?"))
    version = report.get("version")
    title = f"Drift report: {model}" + (f" v{_text(version)}" if version is not None else "")
    parts = [f"<h1>{title}</h1>", f'<p class="summary">{escape(summary(report))}</p>', _facts(report)]
    for key in ("note", "prediction_note"):
        if report.get(key):
            parts.append(f'<p class="note">{_text(report[key])}</p>')
    reference = report.get("reference")
    if isinstance(reference, Mapping) and reference.get("warning"):
        parts.append(f'<p class="note">{_text(reference["warning"])}</p>')
    features = _features(report)
    parts.append("<h2>Features</h2>")
    parts.append(_feature_table(features) if features else "<p>No features were compared.</p>")
    drifted = [name for name, entry in features.items() if _drifted(entry)]
    if drifted:
        parts.append("<h2>Drifted features</h2>")
        for name in drifted:
            parts.append(_figure(name, plots.get(name)))
    prediction = report.get("prediction")
    if isinstance(prediction, Mapping):
        parts.append("<h2>Prediction drift</h2>")
        parts.append(_feature_table({str(prediction.get("name") or "prediction"): prediction}))
        if _drifted(prediction):
            parts.append(_figure("model output", plots.get(OUTPUT)))
    quality = report.get("quality")
    if isinstance(quality, Mapping) and quality:
        parts.append("<h2>Model quality</h2>")
        parts.append(_mapping_table(quality))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def summary(report: Mapping[str, Any]) -> str:
    """One sentence: how many features drifted, dataset drift, prediction drift, quality."""
    if not report.get("samples"):
        return str(report.get("note") or "No captured requests in the window: nothing was compared.")
    features = _features(report)
    drifted = sum(_drifted(entry) for entry in features.values())
    noun = "feature" if len(features) == 1 else "features"
    parts = [f"{drifted} of {len(features)} {noun} drifted",
             f"dataset drift: {_yes(report.get('dataset_drift'))}"]
    if isinstance(report.get("prediction"), Mapping):
        parts.append(f"prediction drift: {_yes(report.get('prediction_drift'))}")
    else:
        parts.append("prediction drift: not checked")
    quality = report.get("quality")
    if isinstance(quality, Mapping) and quality:
        parts.append(f"quality: {_quality_words(quality)}")
    return "; ".join(parts) + f" ({_count(report.get('samples'))} captured rows)."


def _quality_words(quality: Mapping[str, Any]) -> str:
    inner = quality.get("metrics")
    metrics: Mapping[str, Any] = inner if isinstance(inner, Mapping) else quality
    known = [key for key in QUALITY_METRICS if _is_number(metrics.get(key))]
    keys = known or [key for key, value in metrics.items() if _is_number(value) and key not in NOT_METRICS]
    counted = next((quality[key] for key in COUNT_KEYS if _is_number(quality.get(key))), None)
    if counted == 0:
        return "no labelled predictions in the window"
    words = ", ".join(f"{key} {_number(metrics[key])}" for key in keys[:4]) or str(quality.get("note") or "no figures")
    return words + (f" over {_count(counted)} labelled predictions" if counted is not None else "")


COUNT_KEYS = ("labelled", "labels", "count", "samples")
NOT_METRICS = {*COUNT_KEYS, "window_hours", "unmatched"}


def _facts(report: Mapping[str, Any]) -> str:
    rows = [("generated", report.get("generated_at")), ("window", _hours(report.get("window_hours"))),
            ("captured rows", report.get("samples")), ("drift share", report.get("drift_share")),
            ("dataset", report.get("dataset_id")), ("report", report.get("report_key"))]
    reference = report.get("reference")
    if isinstance(reference, Mapping):
        rows.append(("reference", reference.get("source")))
    return _rows_table([(k, v) for k, v in rows if v is not None], css="facts")


COLUMNS = ("kind", "test", "statistic", "pvalue", "threshold", "psi", "samples")


def _feature_table(features: Mapping[str, Any]) -> str:
    extra = sorted({key for entry in features.values() if isinstance(entry, Mapping) for key in entry
                    if key not in {*COLUMNS, "drifted", "name", "note"} and _is_scalar(entry[key])})
    head = "".join(f"<th>{escape(c)}</th>" for c in ("feature", *COLUMNS, "drifted", *extra, "note"))
    rows = []
    for name, entry in features.items():
        entry = entry if isinstance(entry, Mapping) else {"note": entry}
        drifted = _drifted(entry)
        cells = [f"<td>{_text(name)}</td>", *(f"<td>{_cell(entry.get(c))}</td>" for c in COLUMNS),
                 f'<td class="{"yes" if drifted else "no"}">{"yes" if drifted else "no"}</td>',
                 *(f"<td>{_cell(entry.get(c))}</td>" for c in extra), f"<td>{_cell(entry.get('note'))}</td>"]
        rows.append(f'<tr class="{"drifted" if drifted else ""}">{"".join(cells)}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _mapping_table(values: Mapping[str, Any]) -> str:
    def rows(mapping: Mapping[str, Any], prefix: str, depth: int) -> list[tuple[Any, Any]]:
        found: list[tuple[Any, Any]] = []
        for key, value in mapping.items():
            if isinstance(value, Mapping) and depth < 3:
                found.extend(rows(value, f"{prefix}{key} / ", depth + 1))
            elif _is_scalar(value):
                found.append((f"{prefix}{key}", value))
        return found

    return _rows_table(rows(values, "", 0), css="facts")


def _rows_table(rows: list[tuple[Any, Any]], css: str) -> str:
    body = "".join(f"<tr><th>{_text(k)}</th><td>{_cell(v)}</td></tr>" for k, v in rows)
    return f'<table class="{css}">{body}</table>'


def _figure(name: str, plot: Distribution | None) -> str:
    if plot is None:
        return f'<figure><figcaption>{_text(name)}</figcaption><p class="note">no distribution to plot</p></figure>'
    caption = (f"{_text(name)}: reference ({_count(plot.reference_count)} values) against live "
               f"({_count(plot.live_count)} values), share per {'bin' if plot.kind == 'numeric' else 'category'}")
    return f"<figure>{svg(plot, name)}<figcaption>{caption}</figcaption></figure>"


def svg(plot: Distribution, name: str) -> str:
    """Grouped bars (reference, live) per bin or category, with a share axis and a legend."""
    n = max(len(plot.labels), 1)
    top = max([*plot.reference, *plot.live, 1e-12])
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    slot = inner_w / n
    bar = slot * (0.45 if plot.kind == "categorical" else 0.5)
    shapes = []
    for i, (label, ref, live) in enumerate(zip(plot.labels, plot.reference, plot.live, strict=True)):
        for j, (share, colour, who) in enumerate(((ref, REFERENCE_COLOUR, "reference"), (live, LIVE_COLOUR, "live"))):
            h = inner_h * share / top
            x = MARGIN + i * slot + (slot - 2 * bar) / 2 + j * bar
            shapes.append(f'<rect x="{x:.1f}" y="{MARGIN + inner_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                          f'fill="{colour}"><title>{escape(label)}: {who} {share:.1%}</title></rect>')
        if plot.kind == "categorical" or i % max(n // 5, 1) == 0:
            shown = label if len(label) <= MAX_LABEL_CHARS else label[:MAX_LABEL_CHARS - 1] + "…"
            if plot.kind == "numeric":
                shown = label.split(" to ")[0]
            x = MARGIN + (i + 0.5) * slot if plot.kind == "categorical" else MARGIN + i * slot
            anchor = "end" if plot.kind == "categorical" else "middle"
            rotate = f' transform="rotate(-30 {x:.1f} {MARGIN + inner_h + 12})"' if plot.kind == "categorical" else ""
            shapes.append(f'<text x="{x:.1f}" y="{MARGIN + inner_h + 12}" text-anchor="{anchor}"{rotate}>'
                          f"{escape(shown)}</text>")
    for k in range(5):
        share = top * k / 4
        y = MARGIN + inner_h - inner_h * k / 4
        shapes.append(f'<line x1="{MARGIN}" x2="{WIDTH - MARGIN}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                      f'<text x="{MARGIN - 4}" y="{y + 3:.1f}" text-anchor="end">{share:.0%}</text>')
    legend = (f'<rect x="{WIDTH - MARGIN - 150}" y="8" width="10" height="10" fill="{REFERENCE_COLOUR}"/>'
              f'<text x="{WIDTH - MARGIN - 136}" y="17">reference</text>'
              f'<rect x="{WIDTH - MARGIN - 70}" y="8" width="10" height="10" fill="{LIVE_COLOUR}"/>'
              f'<text x="{WIDTH - MARGIN - 56}" y="17">live</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(name)}: reference against live">'
            f"{''.join(shapes)}{legend}</svg>")


# --- small helpers ---------------------------------------------------------------------------------------------


def _features(report: Mapping[str, Any]) -> dict[str, Any]:
    features = report.get("features")
    return {str(k): v for k, v in features.items()} if isinstance(features, Mapping) else {}


def _drifted(entry: Any) -> bool:
    return isinstance(entry, Mapping) and entry.get("drifted") is True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _number(value: Any) -> str:
    if not _is_number(value):
        return _text(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if value == 0 or 1e-3 <= abs(value) < 1e6 else f"{value:.3e}"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _text(value)


def _hours(value: Any) -> str | None:
    return None if value is None else f"last {_text(value)} hours"


def _yes(value: Any) -> str:
    return "yes" if value is True else "no"


def _text(value: Any) -> str:
    return escape(str(value))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _is_number(value):
        return escape(_number(value))
    if isinstance(value, (list, tuple, Mapping)):
        return escape(str(value)[:200])
    return _text(value)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; max-width: 72rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.summary { font-size: 1.1rem; font-weight: 600; padding: .75rem 1rem; background: #f3f5f8;
  border-left: 4px solid #4c78a8; }
.note { color: #8a5a00; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
thead th { background: #f3f5f8; }
tr.drifted td { background: #fff4e5; }
td.yes { color: #b00020; font-weight: 600; } td.no { color: #2e7d32; }
table.facts th { font-weight: normal; color: #555; }
figure { margin: 1rem 0 2rem; } figcaption { font-size: .85rem; color: #555; }
svg.plot { font-size: 10px; font-family: inherit; } svg.plot .grid { stroke: #e5e5e5; }
"""
