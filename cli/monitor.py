"""`mlops monitor run|report` and `mlops dashboard`: drift checks and what they found, readable.

`monitor run` invokes the drift function now (as its schedule does) and prints each model's report as a
table; `monitor report` fetches a model's latest HTML page (reports/drift/<model>/<ts>.html, written by
every check beside its JSON); `dashboard` draws the CloudWatch dashboard's widgets (cli/dashboard.py).
"""

import json
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.platform import Platform, PlatformError
from functions.monitoring.reports import REPORTS_PREFIX, html_key
from functions.spec import is_model_name

monitor_app = typer.Typer(help="Drift checks: run one now, read the latest report.", no_args_is_help=True)
console = Console(soft_wrap=True)

StackOption = Annotated[str | None, typer.Option("--stack", help="A deployed stack's name (default: the local cloud).")]


def _run(action: Any) -> None:
    from cli.main import _run as run_reporting_errors

    run_reporting_errors(action)


def _platform(stack: str | None) -> Platform:
    from cli.main import platform

    return platform(stack)


def _model(model: str) -> str:
    if not is_model_name(model):
        raise PlatformError("model names are lowercase letters, digits and dashes (at most 63), starting with a letter")
    return model


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def print_report(report: dict[str, Any], key: str | None, bucket: str = "") -> None:
    """A report as one summary line and a table of its features (and the model's output)."""
    from functions.monitoring.report_html import summary

    title = f"{report.get('model')} v{report.get('version')}" if report.get("version") is not None else \
        str(report.get("model"))
    console.print(f"[bold]{escape(title)}[/bold]: {escape(summary(report))}")
    entries = dict(report.get("features") or {})
    if isinstance(report.get("prediction"), dict):
        entries["(prediction)"] = report["prediction"]
    if entries:
        table = Table("feature", "test", "statistic", "p-value", "threshold", "PSI", "samples", "drifted")
        for name, entry in entries.items():
            entry = entry if isinstance(entry, dict) else {}
            drifted = entry.get("drifted") is True
            table.add_row(escape(str(name)), _value(entry.get("test")), _value(entry.get("statistic")),
                          _value(entry.get("pvalue")), _value(entry.get("threshold")), _value(entry.get("psi")),
                          _value(entry.get("samples")), "[red]yes[/red]" if drifted else "[green]no[/green]")
        console.print(table)
    for note in (report.get("note"), report.get("prediction_note")):
        if note:
            console.print(f"  note: {escape(str(note))}")
    if key:
        console.print(f"  report s3://{escape(bucket)}/{escape(key)} and its page {escape(html_key(key))}")


@monitor_app.command("run")
def monitor_run(
    model: Annotated[str | None, typer.Argument(help="A model (default: every model with a champion).")] = None,
    as_json: bool = typer.Option(False, "--json", help="Print the drift function's answer as JSON."),
    stack: StackOption = None,
) -> None:
    """Run the drift check now (it also runs on its schedule) and print what it found."""

    def action() -> None:
        p = _platform(stack)
        result = p.check_drift(_model(model) if model is not None else None)
        if as_json:
            console.print_json(json.dumps(result))
            return
        reports = result.get("reports") or []
        if not reports and not result.get("failed"):
            console.print("No model has a champion yet: nothing to check.")
        for checked in reports:
            key = checked.get("report_key")
            report = p.objects.get_json(key) if key else checked
            print_report(report, key, p.bucket)
        for failed in result.get("failed") or []:
            console.print(f"[red]{escape(str(failed.get('model')))}: the check failed: "
                          f"{escape(str(failed.get('error')))}[/red]")
        if result.get("failed"):
            raise typer.Exit(1)

    _run(action)


def latest_page(p: Platform, model: str) -> str:
    """The key of the model's latest HTML report (keys sort by the check's time)."""
    keys = [key for key in p.objects.list_keys(f"{REPORTS_PREFIX}/{_model(model)}/") if key.endswith(".html")]
    if not keys:
        raise PlatformError(f"no drift report of {model!r} yet: run `mlops monitor run {model}`")
    return max(keys)


@monitor_app.command("report")
def monitor_report(
    model: str,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the page (default: "
                                                          "./drift-MODEL.html).")] = None,
    open_it: bool = typer.Option(False, "--open", help="Open the page in a browser."),
    stack: StackOption = None,
) -> None:
    """Fetch MODEL's latest drift report as a self-contained HTML page."""

    def action() -> None:
        p = _platform(stack)
        key = latest_page(p, model)
        path = out or Path(f"drift-{model}.html")
        if path.is_dir():
            path = path / f"drift-{model}.html"
        try:
            path.write_bytes(p.objects.get_bytes(key))
        except OSError as error:
            raise PlatformError(f"cannot write {path}: {error.strerror}") from None
        console.print(f"{escape(str(path))} (from s3://{escape(p.bucket)}/{escape(key)})")
        if open_it:
            webbrowser.open(path.resolve().as_uri())

    _run(action)


def dashboard(
    out: Annotated[Path, typer.Option("--out", help="The directory for dashboard.html and a PNG per widget.")] = Path(
        "dashboard"),
    hours: float = typer.Option(3.0, min=0.1, max=24 * 455, help="How many hours back to draw."),
    stack: StackOption = None,
) -> None:
    """Draw the platform's CloudWatch dashboard (its widgets, its metrics) to an HTML page and PNGs."""
    from cli.dashboard import read_widgets, write

    def action() -> None:
        p = _platform(stack)
        name = p.outputs.get("DashboardName")
        if not name:
            raise PlatformError("the platform's outputs name no dashboard (DashboardName): deploy the stack again")
        cloudwatch = p.client("cloudwatch")
        body = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
        widgets = read_widgets(cloudwatch, body, hours)
        try:
            written = write(widgets, out, name=name, hours=hours)
        except OSError as error:
            raise PlatformError(f"cannot write to {out}: {error.strerror}") from None
        table = Table("widget", "lines", "points", "file")
        for widget, path in zip([w for w in widgets if w.kind == "metric"], written[1:], strict=True):
            table.add_row(escape(widget.title), str(len(widget.series)),
                          str(sum(len(s.values) for s in widget.series)), escape(str(path)))
        console.print(table)
        for widget in (w for w in widgets if w.kind == "alarm"):
            states = ", ".join(f"{escape(name)} {state}" for name, state in widget.alarms)
            console.print(f"{escape(widget.title)}: {states}")
        console.print(f"{escape(str(written[0]))}")

    _run(action)
