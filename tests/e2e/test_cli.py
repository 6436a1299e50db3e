"""The `mlops` CLI against the local cloud started by `mlops up`: what a user types, and their mistakes."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import main
from cli.main import app
from tests.background import background
from tests.e2e.conftest import MODEL, SPEC, csv_bytes

pytestmark = pytest.mark.e2e
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mlops(local_cloud, monkeypatch):
    """Run `mlops ...` in the directory where `mlops up` wrote .mlops/outputs.json."""
    monkeypatch.chdir(local_cloud["workdir"])
    monkeypatch.setenv("MLOPS_HOME", str(background.cloud_home))  # never a developer's own cloud
    monkeypatch.setattr(main.console, "width", 200)  # a table cell's text on one line, as the assertions read it

    def run(*args: str):
        result = runner.invoke(app, list(args))
        # CliRunner keeps a crash in result.exception (exit code 1, like a handled error): none may escape.
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    return run


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_outputs_are_the_json_mlops_up_wrote(mlops, local_cloud):
    result = mlops("outputs")
    assert result.exit_code == 0
    printed = json.loads(result.output)
    assert printed["DataBucketName"] == local_cloud["DataBucketName"] and printed["ApiKey"] == local_cloud["ApiKey"]


def test_create_push_show_predict(mlops, tmp_path):
    spec = write(tmp_path, "spec.json", json.dumps(SPEC))
    assert mlops("models", "create", "cli-churn", "--spec", spec).exit_code == 0
    data = tmp_path / "train.csv"
    rows = csv_bytes(200, seed=3)
    data.write_bytes(rows + b"".join(rows.splitlines(keepends=True)[1:11]))  # 10 rows twice: a warning
    pushed = mlops("data", "push", "cli-churn", str(data))
    assert pushed.exit_code == 0, pushed.output
    assert "succeeded" in pushed.output and "model v1" in pushed.output
    assert "warning: 10 of 210 rows (4.8%) are exact duplicates" in pushed.output
    again = mlops("data", "push", "cli-churn", str(data))  # the same data, spec and code: nothing to train
    assert again.exit_code == 0 and "succeeded without training" in again.output
    assert "trained model v1 in run cli-churn-" in again.output and "--retrain" in again.output
    retrained = mlops("data", "push", "cli-churn", str(data), "--retrain")
    assert retrained.exit_code == 0 and "model v2" in retrained.output, retrained.output
    listed = mlops("models", "list")
    assert "cli-churn" in listed.output and "v1" in listed.output
    shown = mlops("models", "show", "cli-churn")
    assert shown.exit_code == 0 and "roc_auc=" in shown.output
    assert "v1 warning: 10 of 210 rows (4.8%) are exact duplicates of another row" in shown.output
    instance = {"tenure_months": 5, "monthly_charges": 80.0, "support_calls": 2, "plan": "basic"}
    predicted = mlops("predict", "cli-churn", "--data", json.dumps(instance))
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.output)["version"] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        (json.dumps({**SPEC, "estimator": {"name": "rm -rf /"}}), "the spec is invalid"),
        (json.dumps({**SPEC, "target": "plan"}), "the spec is invalid"),
        (json.dumps({**SPEC, "name": "someone-else"}), "names model"),
    ],
)
def test_a_bad_spec_is_refused_in_one_line(mlops, tmp_path, text, message):
    result = mlops("models", "create", "cli-bad", "--spec", write(tmp_path, "spec.yaml", text))
    assert result.exit_code == 1 and message in result.output
    assert "cli-bad" not in mlops("models", "list").output


def test_a_missing_spec_file_is_refused(mlops, tmp_path):
    result = mlops("models", "create", "cli-bad", "--spec", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1 and "cannot read" in result.output


@pytest.mark.parametrize("name", ["../etc", "UPPER", "x" * 200, "a/b"])
def test_a_hostile_model_name_is_refused_before_any_upload(mlops, tmp_path, name):
    data = tmp_path / "train.csv"
    data.write_bytes(csv_bytes(20))
    result = mlops("data", "push", name, str(data))
    assert result.exit_code == 1 and "model names are lowercase" in result.output


def test_pushing_what_is_not_a_dataset_is_refused(mlops, tmp_path):
    assert "is not a file" in mlops("data", "push", MODEL, str(tmp_path / "missing.csv")).output
    assert "CSV (.csv) or Parquet" in mlops("data", "push", MODEL, write(tmp_path, "notes.txt", "hi")).output


def test_a_push_for_an_unknown_model_reports_the_failed_run(mlops, tmp_path):
    data = tmp_path / "train.csv"
    data.write_bytes(csv_bytes(50))
    result = mlops("data", "push", "cli-nobody", str(data))
    assert result.exit_code == 1 and "failed" in result.output and "no model spec" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{not json"], "not valid JSON"),
        ([], "exactly one of --data or --file"),
        (["--data", "{}", "--file", "x.json"], "exactly one of --data or --file"),
        (["--data", json.dumps({"tenure_months": "many"})], "HTTP 422"),
    ],
)
def test_bad_predict_input_gets_one_clear_line(mlops, trained_model, args, message):
    result = mlops("predict", trained_model, *args)
    assert result.exit_code == 1 and message in result.output


def test_showing_an_unknown_model_is_a_clear_error(mlops):
    result = mlops("models", "show", "cli-never-created")
    assert result.exit_code == 1 and "no model spec named 'cli-never-created'" in result.output


def test_without_a_running_local_cloud_the_cli_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))  # not the developer's ~/.mlops
    result = runner.invoke(app, ["models", "list"])
    assert isinstance(result.exception, SystemExit)
    assert result.exit_code == 1 and "the local cloud is not running" in result.output


def test_the_cli_finds_the_running_cloud_from_any_directory(local_cloud, tmp_path, monkeypatch):
    """`mlops up` wrote its outputs to its state directory ($MLOPS_HOME) too: any directory will do."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_HOME", str(background.cloud_home))
    result = runner.invoke(app, ["outputs"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["Endpoint"] == local_cloud["Endpoint"]


def test_runs_of_a_model_without_a_spec_are_shown_with_their_reason(mlops, tmp_path):
    data = tmp_path / "train.csv"
    data.write_bytes(csv_bytes(30))
    pushed = mlops("data", "push", "cli-nospec", str(data))
    assert pushed.exit_code == 1 and "no model spec" in pushed.output
    run_id = re.search(r"run (cli-nospec-[0-9a-f]+)", pushed.output).group(1)

    listed = mlops("runs", "list", "cli-nospec")
    assert listed.exit_code == 0, listed.output
    (row,) = [line for line in listed.output.splitlines() if run_id in line]
    assert "FAILED" in row and "RegisterDataset" in row and "no model spec named 'cli-nospec'" in row
    assert run_id in mlops("runs", "list").output, "every model's runs, those without a spec too"

    shown = mlops("runs", "show", "cli-nospec", run_id)
    assert shown.exit_code == 0 and "RegisterDataset" in shown.output and "UnknownModel" in shown.output

    model = mlops("models", "show", "cli-nospec")
    assert model.exit_code == 0, model.output
    assert "no model spec is registered" in model.output and run_id in model.output
    assert "no model spec named 'cli-nospec'" in model.output


def _readme_block(containing: str) -> str:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if containing in b]
    return block


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_the_readmes_aws_cli_commands_work_as_written(local_cloud, aws, tmp_path):
    """The README's second-shell commands, run as written (from the project, with the AWS CLI and curl),
    against the running local cloud, which `mlops` finds through its state directory."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MLOPS_HOME": str(background.cloud_home)}
    # The README names .venv/bin/mlops: the one of the Python running the tests.
    script = _readme_block("mlops env").replace(".venv/bin/mlops", str(Path(sys.executable).with_name("mlops")))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "upload: examples/churn.csv to s3://" in done.stdout
    executions = json.loads(done.stdout[done.stdout.index("{"):done.stdout.index("\n}") + 2])["executions"]
    readme_run = re.compile(r"churn-[0-9a-f]{16}")  # model churn's (not churn-e2e's)
    assert any(readme_run.fullmatch(e["name"]) for e in executions)
    # The upload trains `churn`: wait for it here, so that the tests after this one run on a quiet cloud.
    sfn, deadline = aws("stepfunctions"), time.monotonic() + 240
    while True:
        listed = sfn.list_executions(stateMachineArn=local_cloud["StateMachineArn"])["executions"]
        statuses = [e["status"] for e in listed if readme_run.fullmatch(e["name"])]
        if "RUNNING" not in statuses:
            break
        assert time.monotonic() < deadline, "the README's run did not end"
        time.sleep(0.2)
    assert statuses == ["SUCCEEDED"], "the README's upload trained its model"


def test_a_failed_run_is_one_readable_line_on_the_console_of_mlops_up(mlops, local_cloud, tmp_path):
    data = tmp_path / "train.csv"
    data.write_bytes(csv_bytes(30))
    run_id = re.search(r"run (cli-console-[0-9a-f]+)", mlops("data", "push", "cli-console", str(data)).output).group(1)
    console, deadline = "", time.monotonic() + 30
    while run_id not in console and time.monotonic() < deadline:
        time.sleep(0.1)
        console = Path(local_cloud["log"]).read_text(errors="replace")
    assert (f"execution {run_id} failed at RegisterDataset: UnknownModel: no model spec named 'cli-console'"
            in console)
    assert "ContinueWithNext" not in console and "FailureEventException" not in console, "moto's internals"


def test_start_pipeline_logs_under_the_id_of_the_run_it_starts(mlops, aws, local_cloud, tmp_path):
    """Two uploads handled by the same warm StartPipeline worker: each log line carries its own run id."""
    run_ids = []
    for name in ("a", "b"):
        data = tmp_path / f"{name}.csv"
        data.write_bytes(csv_bytes(30, seed=len(run_ids)))
        pushed = mlops("data", "push", "cli-corr", str(data), "--no-wait")
        run_ids.append(re.search(r"run (cli-corr-[0-9a-f]+)", pushed.output).group(1))
    logs = aws("logs")
    (group,) = [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]
                if "StartPipeline" in g["logGroupName"]]
    deadline, handled = time.monotonic() + 30, {}
    while set(handled) < set(run_ids) and time.monotonic() < deadline:
        time.sleep(0.2)  # the shipper sends a function's output within half a second
        for event in logs.filter_log_events(logGroupName=group)["events"]:
            line = json.loads(event["message"]) if event["message"].startswith("{") else {}
            if line.get("message") == "upload handled" and line.get("run_id") in run_ids:
                handled[line["run_id"]] = line.get("correlation_id")
    assert handled == {run_id: run_id for run_id in run_ids}

