"""How `mlops` finds the running local cloud from any directory, and what it says when there is none;
`mlops env`, the exports that point AWS clients (the AWS CLI included) at it."""

import json
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import main
from cli.platform import Platform, PlatformError, outputs_files, state_dir
from local.cloud import LocalCloud

runner = CliRunner()


class _Answering(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(404)  # any answer will do: moto answers every path
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    """An endpoint that answers, as a running local cloud's does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_endpoint() -> str:
    """An endpoint nothing listens on any more, as a killed local cloud's."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    server.server_close()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A project directory (the cwd), another directory, and a home, with no MLOPS_HOME set."""
    dirs = {name: tmp_path / name for name in ("project", "elsewhere", "home")}
    for directory in dirs.values():
        directory.mkdir()
    monkeypatch.delenv("MLOPS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(dirs["home"]))
    monkeypatch.chdir(dirs["project"])
    return dirs


def outputs(endpoint: str, **extra: str) -> dict:
    return {"Endpoint": endpoint, "Region": "eu-west-1", "DataBucketName": "data-bucket", "ApiUrl": "http://a/prod/",
            "ApiKey": "k e y", "StateMachineArn": "arn:aws:states:eu-west-1:1:stateMachine:p",
            "ServingApiEndpointBB85FF1E": "http://a/prod/", **extra}


def write(directory: Path, content: dict) -> Path:
    path = directory / "outputs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def test_the_state_directory_is_mlops_home_or_dot_mlops_in_the_home(places, monkeypatch) -> None:
    assert state_dir() == places["home"] / ".mlops"
    assert outputs_files() == [Path(".mlops/outputs.json"), places["home"] / ".mlops" / "outputs.json"]
    monkeypatch.setenv("MLOPS_HOME", str(places["elsewhere"]))
    assert state_dir() == places["elsewhere"]
    assert outputs_files() == [places["elsewhere"] / "outputs.json"], "pointed elsewhere: only there"


def test_the_cloud_is_found_from_any_directory_through_the_state_directory(places, endpoint, monkeypatch) -> None:
    write(places["home"] / ".mlops", outputs(endpoint))
    monkeypatch.chdir(places["elsewhere"])
    platform = Platform.local()
    assert platform.endpoint == endpoint and platform.bucket == "data-bucket"
    assert platform.session.region_name == "eu-west-1"


def test_mlops_home_points_elsewhere(places, endpoint, monkeypatch) -> None:
    write(places["elsewhere"], outputs(endpoint, DataBucketName="elsewhere-bucket"))
    write(places["home"] / ".mlops", outputs(endpoint))
    monkeypatch.setenv("MLOPS_HOME", str(places["elsewhere"]))
    assert Platform.local().bucket == "elsewhere-bucket"


def test_the_projects_own_cloud_comes_first_and_a_stopped_one_is_passed_over(places, endpoint,
                                                                            closed_endpoint) -> None:
    write(places["project"] / ".mlops", outputs(endpoint, DataBucketName="project-bucket"))
    write(places["home"] / ".mlops", outputs(endpoint))
    assert Platform.local().bucket == "project-bucket"
    write(places["project"] / ".mlops", outputs(closed_endpoint, DataBucketName="project-bucket"))
    assert Platform.local().bucket == "data-bucket", "the project's file is stale: the home's cloud answers"


def test_a_file_left_by_a_cloud_that_stopped_says_it_is_not_running(places, closed_endpoint) -> None:
    stale = write(places["home"] / ".mlops", outputs(closed_endpoint))
    with pytest.raises(PlatformError, match="the local cloud is not running") as raised:
        Platform.local()
    assert str(stale) in str(raised.value) and "has stopped" in str(raised.value) and "mlops up" in str(raised.value)
    result = runner.invoke(main.app, ["outputs"])
    assert result.exit_code == 1 and "the local cloud is not running" in result.output


def test_no_outputs_anywhere_says_where_it_looked(places) -> None:
    result = runner.invoke(main.app, ["models", "list"])
    assert result.exit_code == 1 and "the local cloud is not running" in result.output
    assert ".mlops" in result.output and "mlops up" in result.output


def test_env_exports_what_the_aws_cli_needs_and_the_outputs(places, endpoint) -> None:
    write(places["home"] / ".mlops", outputs(endpoint))
    result = runner.invoke(main.app, ["env"])
    assert result.exit_code == 0, result.output
    exports = dict(line.removeprefix("export ").split("=", 1) for line in result.output.splitlines())
    values = {name: shlex.split(value)[0] for name, value in exports.items()}
    assert values["AWS_ENDPOINT_URL"] == endpoint
    # AWS CLI v1 (botocore) reads AWS_DEFAULT_REGION only: AWS_REGION alone is "You must specify a region".
    assert values["AWS_DEFAULT_REGION"] == values["AWS_REGION"] == "eu-west-1"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(values)
    assert values["MLOPS_DATA_BUCKET_NAME"] == "data-bucket" and values["MLOPS_API_KEY"] == "k e y"
    assert values["MLOPS_STATE_MACHINE_ARN"].startswith("arn:aws:states:")
    assert not any("BB85FF1E" in name for name in values), "CDK-hashed output names are left out"


def test_env_evaluated_by_a_shell_gives_botocore_its_region_and_endpoint(places, endpoint) -> None:
    """What the AWS CLI does with the exports: a botocore client, its region and endpoint from them."""
    write(places["home"] / ".mlops", outputs(endpoint))
    exports = runner.invoke(main.app, ["env"]).output
    client = ("import boto3; c = boto3.client('stepfunctions'); "
              "print(c.meta.region_name, c.meta.endpoint_url)")
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(places["home"])}  # no AWS_* of the test run's own
    shown = subprocess.run(["bash", "-c", f'eval "$1" && exec "{sys.executable}" -c "$2"', "-", exports, client],
                           env=clean, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.split() == ["eu-west-1", endpoint]


def test_a_stopping_cloud_removes_its_outputs_files_but_not_another_clouds(tmp_path) -> None:
    cloud = LocalCloud(state_dir=tmp_path / "project", home=tmp_path / "home")
    cloud.outputs = outputs("http://127.0.0.1:1")
    mine, replaced = write(tmp_path / "project", cloud.outputs), write(tmp_path / "home", outputs("http://other"))
    cloud.outputs_files = [mine, replaced]  # as start() leaves them; another cloud has written the home's since
    cloud.stop()
    assert not mine.exists() and json.loads(replaced.read_text())["Endpoint"] == "http://other"
