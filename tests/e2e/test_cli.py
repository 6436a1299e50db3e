"""The `mlops` CLI against the local cloud started by `mlops up`: what a user types, and their mistakes."""

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.e2e.conftest import MODEL, SPEC, csv_bytes

pytestmark = pytest.mark.e2e
runner = CliRunner()


@pytest.fixture
def mlops(local_cloud, monkeypatch):
    """Run `mlops ...` in the directory where `mlops up` wrote .mlops/outputs.json."""
    monkeypatch.chdir(local_cloud["workdir"])

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
    result = runner.invoke(app, ["models", "list"])
    assert isinstance(result.exception, SystemExit)
    assert result.exit_code == 1 and "the local cloud is not running" in result.output
