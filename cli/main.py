"""`mlops`: the platform's command line, for the local cloud (default) or a deployed stack."""

import faulthandler
import gc
import json
import re
import shlex
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, TypeVar

import requests
import typer
import yaml
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from cli.batch import batch_app
from cli.monitor import dashboard, monitor_app, monitor_run
from cli.platform import Platform, PlatformError, state_dir
from functions.records import Run
from functions.registry.lifecycle import Outcome
from functions.spec import METRICS

if TYPE_CHECKING:
    from functions.registry.rollout import RolloutOutcome
    from mlops.lineage import DatasetLineage, VersionLineage

app = typer.Typer(help="A serverless MLOps platform: local cloud and AWS.", no_args_is_help=True, add_completion=False)
models_app = typer.Typer(help="Model specs and their registered versions.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets.", no_args_is_help=True)
runs_app = typer.Typer(help="Training runs: how each one went, and why it failed.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(runs_app, name="runs")
rollout_app = typer.Typer(help="Roll-outs: a challenger beside the champion (canary or shadow), promoted after "
                                "its bake time unless its alarms fire.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")
app.add_typer(batch_app, name="batch")
app.add_typer(monitor_app, name="monitor")
app.command("dashboard")(dashboard)
console = Console()
err = Console(stderr=True)

T = TypeVar("T")
STOP_REPORT_AFTER_S = 5.0  # `mlops up` stops in a second or two; past this it prints where it waits
StackOption = Annotated[str | None, typer.Option("--stack", help="A deployed stack's name (default: the local cloud).")]


def platform(stack: str | None) -> Platform:
    return Platform.deployed(stack) if stack else Platform.local()


def fail(message: str, code: int = 1) -> NoReturn:
    # A message may hold [brackets]; soft wrap: a long path stays one piece to copy (the terminal wraps it).
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _run(action: Callable[[], T]) -> T:
    """Run a command, turning expected failures into one clear line and exit code 1."""
    from functions.errors import MlopsError

    try:
        return action()
    except PlatformError as error:
        fail(str(error))
    except MlopsError as error:
        fail(error.message)
    except (BotoCoreError, ClientError, requests.RequestException) as error:
        fail(f"cannot reach the platform: {error}")


@app.command()
def up(
    aws_port: int = typer.Option(4566, help="Port of the local AWS endpoint."),
    api_port: int = typer.Option(3000, help="Port of the local REST API."),
    template: Path | None = typer.Option(None, help="A synthesized template (default: synthesize app.py)."),
    warm: bool = typer.Option(False, help="Start one environment of every function at once (as provisioned "
                                          "concurrency), so that no first invocation is a cold start."),
) -> None:
    """Start the local cloud and keep it running until Ctrl-C (or SIGTERM)."""
    from local.cloud import LocalCloud

    cloud = LocalCloud(template=template, aws_port=aws_port, api_port=api_port, home=state_dir(), warm=warm)
    # SIGTERM stops it as Ctrl-C does, whenever it comes (during the start too): the finally below
    # stops whatever was started, and removes the outputs files.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # And Ctrl-C always does, even when started in the background of a shell that ignores SIGINT for it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1` prints where every thread is, to the log
    try:
        with console.status("Synthesizing the CDK app and deploying it on the local cloud..."):
            try:
                outputs = cloud.start()
            except OSError as error:
                fail(f"cannot start the local cloud: {error.strerror or error} (is another `mlops up` running?)")
        console.print_json(json.dumps(outputs))
        console.print(f"[green]Local cloud up[/green]: AWS endpoint {outputs['Endpoint']}, API {outputs['ApiUrl']}")
        console.print(f"Outputs written to {' and '.join(map(str, cloud.outputs_files))}; "
                      '`eval "$(mlops env)"` points AWS clients at it. Ctrl-C stops it.')
        while True:  # in naps, not one endless wait: a signal another thread took is handled at the next wake
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        # A stop that hangs says where: every thread's stack, to the log, while it waits.
        faulthandler.dump_traceback_later(STOP_REPORT_AFTER_S)
        cloud.stop()
        faulthandler.cancel_dump_traceback_later()
        if cloud.outputs:
            console.print("Local cloud stopped.")
        # The process ends now: moto's in-memory AWS is hundreds of thousands of objects that the
        # interpreter's last garbage collections would walk for a second; frozen, they are left alone.
        gc.freeze()


@app.command()
def env(stack: StackOption = None) -> None:
    """Print the shell exports that point AWS clients at the running local cloud: eval "$(mlops env)".

    Also MLOPS_<OUTPUT> for each of its outputs (MLOPS_DATA_BUCKET_NAME, MLOPS_API_URL, MLOPS_API_KEY...).
    With --stack, only those and the region (the AWS clients keep their own credentials).
    """
    p = _run(lambda: platform(stack))
    region = p.outputs["Region"]
    exports: dict[str, str] = {}
    if p.endpoint:
        exports |= {"AWS_ENDPOINT_URL": p.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing"}
    # AWS_REGION for the SDKs that read it; AWS_DEFAULT_REGION for botocore and so for the AWS CLI.
    exports |= {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    for name, value in p.outputs.items():
        if re.fullmatch(r"[A-Z][A-Za-z]*", name) and name not in {"Endpoint", "Region"}:  # not a CDK-hashed name
            exports["MLOPS_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()] = str(value)
    for name, value in exports.items():
        typer.echo(f"export {name}={shlex.quote(value)}")


@app.command()
def outputs(stack: StackOption = None) -> None:
    """Print the endpoints and names a client needs (JSON)."""
    console.print_json(json.dumps(_run(lambda: platform(stack).outputs)))


@app.command()
def demo(
    aws_port: int = typer.Option(4566, help="Port of the local AWS endpoint."),
    api_port: int = typer.Option(3000, help="Port of the local REST API."),
) -> None:
    """Run the whole loop on a fresh local cloud: spec, upload, pipeline, predictions, drift."""
    from cli.demo import run_demo

    _run(lambda: run_demo(console, aws_port=aws_port, api_port=api_port))


@models_app.command("create")
def models_create(
    name: str,
    spec: Annotated[Path, typer.Option("--spec", help="The model spec (YAML or JSON).")],
    stack: StackOption = None,
) -> None:
    """Register (or update) the spec of model NAME."""
    from functions.spec import ModelSpec

    def action() -> None:
        try:
            raw = yaml.safe_load(spec.read_text())
        except OSError as error:
            raise PlatformError(f"cannot read {spec}: {error.strerror}") from None
        except yaml.YAMLError:
            raise PlatformError(f"{spec} is not valid YAML") from None
        if not isinstance(raw, dict):
            raise PlatformError(f"{spec} must hold a mapping (task, target, features, estimator, metric)")
        if raw.get("name", name) != name:
            raise PlatformError(f"the spec names model {raw['name']!r}, not {name!r}")
        try:
            model_spec = ModelSpec.model_validate({**raw, "name": name})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in error.errors())
            raise PlatformError(f"the spec is invalid: {problems}") from None
        platform(stack).registry.put_spec(model_spec)
        console.print(f"[green]Registered[/green] model spec {name!r} "
                      f"({model_spec.task}, {len(model_spec.features)} features)")

    _run(action)


@models_app.command("list")
def models_list(stack: StackOption = None) -> None:
    """List the registered models with their champions."""

    def action() -> None:
        p = platform(stack)
        table = Table("model", "task", "metric", "champion")
        specs = p.registry.list_specs()
        for spec in specs:
            champion = p.registry.get_alias(spec.name, "champion")
            table.add_row(spec.name, spec.task, spec.metric, f"v{champion}" if champion else "-")
        console.print(table)
        without_spec = sorted(set(p.registry.list_run_models()) - {spec.name for spec in specs})
        if without_spec:
            console.print(f"Runs of models with no spec: {escape(', '.join(without_spec))} (`mlops runs list`)")

    _run(action)


@models_app.command("show")
def models_show(name: str, stack: StackOption = None) -> None:
    """Show a model's spec, versions, champion and latest runs."""

    from functions.errors import UnknownModel

    def action() -> None:
        p = platform(stack)
        runs = p.registry.list_runs(name, limit=10)
        try:
            spec = p.registry.get_spec(name)
        except UnknownModel:
            if not runs:
                raise
            # Its uploads made runs that failed: they, and why, are what the user came to see.
            console.print(f"[bold]{escape(name)}[/bold]: [yellow]no model spec is registered[/yellow] (its runs fail "
                          f"until one is: `mlops models create {escape(name)} --spec FILE`)")
            print_runs(runs, title=f"runs of {name}")
            return
        champion = p.registry.get_alias(name, "champion")
        console.print(f"[bold]{escape(name)}[/bold]: {spec.task}, target {spec.target!r}, metric {spec.metric}, "
                      f"champion {'v' + str(champion) if champion else '-'}")
        versions = Table("version", "status", "run", "dataset", "metrics", "format")
        listed = p.registry.list_versions(name)
        for v in listed:
            versions.add_row(f"v{v.version}", STATUS_STYLE.get(v.status, v.status), v.run_id, v.dataset_id[:12],
                             ", ".join(f"{k}={x:.3f}" for k, x in v.metrics.items()), v.artifacts.format)
        console.print(versions)
        for v in listed:  # in full, not cut to a table cell
            for warning in v.warnings:
                console.print(f"[yellow]v{v.version} warning:[/yellow] {escape(warning)}", soft_wrap=True)
        print_runs(runs, title=f"latest runs of {name}")

    _run(action)


# --- the registry: approvals, promotion by hand, rollback, the aliases' history ------------------

STATUS_STYLE = {"Approved": "[green]Approved[/green]", "Rejected": "[red]Rejected[/red]",
                "PendingManualApproval": "[yellow]PendingManualApproval[/yellow]"}
ReasonOption = Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail and sent with the event.")]
VersionArgument = Annotated[int, typer.Argument(min=1, help="The version number (as `mlops models show` lists it).")]


def _change(action: Callable[..., Outcome], name: str, version: int, reason: str, stack: str | None) -> None:
    """Make one registry change as the user (their STS identity), through the domain function the pipeline uses;
    each change made is announced on the default event bus with the user's credentials."""

    def run() -> None:
        p = platform(stack)
        outcome = action(p.registry, name, version, actor=p.actor, reason=reason, events=p.events)
        if outcome.changed:
            console.print(f"[green]{escape(outcome.message)}[/green] (by {escape(p.actor)})", soft_wrap=True)
        else:
            console.print(f"{escape(outcome.message)}: nothing to change", soft_wrap=True)
        if outcome.unsent:
            err.print(f"[yellow]warning:[/yellow] {outcome.unsent} registry event(s) could not be sent to "
                      "EventBridge; the change is made, and kept in the audit trail (`mlops models history`)")

    _run(run)


@models_app.command("approve")
def models_approve(name: str, version: VersionArgument, reason: ReasonOption = "", stack: StackOption = None) -> None:
    """Approve a version (PendingManualApproval -> Approved): only an approved version can be champion."""
    from functions.registry.lifecycle import approve

    _change(approve, name, version, reason, stack)


@models_app.command("reject")
def models_reject(name: str, version: VersionArgument, reason: ReasonOption = "", stack: StackOption = None) -> None:
    """Reject a version that is not the champion: it can never be approved, promoted or rolled back to."""
    from functions.registry.lifecycle import reject

    _change(reject, name, version, reason, stack)


@models_app.command("promote")
def models_promote(name: str, version: VersionArgument, reason: ReasonOption = "", stack: StackOption = None) -> None:
    """Make an approved version the champion (what the predict API serves)."""
    from functions.registry.lifecycle import promote

    _change(promote, name, version, reason, stack)


@models_app.command("rollback")
def models_rollback(name: str, version: VersionArgument, reason: ReasonOption = "", stack: StackOption = None) -> None:
    """Point the champion back at an earlier approved version, in one call."""
    from functions.registry.lifecycle import rollback

    _change(rollback, name, version, reason, stack)


def _moment(at: str | None) -> str:
    """A registry time in full, as `mlops models at` takes it back: 2026-01-31 12:00:05.123456Z (UTC)."""
    return "" if at is None else at.replace("T", " ").replace("+00:00", "Z")


@models_app.command("history")
def models_history(name: str, stack: StackOption = None) -> None:
    """Which version held each alias over time, who moved it and why; then each version's approval changes."""
    from functions.registry.lifecycle import history, trail

    def action() -> None:
        registry = platform(stack).registry
        intervals = history(registry, name)
        table = Table("alias", "version", "from", "until", "moved by", "reason", title=f"aliases of {name}",
                      box=box.SIMPLE_HEAD, title_justify="left")
        for i in intervals:
            table.add_row(i.alias, f"v{i.version}", _moment(i.start), _moment(i.end) or "[green]now[/green]",
                          escape(i.actor), escape(i.reason))
        console.print(table if intervals else f"No alias of {escape(name)} has been set yet.")
        states = [e for e in trail(registry, name) if e.alias is None and e.rollout_id is None]
        changes = Table("time", "version", "from", "to", "by", "reason", title=f"version states of {name}",
                        box=box.SIMPLE_HEAD, title_justify="left")
        for e in states:
            changes.add_row(_moment(e.at), f"v{e.version}", e.from_status or "", STATUS_STYLE.get(str(e.status), ""),
                            escape(e.actor), escape(e.reason))
        if states:
            console.print(changes)

    _run(action)


@models_app.command("at")
def models_at(
    name: str,
    time: Annotated[str, typer.Argument(help="An ISO 8601 time, e.g. 2026-01-31T12:00:00Z (UTC unless it says).")],
    alias: Annotated[str, typer.Option(help="champion (what the predict API served) or challenger.")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    stack: StackOption = None,
) -> None:
    """Which version of NAME was serving (held the champion alias) at TIME: one read of the alias's history."""
    from functions.records import ALIASES
    from functions.registry.lifecycle import serving_at
    from functions.registry.store import instant

    def action() -> None:
        if alias not in ALIASES:
            raise PlatformError(f"--alias is one of {', '.join(ALIASES)}, not {alias!r}")
        at = instant(time)
        move = serving_at(platform(stack).registry, name, at, "champion" if alias == "champion" else "challenger")
        if as_json:
            typer.echo(json.dumps({"model": name, "alias": alias, "at": at, "version": move and move.version,
                                   "since": move and move.at, "actor": move and move.actor,
                                   "reason": move and move.reason}))
        elif move is None:
            console.print(f"{escape(name)} had no {alias} at {_moment(at)}")
        else:
            console.print(f"[bold]v{move.version}[/bold] was the {alias} of {escape(name)} at {_moment(at)}: since "
                          f"{_moment(move.at)}, moved by {escape(move.actor)} ({escape(move.reason)})", soft_wrap=True)

    _run(action)


WIDE_ENOUGH_FOR_REASONS = 120  # a narrower terminal gets the reasons under the table, each on its own lines


def print_runs(runs: list[Run], *, title: str | None = None) -> None:
    """One row per run, the latest first: how it went, where it failed and why.

    A run id is never cut (it is what `mlops runs show` takes, and it starts with its model's
    name). The reason is the last column, wrapped in the width the others leave; in a terminal
    too narrow for that, each failed run's reason follows the table instead.
    """
    inline = console.width >= WIDE_ENOUGH_FOR_REASONS
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    table.add_column("run", no_wrap=True, min_width=max((len(r.run_id) for r in runs), default=3))
    for header in ("status", "started", "ended", "failed step", "dataset", "version"):
        table.add_column(header, no_wrap=True)
    if inline:
        table.add_column("reason", ratio=1)
    for r in runs:
        started, ended = _when(r.started_at), _when(r.ended_at)
        if ended[:10] == started[:10]:
            ended = ended[11:]  # the same day: its time
        status = {"SUCCEEDED": "[green]SUCCEEDED[/green]", "FAILED": "[red]FAILED[/red]"}.get(r.status, r.status)
        table.add_row(escape(r.run_id), status, started, ended, escape(r.failed_step or ""),
                      escape((r.dataset_id or "")[:8]), f"v{r.model_version}" if r.model_version else "",
                      *([escape(r.failure_reason or "")] if inline else []))
    console.print(table)
    if not inline:
        for r in runs:
            if r.failure_reason:
                console.print(f"[bold]{escape(r.run_id)}[/bold]: {escape(r.failure_reason)}")


def _when(timestamp: str | None) -> str:
    """An ISO time as a person reads it: 2026-01-31 12:00:05 (UTC)."""
    return (timestamp or "").replace("T", " ").split(".")[0].removesuffix("+00:00").removesuffix("Z")


@runs_app.command("list")
def runs_list(
    model: Annotated[str | None, typer.Argument(help="Only this model's runs (default: every model's).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs, the latest first.")] = 20,
    stack: StackOption = None,
) -> None:
    """List training runs, the latest first, with the step and reason of each failure.

    Runs of models with no spec are listed too (an upload for such a model makes a run that fails).
    """

    def action() -> None:
        registry = platform(stack).registry
        models = [model] if model else registry.list_run_models()
        runs = sorted((r for m in models for r in registry.list_runs(m, limit=limit)),
                      key=lambda r: r.started_at, reverse=True)[:limit]
        if not runs:
            console.print(f"No runs of model {escape(model)!r}." if model else "No runs yet.")
            return
        print_runs(runs)

    _run(action)


@runs_app.command("show")
def runs_show(model: str, run_id: str, stack: StackOption = None) -> None:
    """Show one run: its status, times, data, outcome, and why it failed."""

    def action() -> None:
        r = platform(stack).registry.get_run(model, run_id)
        table = Table(show_header=False, title=f"run {escape(r.run_id)} of {escape(r.model)}", title_justify="left")
        data = f"s3://{r.bucket}/{r.key}" + (f" (version {r.version_id})" if r.version_id else "")
        rows: list[tuple[str, object]] = [
            ("status", r.status), ("started", _when(r.started_at)), ("ended", _when(r.ended_at)),
            ("failed step", r.failed_step), ("error type", r.error_type), ("reason", r.failure_reason),
            ("data", data), ("dataset", r.dataset_id), ("code version", r.code_version),
            ("model version", f"v{r.model_version}" if r.model_version else None),
            ("promoted", r.promoted), ("champion", f"v{r.champion}" if r.champion else None),
            ("promotion", r.promotion_reason),
            ("metrics", ", ".join(f"{k}={v:.4g}" for k, v in r.metrics.items())),
            ("params", json.dumps(r.params, sort_keys=True) if r.params else None),
            ("duplicate of", f"{r.duplicate_of} (the same data, spec and code: nothing trained)"
             if r.duplicate_of else None),
            ("retrain", "asked" if r.retrain else None),
            *(("warning", warning) for warning in r.warnings),
            *_tracked_rows(r),
        ]
        for label, value in rows:
            if value not in (None, ""):
                table.add_row(label, escape(str(value)))
        console.print(table)

    _run(action)


@data_app.command("push")
def data_push(
    model: str,
    file: Path,
    wait: bool = typer.Option(True, help="Wait for the training run the upload starts."),
    retrain: bool = typer.Option(False, "--retrain", help="Train even if the same data, spec and code trained "
                                                          "a model before (otherwise that run is not repeated)."),
    stack: StackOption = None,
) -> None:
    """Upload a dataset for MODEL; the upload starts its training pipeline.

    A run identical to one that succeeded (the same data, spec and code version) trains nothing:
    it ends at once, naming the run it matches, unless --retrain asks for a new training.
    """

    def action() -> None:
        p = platform(stack)
        pushed = p.push_dataset(model, file, retrain=retrain)
        console.print(f"Uploaded s3://{pushed['bucket']}/{pushed['key']} (version {pushed['version_id']}); "
                      f"run {pushed['run_id']}")
        if not wait:
            return
        with console.status(f"Waiting for run {pushed['run_id']}..."):
            run = p.wait_for_run(model, pushed["run_id"])
        if run.status == "FAILED":
            raise PlatformError(f"run {run.run_id} failed: {run.failure_reason or 'see its logs'}")
        if run.duplicate_of:
            console.print(f"[green]Run {run.run_id} succeeded[/green] without training: the same data, spec and "
                          f"code trained model v{run.model_version} in run {run.duplicate_of} (push with --retrain "
                          "to train again)", soft_wrap=True)
            return
        console.print(f"[green]Run {run.run_id} succeeded[/green]: model v{run.model_version}, "
                      f"promoted: {run.promoted}")
        for warning in run.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)

    _run(action)


@app.command()
def predict(
    model: str,
    data: Annotated[str | None, typer.Option(help='JSON: {"instances": [{...}]} or one instance {...}.')] = None,
    file: Annotated[Path | None, typer.Option(help="A JSON file with the same content.")] = None,
    stack: StackOption = None,
) -> None:
    """Ask the HTTPS predict API of MODEL."""

    def action() -> None:
        if (data is None) == (file is None):
            raise PlatformError("give the instances with exactly one of --data or --file")
        try:
            body = json.loads(data if data is not None else Path(str(file)).read_text())
        except (OSError, ValueError):
            raise PlatformError("the instances are not valid JSON") from None
        if isinstance(body, dict) and "instances" not in body:
            body = {"instances": [body]}
        response = platform(stack).api("POST", f"/v1/models/{model}/predict", body)
        if response.status_code != 200:
            raise PlatformError(f"HTTP {response.status_code}: {response.text}")
        console.print_json(response.text)

    _run(action)


# `mlops drift`, from before `mlops monitor run`: the same command under its old name.
app.command("drift", help="The same as `mlops monitor run`.")(monitor_run)


# --- experiment tracking: tracked runs side by side, lineage, export ----------------------------


def _tracked_rows(r: Run) -> list[tuple[str, object]]:
    """What `mlops runs show` adds for a tracked run: where it came from, its tags, packages and artifacts."""
    rows: list[tuple[str, object]] = [("source", "client (the mlops Python client)" if r.source == "client" else None)]
    if r.parent_run_id:
        rows.append(("parent search", r.parent_run_id + (f" (trial {r.trial})" if r.trial is not None else "")))
    if r.fold_metrics:
        rows.append(("folds", "; ".join(", ".join(f"{k}={v:.4g}" for k, v in fold.items()) for fold in r.fold_metrics)))
    rows.append(("tags", ", ".join(f"{k}={v}" for k, v in sorted(r.tags.items()))))
    rows.append(("packages", ", ".join(f"{k} {v}" for k, v in r.packages.items())))
    for name, artifact in sorted(r.artifacts.items()):
        digest = f" sha256 {artifact.sha256[:16]}" if artifact.sha256 else ""
        rows.append((f"artifact {name}", f"s3://{r.bucket}/{artifact.key}{digest}"))
    return rows


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _param(value: object) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


@runs_app.command("compare")
def runs_compare(
    model: str,
    run_ids: Annotated[list[str] | None, typer.Argument(help="Runs to compare (default: the model's latest).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=50, help="Without run ids: the latest this many (with --search: "
                                                           "the best this many trials).")] = 10,
    search: Annotated[str | None, typer.Option("--search", help="A search's run id: compare its trials.")] = None,
    stack: StackOption = None,
) -> None:
    """Compare runs of MODEL: parameters and metrics side by side, the best first by the spec's metric."""
    from mlops.compare import compare_runs

    def action() -> None:
        c = compare_runs(platform(stack).registry, model, run_ids or None, limit=limit, search=search)
        if not c.runs:
            console.print(f"Run {escape(search)} of {escape(model)!r} has no trials." if search
                          else f"No runs of model {escape(model)!r}.")
            return
        order = f"best first by {c.metric} ({'higher' if c.higher_is_better else 'lower'} is better)" \
            if c.metric else "the latest first (the model has no spec: no metric to rank by)"
        table = Table(title=f"runs of {escape(model)}, {order}", box=box.SIMPLE_HEAD, title_justify="left",
                      collapse_padding=True, pad_edge=False)

        def column(header: str, justify: Literal["left", "right"] = "left", style: str | None = None) -> None:
            table.add_column(escape(header), no_wrap=True, min_width=len(header), justify=justify, style=style)

        for header in ("run", "status", "source", "version"):
            column(header)
        trials = any(r.trial is not None for r in c.runs)
        if trials:
            column("trial", justify="right")
        folds = c.metric is not None and any(c.folds(r) for r in c.runs)
        for name in c.metrics:
            column(name, justify="right", style="bold" if name == c.metric else None)
            if folds and name == c.metric:
                column("cv mean±sd", justify="right")
        for name in c.params:
            column(name, style="cyan")
        for r in c.runs:
            cells = [escape(r.run_id), r.status, r.source, f"v{r.model_version}" if r.model_version else ""]
            if trials:
                cells.append("" if r.trial is None else str(r.trial))
            for name in c.metrics:
                cells.append(_number(r.metrics.get(name)))
                if folds and name == c.metric:
                    fold = c.folds(r)
                    cells.append(f"{fold[0]:.4g}±{fold[1]:.2g}" if fold else "")
            cells += [escape(_param(r.params[name])) if name in r.params else "" for name in c.params]
            table.add_row(*cells)
        console.print(table)
        if c.same_params:
            same = ", ".join(f"{k}={_param(v)}" for k, v in sorted(c.same_params.items()))
            console.print(f"The same in every run: {escape(same)}", soft_wrap=True)

    _run(action)


SHOWN_TRIALS = 5  # a version's lineage shows the best trials of its search; `runs compare --search` shows more


def _version_tree(lineage: "VersionLineage", bucket: str) -> Tree:
    v = lineage.version
    aliases = f" [green]({', '.join(lineage.aliases)})[/green]" if lineage.aliases else ""
    score = v.metrics.get(v.metric)
    root = Tree(f"[bold]{escape(v.model)} v{v.version}[/bold]{aliases}: {v.status}, {v.metric} {_number(score)}, "
                f"served as {v.artifacts.format}, registered {_when(v.created_at)}")
    run = lineage.run
    if run is None:
        node = root.add(f"[red]run {escape(v.run_id)}: its record is missing[/red]")
    else:
        node = root.add(f"run [bold]{escape(run.run_id)}[/bold] ({run.source}, {run.status}, "
                        f"{_when(run.started_at)} -> {_when(run.ended_at) or '...'})")
        node.add(f"code version {escape(run.code_version)}")
        if run.packages:
            node.add("packages: " + escape(", ".join(f"{k} {x}" for k, x in run.packages.items())))
        params = run.params or v.params
        if params:
            node.add("params: " + escape(", ".join(f"{k}={_param(x)}" for k, x in sorted(params.items()))))
        if run.tags:
            node.add("tags: " + escape(", ".join(f"{k}={x}" for k, x in sorted(run.tags.items()))))
        if lineage.parent is not None:
            parent = lineage.parent
            node.add(f"parent search [bold]{escape(parent.run_id)}[/bold] ({parent.status})"
                     + (f", trial {run.trial}" if run.trial is not None else ""))
        if lineage.trials:
            failed = sum(t.status == "FAILED" for t in lineage.trials)
            trials = node.add(f"search: {len(lineage.trials)} trials ({failed} failed), the best first: "
                              f"`mlops runs compare {escape(v.model)} --search {escape(run.run_id)}`")
            higher = METRICS.get(v.task, {}).get(v.metric, True)
            scored = sorted((t for t in lineage.trials if v.metric in t.metrics),
                            key=lambda t: -t.metrics[v.metric] if higher else t.metrics[v.metric])
            for trial in scored[:SHOWN_TRIALS]:
                what = ", ".join(x for x in (escape(trial.estimator or ""),
                                             f"{v.metric} {_number(trial.metrics.get(v.metric))}") if x)
                trials.add(f"trial {trial.trial if trial.trial is not None else '?'} {escape(trial.run_id)}: {what}")
            if len(lineage.trials) > min(len(scored), SHOWN_TRIALS):
                trials.add(f"... and {len(lineage.trials) - min(len(scored), SHOWN_TRIALS)} more")
        for name, artifact in sorted(run.artifacts.items()):
            digest = f" sha256 {artifact.sha256[:16]}" if artifact.sha256 else ""
            node.add(f"artifact {escape(name)}: s3://{escape(bucket)}/{escape(artifact.key)}{digest}")
    d = lineage.dataset
    if d is None:
        root.add(f"[red]dataset {v.dataset_id[:12]}: its record is missing[/red]")
    else:
        where = f"s3://{escape(d.bucket)}/{escape(d.key)}" + (f" (version {d.version_id})" if d.version_id else "")
        data = root.add(f"dataset [bold]{d.dataset_id[:12]}[/bold]: {d.rows} rows, {len(d.columns)} columns, {where}")
        data.add(f"used by {len(d.runs)} run(s): `mlops lineage {escape(v.model)} --dataset {d.dataset_id[:12]}`")
    features = root.add(f"features ({len(v.signature)}), the signature the model takes")
    for feature in v.signature:
        features.add(f"{escape(feature.name)} ({feature.type})")
    model = root.add("model artifacts")
    a = v.artifacts
    model.add(f"skops s3://{escape(bucket)}/{escape(a.skops_key)} sha256 {a.skops_sha256[:16]}")
    if a.onnx_key and a.onnx_sha256:
        model.add(f"onnx s3://{escape(bucket)}/{escape(a.onnx_key)} sha256 {a.onnx_sha256[:16]}")
    elif a.onnx_skipped:
        model.add(f"no onnx: {escape(a.onnx_skipped)}")
    model.add(f"holdout s3://{escape(bucket)}/{escape(v.holdout_key)}")
    return root


def _dataset_tree(lineage: "DatasetLineage", model: str) -> Tree:
    d = lineage.dataset
    root = Tree(f"dataset [bold]{d.dataset_id[:12]}[/bold] of {escape(model)}: {d.rows} rows, {len(d.columns)} "
                f"columns, s3://{escape(d.bucket)}/{escape(d.key)}, recorded {_when(d.created_at)}")
    shown = {r.run_id for r in lineage.runs}
    children: dict[str, int] = {}
    for r in lineage.runs:  # a search's trials are counted under it, not listed one by one
        if r.parent_run_id in shown:
            children[r.parent_run_id] = children.get(r.parent_run_id, 0) + 1
    runs = root.add(f"runs ({len(lineage.runs)})")
    for r in lineage.runs:
        if r.parent_run_id in shown:
            continue
        details: list[str] = [r.status, r.source]
        if r.parent_run_id:
            details.append(f"trial {r.trial} of {r.parent_run_id}" if r.trial is not None else
                           f"child of {r.parent_run_id}")
        if r.duplicate_of:
            details.append(f"duplicate of {r.duplicate_of}")
        if r.run_id in children:
            details.append(f"a search of {children[r.run_id]} trials")
        outcome = f" -> v{r.model_version}" if r.model_version and not r.parent_run_id else ""
        runs.add(f"{escape(r.run_id)} ({escape(', '.join(details))}){outcome}")
    for missing in lineage.missing:
        runs.add(f"[red]{escape(missing)}: its record is missing[/red]")
    versions = root.add(f"model versions ({len(lineage.versions)})")
    for v in lineage.versions:
        aliases = lineage.aliases.get(v.version, [])
        held = f" [green]({', '.join(aliases)})[/green]" if aliases else ""
        versions.add(f"v{v.version}{held}: {v.status}, run {escape(v.run_id)}, {v.metric} "
                     f"{_number(v.metrics.get(v.metric))}: `mlops lineage {escape(model)} {v.version}`")
    return root


@app.command()
def lineage(
    model: str,
    version: Annotated[int | None, typer.Argument(min=1, help="A version of MODEL: what it came from.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="A dataset id of MODEL (or its first 6+ "
                                                "characters): every run and version that used it.")] = None,
    stack: StackOption = None,
) -> None:
    """Lineage: a version's run, dataset, features and parent search; or a dataset's runs and versions."""
    from mlops.lineage import dataset_lineage, version_lineage

    def action() -> None:
        if (version is None) == (dataset is None):
            raise PlatformError(f"give a VERSION (`mlops lineage {model} 3`) or a dataset "
                                f"(`mlops lineage {model} --dataset ID`), not both")
        p = platform(stack)
        if version is not None:
            found = version_lineage(p.registry, p.datasets, model, version)
            console.print(_version_tree(found, p.bucket))
        else:
            console.print(_dataset_tree(dataset_lineage(p.registry, p.datasets, model, str(dataset)), model))

    _run(action)


@models_app.command("export")
def models_export(
    name: str,
    version: Annotated[int, typer.Argument(min=1)],
    out: Annotated[Path, typer.Option("--out", help="A new (or empty) directory to write the model to.")],
    format: Annotated[str, typer.Option("--format", help="The model format: mlflow.")] = "mlflow",
    stack: StackOption = None,
) -> None:
    """Export a version in MLflow's model format (sklearn and python_function flavors, the model as skops)."""
    from mlops.export import export_mlflow

    def action() -> None:
        if format != "mlflow":
            raise PlatformError(f"unknown format {format!r}: the one format is mlflow")
        p = platform(stack)
        try:
            written = export_mlflow(p.objects, p.registry, name, version, out, datasets=p.datasets)
        except OSError as error:
            raise PlatformError(f"cannot write {out}: {error.strerror or error}") from None
        console.print(f"[green]Exported[/green] {escape(name)} v{version} to {escape(str(written))} (MLflow format, "
                      "the model as skops): load it with mlflow.pyfunc.load_model where "
                      "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true", soft_wrap=True)

    _run(action)



def _rollout_done(outcome: "RolloutOutcome", actor: str) -> None:
    if outcome.changed:
        console.print(f"[green]{escape(outcome.message)}[/green] (by {escape(actor)})", soft_wrap=True)
    else:
        console.print(f"{escape(outcome.message)}: nothing to change", soft_wrap=True)
    if outcome.unsent:
        err.print(f"[yellow]warning:[/yellow] {outcome.unsent} registry event(s) could not be sent to EventBridge; "
                  "the change is made, and kept in the audit trail (`mlops models history`)")


@rollout_app.command("start")
def rollout_start(
    name: str,
    version: VersionArgument,
    mode: Annotated[str, typer.Option(help="canary: the challenger answers --share of the requests (sticky "
                                           "per X-Routing-Key); shadow: it scores --share of them, unseen.")
                    ] = "canary",
    share: Annotated[float, typer.Option(help="The share of the requests, above 0 (0.1 is 10%).")] = 0.1,
    bake_minutes: Annotated[float, typer.Option("--bake-minutes", help="How long its alarms must stay quiet before "
                                                                       "it is promoted.")] = 30.0,
    reason: ReasonOption = "",
    stack: StackOption = None,
) -> None:
    """Roll out an approved VERSION beside the champion; promoted after the bake time unless an alarm fires."""
    from cli.rollout import start_rollout
    from functions.registry.rollout import MODES

    def action() -> None:
        if mode not in MODES:
            raise PlatformError(f"--mode is canary or shadow, not {mode[:32]!r}")
        p = platform(stack)
        seconds = round(bake_minutes * 60)
        outcome = start_rollout(p, name, version, mode="canary" if mode == "canary" else "shadow", share=share,
                                bake_seconds=seconds, reason=reason)
        _rollout_done(outcome, p.actor)

    _run(action)


@rollout_app.command("status")
def rollout_status(name: str, as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
                   stack: StackOption = None) -> None:
    """NAME's latest roll-out: its challenger, mode, share, bake time and how it ended."""
    from functions.registry.rollout import status

    def action() -> None:
        current = status(platform(stack).registry, name)
        if as_json:
            typer.echo(json.dumps(current.model_dump(mode="json") if current else None))
            return
        if current is None:
            console.print(f"{escape(name)} has had no roll-out: `mlops rollout start {escape(name)} VERSION`")
            return
        table = Table(box=box.SIMPLE_HEAD, show_header=False, title=f"roll-out of {name}", title_justify="left")
        share = f"{current.share:.0%} of the requests" + (" (scored unseen)" if current.mode == "shadow" else "")
        rows = [("status", current.status.replace("_", " ")), ("challenger", f"v{current.challenger}"),
                ("champion", f"v{current.champion}"), ("mode", current.mode), ("share", share),
                ("started", f"{_moment(current.started_at)} by {current.started_by}"),
                ("bake ends", _moment(current.bake_ends_at)), ("reason", current.reason)]
        if not current.running:
            rows.append(("ended", f"{_moment(current.ended_at)} by {current.ended_by}: {current.end_reason}"))
        for key, value in rows:
            table.add_row(key, escape(value))
        console.print(table)

    _run(action)


@rollout_app.command("promote")
def rollout_promote(name: str, reason: ReasonOption = "", stack: StackOption = None) -> None:
    """End NAME's running roll-out now: its challenger becomes the champion."""
    from functions.registry.rollout import promote_rollout

    def action() -> None:
        p = platform(stack)
        _rollout_done(promote_rollout(p.registry, name, actor=p.actor, reason=reason, events=p.events), p.actor)

    _run(action)


@rollout_app.command("rollback")
def rollout_rollback(name: str, reason: ReasonOption = "", stack: StackOption = None) -> None:
    """End NAME's running roll-out now without promoting its challenger: the champion keeps serving."""
    from functions.registry.rollout import rollback_rollout

    def action() -> None:
        p = platform(stack)
        _rollout_done(rollback_rollout(p.registry, name, actor=p.actor, reason=reason, events=p.events), p.actor)

    _run(action)


if __name__ == "__main__":
    app()
