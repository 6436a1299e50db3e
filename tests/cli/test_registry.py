"""`mlops models approve|reject|promote|rollback|history|at`: the user's registry changes, made as the user (their
STS identity) through the pipeline's own domain functions, each announced as an event; and the aliases' history."""

import json
from collections.abc import Iterator

import boto3
import pytest
from typer.testing import CliRunner

from cli import main
from cli.platform import Platform
from tests.fakes import MemoryEventPublisher, MemoryRegistryStore
from tests.registry.test_lifecycle import SPEC
from tests.registry.test_store import version

runner = CliRunner()
USER = "arn:aws:sts::123456789012:assumed-role/ml-lead/alice"


@pytest.fixture
def mlops(monkeypatch) -> Iterator:
    registry, events = MemoryRegistryStore(), MemoryEventPublisher()
    registry.put_spec(SPEC)
    for number in (1, 2, 3):
        registry.put_version(version(number))
    platform = Platform({"Region": "us-east-1"}, boto3.Session(region_name="us-east-1"))
    platform.__dict__.update(registry=registry, events=events, actor=USER)  # the ports, in memory
    monkeypatch.setattr(main, "platform", lambda stack: platform)
    monkeypatch.setattr(main.console, "width", 400)  # a cell's text on one line, as the assertions read it
    monkeypatch.setattr(main.err, "width", 400)

    def invoke(*args: str):
        result = runner.invoke(main.app, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    invoke.registry, invoke.events = registry, events
    yield invoke


def test_approve_promote_and_roll_back_as_the_user_with_an_event_each(mlops):
    assert mlops("models", "approve", "m", "1", "--reason", "offline checks pass").exit_code == 0
    result = mlops("models", "promote", "m", "1")
    assert result.exit_code == 0 and f"v1 is the champion of m (by {USER})" in result.output
    mlops("models", "approve", "m", "2")
    mlops("models", "promote", "m", "2", "--reason", "better on May")
    result = mlops("models", "rollback", "m", "1", "--reason", "v2 misbehaves")
    assert result.exit_code == 0 and "v1 is the champion of m again (was v2)" in result.output
    assert mlops.registry.get_alias("m") == 1
    assert {e.actor for e in mlops.registry.changes("m")} == {USER}
    assert [(e.detail_type, e.detail["to"]) for e in mlops.events.events] == [
        ("Model Version State Change", "Approved"), ("Model Alias Change", 1),
        ("Model Version State Change", "Approved"), ("Model Alias Change", 2), ("Model Alias Change", 1)]
    again = mlops("models", "rollback", "m", "1")
    assert again.exit_code == 0 and "v1 is already the champion of m: nothing to change" in again.output


@pytest.mark.parametrize("args, message", [
    (["reject", "m", "2"], None),  # then approving it is refused
    (["promote", "m", "3"], "v3 of model 'm' was never approved: only an approved version can be promoted"),
    (["rollback", "m", "3"], "model 'm' has no champion to roll back"),
    (["promote", "m", "7"], "model 'm' has no version 7"),
    (["approve", "nope", "1"], "no model spec named 'nope' is registered"),
])
def test_refused_changes_are_one_clear_line_exit_1_and_no_event(mlops, args, message):
    if message is None:
        assert mlops("models", *args, "--reason", "bad export").exit_code == 0
        args, message = ["approve", "m", "2"], "v2 of model 'm' was rejected by"
    sent = len(mlops.events.events)
    result = mlops("models", *args)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert len(mlops.events.events) == sent


def test_a_version_number_must_be_a_positive_integer(mlops):
    assert mlops("models", "approve", "m", "zero").exit_code == 2
    assert mlops("models", "approve", "m", "0").exit_code == 2


def test_an_event_that_could_not_be_sent_is_a_warning_and_the_change_stands(mlops):
    mlops.events.faults.inject("publish", RuntimeError("EventBridge is unreachable"))
    result = mlops("models", "approve", "m", "1")
    assert result.exit_code == 0 and "1 registry event(s) could not be sent" in result.output
    assert mlops.registry.get_version("m", 1).status == "Approved"


def test_history_prints_each_alias_interval_and_the_version_states(mlops):
    for number in (1, 2):
        mlops("models", "approve", "m", str(number))
    mlops("models", "promote", "m", "1")
    mlops("models", "promote", "m", "2")
    mlops("models", "reject", "m", "3", "--reason", "leaks the label")
    first, second = mlops.registry.alias_history("m", "champion")
    result = mlops("models", "history", "m")
    assert result.exit_code == 0, result.output
    moment = main._moment
    rows = [line for line in result.output.splitlines() if line.strip().startswith("champion")]
    assert len(rows) == 2
    assert "v1" in rows[0] and moment(first.at) in rows[0] and moment(second.at) in rows[0] and USER in rows[0]
    assert "v2" in rows[1] and moment(second.at) in rows[1] and "now" in rows[1]
    assert "Rejected" in result.output and "leaks the label" in result.output
    assert "registered by run r1" in result.output, "registrations are in the version states too"
    assert moment(first.at).endswith("Z") and "T" not in moment(first.at)


def test_at_answers_which_version_served_at_a_time(mlops):
    mlops("models", "approve", "m", "1")
    mlops("models", "promote", "m", "1")
    (move,) = mlops.registry.alias_history("m", "champion")
    result = mlops("models", "at", "m", main._moment(move.at))  # a time as `history` prints it
    assert result.exit_code == 0 and "v1 was the champion of m at" in result.output and USER in result.output
    answer = json.loads(mlops("models", "at", "m", "2999-01-01T00:00:00Z", "--json").output)
    assert answer == {"model": "m", "alias": "champion", "at": "2999-01-01T00:00:00.000000+00:00", "version": 1,
                      "since": move.at, "actor": USER, "reason": "promoted by hand"}
    before = mlops("models", "at", "m", "2000-01-01")
    assert before.exit_code == 0 and "m had no champion at 2000-01-01 00:00:00.000000Z" in before.output
    assert json.loads(mlops("models", "at", "m", "2000-01-01", "--json").output)["version"] is None
    bad = mlops("models", "at", "m", "last tuesday")
    assert bad.exit_code == 1 and "'last tuesday' is not an ISO 8601 time" in bad.output
    assert "--alias is one of champion, challenger" in mlops("models", "at", "m", "2000-01-01", "--alias", "x").output


def test_models_show_lists_each_versions_status(mlops):
    mlops("models", "approve", "m", "1")
    result = mlops("models", "show", "m")
    cells = [line.strip("│ ") for line in result.output.splitlines()]
    rows = {cell.split()[0]: cell for cell in cells if cell.startswith("v")}
    assert "Approved" in rows["v1"] and "PendingManualApproval" in rows["v2"]
