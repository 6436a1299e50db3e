"""`mlops rollout start|status|promote|rollback`: as the user, through registry.rollout; start also starts the
bake state machine (its execution named after the roll-out); illegal commands are one clear line, exit 1."""

import json

import pytest

from cli.rollout import bake_input, execution_name
from tests.cli.test_registry import USER, mlops  # noqa: F401 - the fixture: the CLI over in-memory ports


class StepFunctions:
    def __init__(self, fail: bool = False):
        self.started: list[dict] = []
        self.fail = fail

    def start_execution(self, **call):
        if self.fail:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "StartExecution")
        self.started.append(call)
        return {"executionArn": "arn"}


@pytest.fixture
def cli(mlops, monkeypatch):  # noqa: F811
    from cli import main

    platform = main.platform(None)
    platform.outputs["RolloutStateMachineArn"] = "arn:aws:states:us-east-1:123456789012:stateMachine:bake"
    sfn = StepFunctions()
    monkeypatch.setattr(type(platform), "client", lambda self, service: sfn)
    for number in (1, 2):
        mlops("models", "approve", "m", str(number))
    mlops("models", "promote", "m", "1")
    mlops.sfn = sfn
    return mlops


def test_start_status_promote(cli):
    result = cli("rollout", "start", "m", "2", "--share", "0.2", "--bake-minutes", "15", "--reason", "May")
    assert result.exit_code == 0, result.output
    assert "v2 of m is rolling out as a canary (20% of the requests) beside the champion v1" in result.output
    (started,) = cli.sfn.started
    given = json.loads(started["input"])
    current = cli.registry.get_rollout("m")
    assert started["name"] == execution_name(current.rollout_id) == current.rollout_id
    assert given == bake_input(current) and given["bake_ends_at"].endswith("Z")
    status = cli("rollout", "status", "m")
    assert "running" in status.output and "v2" in status.output and USER in status.output
    assert json.loads(cli("rollout", "status", "m", "--json").output)["status"] == "running"
    promoted = cli("rollout", "promote", "m", "--reason", "quiet")
    assert promoted.exit_code == 0 and "v2 is the champion of m (was v1): the roll-out is promoted" in promoted.output
    assert cli.registry.get_alias("m") == 2
    history = cli("models", "history", "m").output
    assert "rollout" not in history.split("version states")[-1], "roll-outs are not version states"


def test_rollback_keeps_the_champion(cli):
    cli("rollout", "start", "m", "2", "--mode", "shadow", "--share", "1")
    result = cli("rollout", "rollback", "m", "--reason", "odd outputs")
    assert result.exit_code == 0 and "v1 is the champion" in result.output
    assert cli.registry.get_alias("m") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["start", "m", "3"], "v3 of model 'm' was never approved"),
    (["start", "m", "1"], "v1 is already the champion of model 'm'"),
    (["start", "m", "2", "--mode", "blue"], "--mode is canary or shadow, not 'blue'"),
    (["start", "m", "2", "--share", "1"], "to send every request to it, promote it"),
    (["start", "m", "2", "--share", "0"], "share is above 0"),
    (["start", "m", "2", "--bake-minutes", "0"], "bake time is 1 s to 7 days"),
    (["start", "nope", "2"], "no model spec named 'nope' is registered"),
    (["promote", "m"], "model 'm' has no roll-out: start one with `mlops rollout start m VERSION`"),
    (["rollback", "m"], "model 'm' has no roll-out"),
])
def test_illegal_commands_are_one_clear_line(cli, args, message):
    result = cli("rollout", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert cli.registry.get_rollout("m") is None and cli.sfn.started == []


def test_a_second_rollout_while_one_runs_is_refused(cli):
    cli("rollout", "start", "m", "2")
    result = cli("rollout", "start", "m", "2")
    assert result.exit_code == 1 and "a roll-out of v2 of model 'm' is running" in result.output


def test_a_bake_that_cannot_be_scheduled_rolls_the_rollout_back(cli):
    cli.sfn.fail = True
    result = cli("rollout", "start", "m", "2")
    assert result.exit_code == 1 and "could not be scheduled" in result.output and "rolled back" in result.output
    assert cli.registry.get_rollout("m").status == "rolled_back" and cli.registry.get_alias("m") == 1


def test_long_rollout_ids_make_valid_execution_names():
    long = "m" * 63 + "-v12-20260101T000000000000"
    name = execution_name(long)
    assert len(name) == 80 and name != execution_name(long[:-1] + "1")
