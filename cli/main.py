"""`mlops`: the platform's command line, for the local cloud (default) or a deployed stack."""

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import requests
import typer
import yaml
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.platform import OUTPUTS_FILE, Platform, PlatformError

app = typer.Typer(help="A serverless MLOps platform: local cloud and AWS.", no_args_is_help=True, add_completion=False)
models_app = typer.Typer(help="Model specs and their registered versions.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True)

T = TypeVar("T")
StackOption = Annotated[str | None, typer.Option("--stack", help="A deployed stack's name (default: the local cloud).")]


def platform(stack: str | None) -> Platform:
    return Platform.deployed(stack) if stack else Platform.local()


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")  # a message may hold [brackets]
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
) -> None:
    """Start the local cloud and keep it running until Ctrl-C."""
    from local.cloud import LocalCloud

    cloud = LocalCloud(template=template, aws_port=aws_port, api_port=api_port)
    with console.status("Synthesizing the CDK app and deploying it on the local cloud..."):
        try:
            outputs = cloud.start()
        except OSError as error:
            fail(f"cannot start the local cloud: {error.strerror or error} (is another `mlops up` running?)")
    console.print_json(json.dumps(outputs))
    console.print(f"[green]Local cloud up[/green]: AWS endpoint {outputs['Endpoint']}, API {outputs['ApiUrl']}")
    console.print(f"Outputs written to {OUTPUTS_FILE}. Ctrl-C stops it.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cloud.stop()


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
        for spec in p.registry.list_specs():
            champion = p.registry.get_alias(spec.name, "champion")
            table.add_row(spec.name, spec.task, spec.metric, f"v{champion}" if champion else "-")
        console.print(table)

    _run(action)


@models_app.command("show")
def models_show(name: str, stack: StackOption = None) -> None:
    """Show a model's spec, versions, champion and latest runs."""

    def action() -> None:
        p = platform(stack)
        spec = p.registry.get_spec(name)
        champion = p.registry.get_alias(name, "champion")
        console.print(f"[bold]{name}[/bold]: {spec.task}, target {spec.target!r}, metric {spec.metric}, champion "
                      f"{'v' + str(champion) if champion else '-'}")
        versions = Table("version", "run", "dataset", "metrics", "format")
        listed = p.registry.list_versions(name)
        for v in listed:
            versions.add_row(f"v{v.version}", v.run_id, v.dataset_id[:12],
                             ", ".join(f"{k}={x:.3f}" for k, x in v.metrics.items()), v.artifacts.format)
        console.print(versions)
        for v in listed:  # in full, not cut to a table cell
            for warning in v.warnings:
                console.print(f"[yellow]v{v.version} warning:[/yellow] {escape(warning)}", soft_wrap=True)
        runs = Table("run", "status", "started", "reason")
        for r in p.registry.list_runs(name, limit=10):
            runs.add_row(r.run_id, r.status, r.started_at, r.failure_reason or "")
        console.print(runs)

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


@app.command()
def drift(model: Annotated[str | None, typer.Argument()] = None, stack: StackOption = None) -> None:
    """Run the drift check now (it also runs on its schedule)."""
    _run(lambda: console.print_json(json.dumps(platform(stack).check_drift(model))))


if __name__ == "__main__":
    app()
