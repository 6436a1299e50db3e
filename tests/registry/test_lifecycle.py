"""Approvals, promotion by hand, rollback, history and "what served at T", on the in-memory registry; each change
announced as an event, and no event for a refused one."""

from datetime import datetime, timedelta

import pytest

from functions.errors import Conflict, InvalidInput, NotFound, UnknownModel
from functions.registry import lifecycle
from functions.registry.events import ALIAS_CHANGE, VERSION_STATE_CHANGE
from functions.registry.lifecycle import InvalidTransition, approve, promote, reject, rollback
from functions.registry.store import instant
from functions.spec import ModelSpec
from tests.fakes import MemoryEventPublisher, MemoryRegistryStore, condition_failed
from tests.registry.test_store import version

ME = "arn:aws:sts::123456789012:assumed-role/ml-lead/alice"
SPEC = ModelSpec.model_validate({"name": "m", "task": "regression", "target": "y",
                                 "features": [{"name": "x", "type": "numeric"}],
                                 "estimator": {"name": "linear_regression"}, "metric": "rmse"})


@pytest.fixture
def registry() -> MemoryRegistryStore:
    """Model m with versions 1-4 registered, pending approval."""
    store = MemoryRegistryStore()
    store.put_spec(SPEC)
    for number in range(1, 5):
        store.put_version(version(number))
    return store


@pytest.fixture
def events() -> MemoryEventPublisher:
    return MemoryEventPublisher()


def call(action, registry, number: int, events=None, reason: str = ""):
    return action(registry, "m", number, actor=ME, reason=reason, events=events)


def test_approve_then_promote_then_roll_back(registry, events):
    assert call(approve, registry, 1, events, "validated offline").changed
    assert call(promote, registry, 1, events).message == "v1 is the champion of m"
    call(approve, registry, 2, events)
    assert call(promote, registry, 2, events, "better on May's data").message == "v2 is the champion of m (was v1)"
    outcome = call(rollback, registry, 1, events, "v2 misbehaves")
    assert outcome.message == "v1 is the champion of m again (was v2)"
    assert registry.get_alias("m") == 1
    changes = registry.changes("m")
    assert [(e.action, e.version, e.from_version, e.from_status, e.status, e.reason) for e in changes] == [
        ("approve", 1, None, "PendingManualApproval", "Approved", "validated offline"),
        ("set_champion", 1, None, None, None, "promoted by hand"),
        ("approve", 2, None, "PendingManualApproval", "Approved", "approved"),
        ("set_champion", 2, 1, None, None, "better on May's data"),
        ("set_champion", 1, 2, None, None, "rollback: v2 misbehaves"),
    ]
    assert {e.actor for e in registry.changes("m")} == {ME}
    # One event per change, in order, with the documented shape.
    assert [e.detail_type for e in events.events] == [VERSION_STATE_CHANGE, ALIAS_CHANGE, VERSION_STATE_CHANGE,
                                                      ALIAS_CHANGE, ALIAS_CHANGE]
    last = registry.changes("m")[-1]
    assert events.events[-1].detail == {"model": "m", "alias": "champion", "version": 1, "from": 2, "to": 1,
                                        "reason": "rollback: v2 misbehaves", "actor": ME, "time": last.at}
    assert events.events[0].detail == {"model": "m", "version": 1, "from": "PendingManualApproval",
                                       "to": "Approved", "reason": "validated offline", "actor": ME,
                                       "time": registry.changes("m")[0].at}


def test_repeating_a_change_that_is_made_changes_nothing_and_sends_nothing(registry, events):
    call(approve, registry, 1, events)
    call(promote, registry, 1, events)
    sent = len(events.events)
    assert call(approve, registry, 1, events).message == "v1 of m is already approved"
    assert call(promote, registry, 1, events).message == "v1 is already the champion of m"
    assert call(rollback, registry, 1, events).message == "v1 is already the champion of m"
    call(reject, registry, 2, events)
    assert call(reject, registry, 2, events).message == "v2 of m is already rejected"
    assert len(events.events) == sent + 1, "only the first rejection changed anything"


