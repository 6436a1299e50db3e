"""The registry on the local cloud, as a user drives it: a model whose spec asks for manual approval is trained
twice by the pipeline, then approved, promoted and rolled back with `mlops models`; its alias history and "what
served at T" are read back; and every change arrives, with its documented shape, on an SQS queue that a plain
boto3 client (an AWS client that is not ours) subscribed to the default event bus."""

import json

import pytest
from typer.testing import CliRunner

from cli import main
from cli.main import app
from tests.background import background
from tests.e2e.conftest import SPEC, csv_bytes, event_queue, register_spec, upload, wait_for

pytestmark = pytest.mark.e2e
runner = CliRunner()
MODEL = "registry-e2e"
DETAIL = {"model", "version", "from", "to", "reason", "actor", "time"}


@pytest.fixture
def mlops(local_cloud, monkeypatch):
    monkeypatch.chdir(local_cloud["workdir"])
    monkeypatch.setenv("MLOPS_HOME", str(background.cloud_home))
    monkeypatch.setattr(main.console, "width", 250)
    monkeypatch.setattr(main.err, "width", 250)

    def run(*args: str):
        result = runner.invoke(app, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.exit_code == 0, result.output
        return result.output

    return run


@pytest.fixture
def registry_queue(aws):
    """A rule for source mlops.registry on the default bus, delivering to a new SQS queue: made with the AWS API."""
    return event_queue(aws, "registry-e2e", {"source": ["mlops.registry"], "detail": {"model": [MODEL]}})


def test_approve_promote_roll_back_read_history_and_receive_every_event(local_cloud, aws, mlops, registry_queue):
    register_spec(aws, local_cloud, MODEL, {**SPEC, "approval": "manual"})
    runs = [upload(aws, local_cloud, f"datasets/{MODEL}/{name}.csv", csv_bytes(200, seed=seed))
            for name, seed in (("first", 21), ("second", 22))]  # two runs at once
    for started in runs:
        assert wait_for(aws, started)["status"] == "SUCCEEDED"
    # The pipeline registered both, pending approval: neither serves.
    assert "had no champion" in mlops("models", "at", MODEL, "2999-01-01")
    pipeline = registry_queue(4)
    assert sorted(e["detail-type"] for e in pipeline) == ["Model Alias Change"] * 2 + ["Model Version State Change"] * 2
    assert all("(function " in e["detail"]["actor"] or "assumed-role" in e["detail"]["actor"] for e in pipeline)
    assert {e["detail"]["to"] for e in pipeline if e["detail-type"] == "Model Version State Change"} == {
        "PendingManualApproval"}

    for version in ("1", "2"):
        assert "is approved" in mlops("models", "approve", MODEL, version, "--reason", "e2e checks pass")
    mlops("models", "promote", MODEL, "1")
    assert "v2 is the champion of registry-e2e (was v1)" in mlops("models", "promote", MODEL, "2")
    assert "v1 is the champion of registry-e2e again" in mlops("models", "rollback", MODEL, "1", "--reason", "v2 bad")

    events = registry_queue(9)
    assert len(events) == 9, [e["detail-type"] for e in events]
    user = aws("sts").get_caller_identity()["Arn"]
    mine = [e for e in events if e["detail"]["actor"] == user]
    assert len(mine) == 5, "approve, approve, promote, promote, rollback: as the CLI's user"
    for event in events:
        assert event["source"] == "mlops.registry" and set(event["detail"]) >= DETAIL
    moves = sorted((e["detail"]["time"], e["detail"]["from"], e["detail"]["to"]) for e in mine
                   if e["detail-type"] == "Model Alias Change" and e["detail"]["alias"] == "champion")
    assert [(f, t) for _, f, t in moves] == [(None, 1), (1, 2), (2, 1)]
    assert mine[-1]["detail"]["reason"] == "rollback: v2 bad" or any(
        e["detail"]["reason"] == "rollback: v2 bad" for e in mine)

    history = mlops("models", "history", MODEL)
    champion_rows = [line for line in history.splitlines() if line.strip().startswith("champion")]
    assert len(champion_rows) == 3 and "now" in champion_rows[-1] and user in champion_rows[-1]
    assert "e2e checks pass" in history and "registered by run" in history
    (first, second, back) = [time_ for time_, _, _ in moves]
    assert json.loads(mlops("models", "at", MODEL, first, "--json"))["version"] == 1
    assert json.loads(mlops("models", "at", MODEL, second, "--json"))["version"] == 2
    assert json.loads(mlops("models", "at", MODEL, back, "--json"))["version"] == 1
    assert "v1 was the champion of registry-e2e" in mlops("models", "at", MODEL, "2999-01-01T00:00:00Z")
