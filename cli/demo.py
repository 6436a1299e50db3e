"""`mlops demo`: the whole loop on a fresh local cloud, stage by stage."""

import json
import statistics
import tempfile
import time
from pathlib import Path

import boto3
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.demo_data import churn_frame
from cli.platform import Platform, PlatformError, state_dir
from functions.spec import ModelSpec

MODEL = "churn"
SPEC_FILE = Path(__file__).resolve().parent.parent / "examples" / "churn.yaml"
PREDICTIONS = 200
PREDICTIONS_PER_SECOND = 40  # the usage plan allows 50 a second (infra/settings.py)


def run_demo(console: Console, aws_port: int = 4566, api_port: int = 3000) -> dict:
    import yaml

    from local.cloud import LocalCloud

    summary: dict = {}
    cloud = LocalCloud(aws_port=aws_port, api_port=api_port, home=state_dir())  # `mlops` finds it while it runs
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
    )
    stages = [
        "Synthesize the CDK app and deploy it on the local cloud",
        "Register the model spec",
        "Upload the training data",
        "Train, evaluate, register and promote (Step Functions)",
        f"Send {PREDICTIONS} predictions over HTTP",
        "Check drift on the captured requests",
    ]
    try:
        with progress:
            ids = [progress.add_task(stage, total=1, start=False) for stage in stages]

            def stage(index: int, message: str = "") -> None:
                if index > 0:
                    progress.update(ids[index - 1], completed=1)
                if message:
                    progress.console.print(message)
                if index < len(ids):
                    progress.start_task(ids[index])

            stage(0)
            try:
                outputs = cloud.start()
            except OSError as error:
                raise PlatformError(
                    f"cannot start the local cloud on ports {aws_port}/{api_port}: {error.strerror or error} "
                    "(is `mlops up` already running? stop it, or pass --aws-port/--api-port)"
                ) from None
            platform = Platform(outputs, _session(outputs), outputs["Endpoint"])
            stage(1, f"  local cloud: AWS endpoint {outputs['Endpoint']}, API {outputs['ApiUrl']}")

            spec = ModelSpec.model_validate({**yaml.safe_load(SPEC_FILE.read_text()), "name": MODEL})
            platform.registry.put_spec(spec)
            stage(2, f"  spec {MODEL!r}: {spec.task} of {spec.target!r} from {len(spec.features)} features, "
                     f"{spec.estimator.name}, promoted on {spec.metric}")

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "churn-2026-11.csv"
                churn_frame(rows=600, seed=7).to_csv(path, index=False)
                pushed = platform.push_dataset(MODEL, path)
            stage(3, f"  s3://{pushed['bucket']}/{pushed['key']} version {pushed['version_id']} "
                     f"-> run {pushed['run_id']}")

            run = platform.wait_for_run(MODEL, pushed["run_id"], timeout_s=600)
            if run.status != "SUCCEEDED":
                raise PlatformError(f"run {run.run_id} failed: {run.failure_reason}")
            model_info = platform.api("GET", f"/v1/models/{MODEL}").json()
            champion = model_info["champion"]
            metrics = champion["metrics"]
            stage(4, f"  run {run.run_id} succeeded: v{champion['version']} is champion; "
                     + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))

            latencies, statuses = _predict(platform, progress)
            stage(5, f"  {len(latencies)} requests, p50 {statistics.median(latencies):.1f} ms, "
                     f"statuses {sorted(set(statuses))}")

            _wait_for_captures(platform, len(latencies))
            checked = platform.check_drift(MODEL)["reports"][0]
            report = json.loads(
                platform.client("s3").get_object(Bucket=platform.bucket, Key=checked["report_key"])["Body"].read()
            )
            stage(6)

        summary = {
            "dataset": f"{pushed['sha256'][:12]} (s3 version {pushed['version_id']})",
            "run": run.run_id,
            "model": f"{MODEL} v{champion['version']} (champion)",
            "metrics": ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()),
            "p50 latency (HTTP predict)": f"{statistics.median(latencies):.1f} ms over {len(latencies)} requests",
            "drift": _drift_line(report),
        }
        table = Table(title="MLOps loop on the local cloud", show_header=False)
        for key, value in summary.items():
            table.add_row(key, value)
        console.print(table)
        return summary
    finally:
        cloud.stop()


def _session(outputs: dict) -> boto3.Session:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=outputs["Region"])


def _predict(platform: Platform, progress: Progress) -> tuple[list[float], list[int]]:
    """Requests from a market that has moved since training: the drift check should see it."""
    frame = churn_frame(rows=PREDICTIONS, seed=11, shift=1.0)
    features = ["tenure_months", "monthly_charges", "support_calls", "plan"]
    latencies, statuses = [], []
    next_at = time.perf_counter()
    for record in frame[features].to_dict("records"):
        time.sleep(max(0.0, next_at - time.perf_counter()))  # within the usage plan's rate
        next_at += 1 / PREDICTIONS_PER_SECOND
        started = time.perf_counter()
        response = platform.api("POST", f"/v1/models/{MODEL}/predict", {"instances": [record]})
        latencies.append((time.perf_counter() - started) * 1000)
        statuses.append(response.status_code)
        if response.status_code != 200:
            raise PlatformError(f"predict answered HTTP {response.status_code}: {response.text}")
    return latencies, statuses


def _wait_for_captures(platform: Platform, requests: int, timeout_s: float = 30) -> None:
    """Captures travel as log lines through a subscription to Firehose, which delivers them in batches:
    the drift check waits for the demo's own (a few seconds on the local cloud, a minute or so on AWS)."""
    from functions.monitoring.captures import read_captures

    deadline = time.monotonic() + timeout_s
    while read_captures(platform.objects, MODEL, hours=1).requests < requests and time.monotonic() < deadline:
        time.sleep(0.5)


def _drift_line(report: dict) -> str:
    if not report.get("samples"):
        return "no captured requests yet"
    drifted = [name for name, result in report.get("features", {}).items() if result.get("drifted")]
    verdict = "DRIFT in " + ", ".join(drifted) if drifted else "no drift"
    return f"{verdict} ({report['samples']} captured rows)"
