"""Roll-outs in the registry (both backends): start, status, promotion, rollback, the bake time's end and an
alarm; each audited and announced; every illegal command refused with what to do instead."""

import pytest

from functions.errors import InvalidInput, NotFound, UnknownModel
from functions.registry import rollout
from functions.registry.events import ALIAS_CHANGE, ROLLOUT_STATE_CHANGE
from functions.registry.lifecycle import InvalidTransition, reject
from tests.rollout.conftest import ME


def start(registry, number=2, events=None, **settings):
    return rollout.start(registry, "m", number, actor=ME, events=events, **settings)


def test_start_points_the_challenger_and_records_the_rollout(registry, events):
    outcome = start(registry, 2, events, mode="canary", share=0.2, bake_seconds=60, reason="May retrain")
    current = rollout.status(registry, "m")
    assert current == outcome.rollout
    assert (current.champion, current.challenger, current.mode, current.share, current.status) == (
        1, 2, "canary", 0.2, "running")
    assert current.started_by == ME and current.bake_seconds == 60
    assert registry.get_alias("m", "challenger") == 2 and registry.get_alias("m") == 1
    assert "20% of the requests" in outcome.message
    started = [e for e in registry.changes("m") if e.rollout_id]
    assert [(e.action, e.version, e.from_version, e.reason) for e in started] == [
        ("rollout_start", 2, 1, "May retrain")]
    assert [e.detail_type for e in events.events] == [ALIAS_CHANGE, ROLLOUT_STATE_CHANGE]
    assert events.events[-1].detail == {"model": "m", "version": 2, "champion": 1, "rollout_id": current.rollout_id,
                                        "from": None, "to": "running", "reason": "May retrain", "actor": ME,
                                        "time": started[0].at}


def test_promote_makes_the_challenger_champion_through_the_lifecycle(registry, events):
    start(registry, 2, events, mode="shadow", share=1.0)
    outcome = rollout.promote_rollout(registry, "m", actor=ME, events=events, reason="looks good")
    assert outcome.rollout.status == "promoted" and registry.get_alias("m") == 2
    moves = [(e.action, e.version, e.from_version) for e in registry.changes("m")
             if e.alias == "champion" or e.rollout_id][-3:]
    assert moves == [("rollout_start", 2, 1), ("set_champion", 2, 1), ("rollout_promote", 2, 1)]
    assert [e.detail_type for e in events.events][-2:] == [ALIAS_CHANGE, ROLLOUT_STATE_CHANGE]
    assert events.events[-1].detail["to"] == "promoted"


def test_rollback_keeps_the_champion(registry, events):
    start(registry, 2, events)
    outcome = rollout.rollback_rollout(registry, "m", actor=ME, events=events, reason="p99 too high")
    assert outcome.rollout.status == "rolled_back" and outcome.rollout.end_reason == "p99 too high"
    assert registry.get_alias("m") == 1
    assert events.events[-1].detail["to"] == "rolled_back"
    # A new roll-out may start once the last one ended.
    assert start(registry, 3).rollout.challenger == 3


def test_rollback_restores_the_champion_when_the_challenger_had_become_it(registry, events):
    from functions.registry.lifecycle import promote

    start(registry, 2, events)
    promote(registry, "m", 2, actor=ME)  # by hand, during the roll-out
    outcome = rollout.rollback_rollout(registry, "m", actor=ME, events=events, reason="alarm")
    assert registry.get_alias("m") == 1 and "champion again" in outcome.message


def test_the_bake_time_promotes_when_the_alarms_are_quiet_and_rolls_back_when_one_fires(registry):
    first = start(registry, 2).rollout
    quiet = {"ChallengerErrors": "OK", "ChallengerLatency": "INSUFFICIENT_DATA"}
    assert rollout.end_of_bake(registry, "m", first.rollout_id, quiet, actor=ME).rollout.status == "promoted"
    assert registry.get_alias("m") == 2
    second = start(registry, 3).rollout
    loud = {"ChallengerErrors": "ALARM", "ChallengerLatency": "OK"}
    ended = rollout.end_of_bake(registry, "m", second.rollout_id, loud, actor=ME)
    assert ended.rollout.status == "rolled_back" and "ChallengerErrors" in ended.rollout.end_reason
    assert registry.get_alias("m") == 2