@pytest.mark.parametrize("setup, action, number, error, message", [
    ("reject 2", approve, 2, InvalidTransition,
     r"v2 of model 'm' was rejected by .*alice at .* \(not good enough\): a rejected version is never approved"),
    ("", promote, 2, InvalidTransition, r"v2 of model 'm' was never approved: .* approve it first "
                                        r"\(`mlops models approve m 2`\)"),
    ("reject 2", promote, 2, InvalidTransition, r"v2 of model 'm' was rejected .*: it cannot be promoted"),
    ("champion 3", rollback, 2, InvalidTransition, r"v2 of model 'm' was never approved: only an approved version "
                                                   r"can be rolled back to"),
    ("champion 3; reject 2", rollback, 2, InvalidTransition, r"v2 .* was rejected .*: it cannot be rolled back to"),
    ("champion 3", rollback, 4, InvalidTransition, r"v4 is not earlier than the champion v3: .* `mlops models "
                                                   r"promote m 4`"),
    ("", rollback, 1, NotFound, r"model 'm' has no champion to roll back"),
    ("", promote, 9, NotFound, r"model 'm' has no version 9"),
    ("", approve, 9, NotFound, r"model 'm' has no version 9"),
    ("", rollback, 9, NotFound, r"model 'm' has no version 9"),
    ("champion 3", reject, 3, InvalidTransition, r"v3 is the champion of model 'm': roll back .* first"),
])
def test_illegal_changes_are_refused_clearly_and_change_and_send_nothing(registry, events, setup, action, number,
                                                                         error, message):
    for step in filter(None, setup.split("; ")):
        verb, n = step.split()
        if verb == "reject":
            call(reject, registry, int(n), reason="not good enough")
        else:
            call(approve, registry, int(n))
            call(promote, registry, int(n))
    before = (list(registry.changes("m")), dict(registry.aliases), dict(registry.versions))
    with pytest.raises(error, match=message):
        call(action, registry, number, events)
    assert (registry.changes("m"), registry.aliases, registry.versions) == before
    assert events.events == [], "no event for a refused change"
    assert isinstance(InvalidTransition("x"), Conflict) and InvalidTransition.status == 409


def test_an_unknown_model_is_named(registry):
    for action in (approve, reject, promote, rollback):
        with pytest.raises(UnknownModel, match="no model spec named 'nope'"):
            action(registry, "nope", 1, actor=ME)
    with pytest.raises(UnknownModel):
        lifecycle.history(registry, "nope")
    with pytest.raises(UnknownModel):
        lifecycle.serving_at(registry, "nope", "2026-01-01")


def test_an_approved_version_that_is_not_champion_may_be_rejected_and_never_serves_again(registry, events):
    for number in (1, 2):
        call(approve, registry, number)
    call(promote, registry, 2)
    assert call(reject, registry, 1, events, "leaks a feature").changed
    assert registry.get_version("m", 1).status == "Rejected"
    with pytest.raises(InvalidTransition, match="leaks a feature"):
        call(rollback, registry, 1)
    assert events.details()[0] == {"model": "m", "version": 1, "from": "Approved", "to": "Rejected",
                                   "reason": "leaks a feature", "actor": ME, "time": registry.changes("m")[-1].at}


