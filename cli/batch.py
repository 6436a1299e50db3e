"""`mlops batch submit|status`: batch inference jobs, through S3 and the Step Functions API only.

A job is the batch state machine's execution named after the uploaded object version
(functions/batch/jobs.py), so the CLI knows its name as soon as the upload returns; its outcome is
the execution's status and the manifest (_SUCCESS) or error report (_ERROR.json) in its output prefix.
"""

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.platform import Platform, PlatformError
from functions.batch.jobs import ERROR_REPORT, INPUT_PREFIX, SUCCESS, job_id_for, output_prefix
from functions.errors import NotFound
from functions.spec import is_model_name

batch_app = typer.Typer(help="Batch inference: score a CSV or Parquet file with a model's champion.",
                        no_args_is_help=True)
console = Console(soft_wrap=True)
POLL_S = 0.25


def _machine(p: Platform) -> str:
    arn = p.outputs.get("BatchStateMachineArn")
    if not arn:
        raise PlatformError("the platform's outputs name no batch state machine (BatchStateMachineArn): "
                            "deploy the stack again")
    return str(arn)


def execution_arn(p: Platform, job_id: str) -> str:
    return _machine(p).replace(":stateMachine:", ":execution:") + f":{job_id}"


def submit(p: Platform, model: str, path: Path) -> dict[str, Any]:
    """Upload a file under batch/<model>/ (the upload starts its job); the job's id and execution."""
    if not is_model_name(model):
        raise PlatformError("model names are lowercase letters, digits and dashes (at most 63), starting with a letter")
    if not path.is_file():
        raise PlatformError(f"{path} is not a file")
    if path.suffix.lower() not in {".csv", ".parquet"}:
        raise PlatformError("batch files are CSV (.csv) or Parquet (.parquet) files")
    _machine(p)
    key = f"{INPUT_PREFIX}{model}/{path.name}"
    response = p.client("s3").put_object(Bucket=p.bucket, Key=key, Body=path.read_bytes())
    version_id = response.get("VersionId")
    job_id = job_id_for(model, p.bucket, key, version_id)
    return {"bucket": p.bucket, "key": key, "version_id": version_id, "job_id": job_id,
            "execution_arn": execution_arn(p, job_id)}


def wait(p: Platform, job_id: str, timeout_s: float) -> dict[str, Any]:
    """The job's execution once it has ended (it appears once the upload's event has started it)."""
    sfn = p.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            execution = sfn.describe_execution(executionArn=execution_arn(p, job_id))
            if execution["status"] != "RUNNING":
                return execution
        except sfn.exceptions.ExecutionDoesNotExist:
            pass
        time.sleep(POLL_S)
    raise PlatformError(f"batch job {job_id} did not finish within {timeout_s:.0f} s; "
                        f"see `mlops batch status {job_id.rsplit('-', 1)[0]} {job_id}`")


def job(p: Platform, job_id: str) -> dict[str, Any]:
    """A job: its execution's status and input, and its manifest or error report when there is one."""
    sfn = p.client("stepfunctions")
    try:
        execution = sfn.describe_execution(executionArn=execution_arn(p, job_id))
    except sfn.exceptions.ExecutionDoesNotExist:
        raise PlatformError(f"no batch job {job_id}") from None
    started = json.loads(execution.get("input") or "{}")
    prefix = output_prefix(started.get("model", ""), started.get("key", ""), job_id)
    found: dict[str, Any] = {"job_id": job_id, "status": execution["status"], "input": started.get("key"),
                             "started": execution["startDate"], "stopped": execution.get("stopDate"),
                             "output": f"s3://{p.bucket}/{prefix}", "cause": execution.get("cause")}
    for name, field in ((SUCCESS, "manifest"), (ERROR_REPORT, "error_report")):
        try:
            found[field] = p.objects.get_json(prefix + name)
        except NotFound:
            continue
    return found


def jobs_of(p: Platform, model: str, limit: int) -> list[dict[str, Any]]:
    """The model's latest jobs (an execution is named <model>-<16 hex digits>)."""
    sfn = p.client("stepfunctions")
    found = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=_machine(p)):
        found += [e for e in page["executions"] if e["name"][:-17] == model]
        if len(found) >= limit:
            break
    return found[:limit]


def print_job(found: dict[str, Any]) -> None:
    colour = {"SUCCEEDED": "green", "FAILED": "red"}.get(found["status"], "yellow")
    console.print(f"Batch job {found['job_id']}: [{colour}]{found['status']}[/{colour}]")
    console.print(f"  input   s3://{escape(str(found['input']))}")
    manifest = found.get("manifest")
    if manifest:
        console.print(f"  model   {manifest['model']} v{manifest['version']}, {manifest['rows']} rows in "
                      f"{len(manifest['parts'])} part(s)")
        console.print(f"  output  {escape(found['output'])} (part-*.parquet; manifest {SUCCESS})")
    report = found.get("error_report")
    if found["status"] != "SUCCEEDED":
        reason = (report or {}).get("reason") or found.get("cause") or "see its execution history"
        console.print(f"  reason  {escape(str(reason))}")
        if report:
            console.print(f"  report  {escape(found['output'])}{ERROR_REPORT}")


def _run(action: Any) -> None:
    from cli.main import _run as run_reporting_errors

    run_reporting_errors(action)


def _platform(stack: str | None) -> Platform:
    from cli.main import platform

    return platform(stack)


StackOption = Annotated[str | None, typer.Option("--stack", help="A deployed stack's name (default: the local cloud).")]


@batch_app.command("submit")
def batch_submit(
    model: str,
    file: Path,
    wait_for_it: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the job and print its outcome."),
    timeout: float = typer.Option(900, help="Seconds to wait for the job."),
    stack: StackOption = None,
) -> None:
    """Upload FILE (CSV or Parquet) under batch/MODEL/: the upload starts a job that scores it with the champion."""

    def action() -> None:
        p = _platform(stack)
        submitted = submit(p, model, file)
        console.print(f"Uploaded s3://{submitted['bucket']}/{escape(submitted['key'])} "
                      f"(version {submitted['version_id']}); batch job {submitted['job_id']}")
        if not wait_for_it:
            return
        with console.status(f"Waiting for batch job {submitted['job_id']}..."):
            wait(p, submitted["job_id"], timeout)
        found = job(p, submitted["job_id"])
        print_job(found)
        if found["status"] != "SUCCEEDED":
            raise typer.Exit(1)

    _run(action)


@batch_app.command("status")
def batch_status(
    model: str,
    job_id: Annotated[str | None, typer.Argument(help="A job's id (default: the model's latest jobs).")] = None,
    limit: int = typer.Option(20, help="How many of the latest jobs to list."),
    stack: StackOption = None,
) -> None:
    """A job's status, rows, model version, output and failure reason; or the model's latest jobs."""

    def action() -> None:
        p = _platform(stack)
        if job_id is not None:
            found = job(p, job_id)
            print_job(found)
            return
        table = Table("job", "status", "started", "stopped")
        for execution in jobs_of(p, model, limit):
            started = execution["startDate"].isoformat(timespec="seconds")
            stopped = execution["stopDate"].isoformat(timespec="seconds") if execution.get("stopDate") else ""
            table.add_row(execution["name"], execution["status"], started, stopped)
        console.print(table)

    _run(action)