def test_the_bake_time_of_a_rollout_that_ended_changes_nothing(registry):
    first = start(registry, 2).rollout
    rollout.rollback_rollout(registry, "m", actor=ME)
    outcome = rollout.end_of_bake(registry, "m", first.rollout_id, {}, actor=ME)
    assert not outcome.changed and registry.get_alias("m") == 1
    start(registry, 3)
    assert not rollout.end_of_bake(registry, "m", first.rollout_id, {}, actor=ME).changed
    assert rollout.status(registry, "m").running, "the old bake time does not end the new roll-out"


def test_a_challenger_rejected_during_its_bake_is_rolled_back_not_promoted(registry):
    current = start(registry, 2).rollout
    reject(registry, "m", 2, actor=ME, reason="legal")
    outcome = rollout.end_of_bake(registry, "m", current.rollout_id, {}, actor=ME)
    assert outcome.rollout.status == "rolled_back" and "rejected" in outcome.rollout.end_reason
    assert registry.get_alias("m") == 1


def test_an_alarm_rolls_back_every_running_rollout(registry, events):
    start(registry, 2, events)
    outcomes = rollout.on_alarm(registry, "ChallengerErrors", "Threshold Crossed: 1 datapoint", actor=ME,
                                events=events)
    assert [o.rollout.status for o in outcomes] == ["rolled_back"]
    assert outcomes[0].rollout.end_reason.startswith("alarm ChallengerErrors fired: Threshold Crossed")
    assert registry.get_alias("m") == 1
    assert rollout.on_alarm(registry, "ChallengerErrors", "again", actor=ME) == []


@pytest.mark.parametrize(("number", "settings", "error", "message"), [
    (4, {}, InvalidTransition, r"v4 of model 'm' was never approved: .*mlops models approve m 4"),
    (1, {}, InvalidTransition, "v1 is already the champion of model 'm'"),
    (9, {}, NotFound, "model 'm' has no version 9"),
    (2, {"mode": "blue-green"}, InvalidInput, "mode is canary or shadow, not 'blue-green'"),
    (2, {"share": 0}, InvalidInput, "share is above 0"),
    (2, {"share": 1.0}, InvalidInput, "to send every request to it, promote it"),
    (2, {"share": float("nan")}, InvalidInput, "share is above 0"),
    (2, {"share": -3}, InvalidInput, "share is above 0"),
    (2, {"bake_seconds": 0}, InvalidInput, "bake time is 1 s to 7 days"),
    (2, {"bake_seconds": 10 ** 9}, InvalidInput, "bake time is 1 s to 7 days"),
    (2, {"reason": "x" * 501}, InvalidInput, "at most 500 characters"),
])
def test_illegal_starts_are_refused_clearly(registry, events, number, settings, error, message):
    with pytest.raises(error, match=message):
        start(registry, number, events, **settings)
    assert registry.get_rollout("m") is None and events.events == []


def test_one_rollout_at_a_time_and_no_command_without_one(registry):
    with pytest.raises(NotFound, match=r"model 'm' has no roll-out: start one with `mlops rollout start m"):
        rollout.promote_rollout(registry, "m", actor=ME)
    with pytest.raises(UnknownModel):
        rollout.status(registry, "nope")
    start(registry, 2)
    with pytest.raises(InvalidTransition, match=r"a roll-out of v2 of model 'm' is running .* first"):
        start(registry, 3)
    rollout.rollback_rollout(registry, "m", actor=ME)
    with pytest.raises(InvalidTransition, match="already ended: rolled back at"):
        rollout.promote_rollout(registry, "m", actor=ME)
    with pytest.raises(InvalidTransition, match="already ended"):
        rollout.rollback_rollout(registry, "m", actor=ME)
    with pytest.raises(InvalidInput, match="roll-out id"):
        rollout.rollback_rollout(registry, "m", actor=ME, rollout_id="../../x y")


def test_no_champion_means_promote_directly(registry):
    from tests.rollout.conftest import SPEC

    registry.put_spec(SPEC.model_copy(update={"name": "fresh"}))
    with pytest.raises(NotFound):
        rollout.start(registry, "fresh", 1, actor=ME)