def test_a_version_of_another_task_target_or_classes_is_not_served_in_the_champions_place(registry):
    classifier = ModelSpec.model_validate({**SPEC.model_dump(), "task": "classification", "metric": "roc_auc",
                                           "estimator": {"name": "logistic_regression"}})
    registry.put_spec(classifier)
    for number, classes in ((5, [0, 1]), (6, [0, 1, 2]), (7, ["no", "yes"])):
        registry.put_version(version(number, task="classification", metric="roc_auc", classes=classes))
        call(approve, registry, number)
    call(approve, registry, 1)
    with pytest.raises(InvalidTransition, match="v1 solves another task \\(regression\\) than model 'm'"):
        call(promote, registry, 1)
    call(promote, registry, 5)
    with pytest.raises(InvalidTransition, match=r"v6 predicts the classes \[0, 1, 2\] but the champion v5 predicts "
                                                r"\[0, 1\]: serving it would change the model's output"):
        call(promote, registry, 6)
    # The user changes the model's output on purpose:
    registry.put_spec(ModelSpec.model_validate({**classifier.model_dump(), "classes": [0, 1, 2]}))
    call(promote, registry, 6)
    with pytest.raises(InvalidTransition, match="v5 predicts the classes"):
        call(rollback, registry, 5)
    registry.put_spec(classifier.model_copy(update={"target": "z"}))
    with pytest.raises(InvalidTransition, match="v7 predicts another target \\('y'\\) than model 'm' \\('z'\\)"):
        call(promote, registry, 7)
    assert registry.get_alias("m") == 6


def test_a_lost_race_is_decided_again_on_what_the_winner_left(registry, events):
    for number in (1, 2):
        call(approve, registry, number)
    call(promote, registry, 2)
    registry.faults.inject("set_alias", condition_failed())  # another writer moved the champion first
    assert call(rollback, registry, 1, events).changed
    assert registry.faults.calls.count("set_alias") == 3 and registry.get_alias("m") == 1
    assert len(events.events) == 1


def test_an_event_that_cannot_be_sent_leaves_the_change_made_and_is_counted(registry, events, caplog):
    events.faults.inject("publish", RuntimeError("EventBridge is down"))
    outcome = call(approve, registry, 1, events)
    assert outcome.changed and outcome.unsent == 1 and registry.get_version("m", 1).status == "Approved"
    assert events.events == [] and "could not be sent" in caplog.text


def test_history_gives_each_alias_its_intervals(registry):
    for number in (1, 2, 3):
        call(approve, registry, number)
    call(promote, registry, 1)
    registry.set_alias("m", "challenger", 3, expected=None, reason="did not beat v1", actor="pipeline")
    call(promote, registry, 2)
    call(rollback, registry, 1, reason="v2 misbehaves")
    moves = registry.alias_history("m", "champion")
    intervals = lifecycle.history(registry, "m")
    assert [(i.alias, i.version, i.start, i.end) for i in intervals] == [
        ("champion", 1, moves[0].at, moves[1].at), ("champion", 2, moves[1].at, moves[2].at),
        ("champion", 1, moves[2].at, None), ("challenger", 3, registry.alias_history("m", "challenger")[0].at, None)]
    assert intervals[2].reason == "rollback: v2 misbehaves" and intervals[2].actor == ME


def test_what_served_at_a_time(registry):
    for number in (1, 2):
        call(approve, registry, number)
    first = call(promote, registry, 1).changes[0]
    second = call(promote, registry, 2).changes[0]
    at = datetime.fromisoformat
    assert lifecycle.serving_at(registry, "m", at(first.at) - timedelta(seconds=1)) is None
    assert lifecycle.serving_at(registry, "m", first.at).version == 1
    assert lifecycle.serving_at(registry, "m", instant(at(second.at) - timedelta(microseconds=1))).version == 1
    assert lifecycle.serving_at(registry, "m", second.at).version == 2
    assert lifecycle.serving_at(registry, "m", "2999-01-01T00:00:00Z").version == 2
    assert lifecycle.serving_at(registry, "m", "2999-01-01", alias="challenger") is None
    with pytest.raises(InvalidInput, match="not an ISO 8601 time"):
        lifecycle.serving_at(registry, "m", "last tuesday")


def test_the_whole_trail_holds_registrations_and_every_change(registry):
    call(approve, registry, 1)
    call(promote, registry, 1)
    trail = lifecycle.trail(registry, "m")
    assert [(e.action, e.version) for e in trail] == [("register", 1), ("register", 2), ("register", 3),
                                                       ("register", 4), ("approve", 1), ("set_champion", 1)]
    assert trail[0].reason == "registered by run r1" and trail[0].status == "PendingManualApproval"
