"""The registry store's approvals, alias history and audit trail: the contract, on the fake and on DynamoDB
(moto) alike; then the keys the adapter gives them (one query answers "which version at time T")."""

from datetime import UTC, datetime, timedelta

import pytest

from functions.errors import Conflict, InvalidInput, RetryableError
from functions.registry.store import instant, move_time
from tests.registry.test_store import version


def approved(store, number: int) -> None:
    store.put_version(version(number))
    store.set_status("m", number, "Approved", expected="PendingManualApproval", reason="ok", actor="arn:me")


# --- version states ------------------------------------------------------------------------------


def test_a_state_change_is_conditioned_on_the_state_it_was_read_in_and_audited(backend):
    store = backend.store
    store.put_version(version(1))
    entry = store.set_status("m", 1, "Approved", expected="PendingManualApproval", reason="looks good",
                             actor="arn:aws:sts::1:assumed-role/r/alice")
    assert (entry.action, entry.from_status, entry.status, entry.alias, entry.actor) == (
        "approve", "PendingManualApproval", "Approved", None, "arn:aws:sts::1:assumed-role/r/alice")
    record = store.get_version("m", 1)
    assert (record.status, record.status_reason, record.status_changed_by, record.status_changed_at) == (
        "Approved", "looks good", "arn:aws:sts::1:assumed-role/r/alice", entry.at)
    with pytest.raises(Conflict):  # read as pending, but someone approved it first
        store.set_status("m", 1, "Rejected", expected="PendingManualApproval", reason="stale", actor="b")
    with pytest.raises(Conflict):  # no such version: nothing is created
        store.set_status("m", 7, "Approved", expected="PendingManualApproval", reason="x", actor="b")
    assert store.get_version("m", 1).status == "Approved" and store.changes("m") == [entry]
    assert store.audit_trail("m") == [], "the alias moves only"


def test_a_version_is_not_rejected_while_an_alias_points_at_it(backend):
    store = backend.store
    approved(store, 1)
    store.set_alias("m", "champion", 1, expected=None, reason="first")
    with pytest.raises(Conflict):
        store.set_status("m", 1, "Rejected", expected="Approved", reason="bad", actor="b", unless_alias="champion")
    assert store.get_version("m", 1).status == "Approved"
    approved(store, 2)
    store.set_status("m", 2, "Rejected", expected="Approved", reason="bad", actor="b", unless_alias="champion")
    assert store.get_version("m", 2).status == "Rejected"


def test_only_an_approved_version_becomes_champion_when_asked(backend):
    store = backend.store
    store.put_version(version(1))
    with pytest.raises(Conflict, match="no longer approved"):
        store.set_alias("m", "champion", 1, expected=None, reason="x", approved_only=True)
    assert store.get_alias("m") is None and store.changes("m") == []
    store.set_status("m", 1, "Approved", expected="PendingManualApproval", reason="ok", actor="a")
    entry = store.set_alias("m", "champion", 1, expected=None, reason="now", actor="a", approved_only=True)
    assert store.get_alias("m") == 1 and entry.actor == "a" and store.audit_trail("m") == [entry]


@pytest.mark.parametrize("reply_lost", [False, True], ids=["throttled", "reply lost"])
def test_a_failed_state_change_is_done_once_or_not_at_all(backend, reply_lost):
    backend.store.put_version(version(1))
    backend.fail("status", reply_lost=reply_lost)
    with pytest.raises(RetryableError):
        backend.store.set_status("m", 1, "Approved", expected="PendingManualApproval", reason="ok", actor="a")
    assert backend.store.get_version("m", 1).status == ("Approved" if reply_lost else "PendingManualApproval")
    assert len(backend.store.changes("m")) == (1 if reply_lost else 0), "the change and its audit entry go together"


def test_a_version_registered_before_approvals_existed_reads_as_approved(backend):
    backend.store.put_version(version(1, status="registered"))
    assert backend.store.get_version("m", 1).status == "Approved"


# --- the audit trail and the aliases' history ------------------------------------------------------


def test_every_change_is_in_the_trail_in_order_and_alias_moves_in_their_history(backend):
    store = backend.store
    approved(store, 1)
    approved(store, 2)
    first = store.set_alias("m", "champion", 1, expected=None, reason="first", actor="a")
    challenger = store.set_alias("m", "challenger", 2, expected=None, reason="not better", actor="a")
    second = store.set_alias("m", "champion", 2, expected=1, reason="better", actor="b")
    trail = store.changes("m")
    assert [(e.action, e.version) for e in trail] == [("approve", 1), ("approve", 2), ("set_champion", 1),
                                                     ("set_challenger", 2), ("set_champion", 2)]
    assert [e.at for e in trail] == sorted(e.at for e in trail)
    assert store.audit_trail("m") == [first, challenger, second]
    assert store.alias_history("m", "champion") == [first, second]
    assert store.alias_history("m") == [challenger, first, second]  # alias by alias
    assert store.alias_history("other") == [] and store.changes("other") == []


def test_which_version_held_an_alias_at_a_time(backend):
    store = backend.store
    for number in (1, 2, 3):
        approved(store, number)
    moves = [store.set_alias("m", "champion", 1, expected=None, reason="first"),
             store.set_alias("m", "champion", 2, expected=1, reason="better"),
             store.set_alias("m", "champion", 3, expected=2, reason="better still")]
    store.set_alias("m", "challenger", 1, expected=None, reason="other alias")
    before = datetime.fromisoformat(moves[0].at) - timedelta(microseconds=1)
    assert store.alias_at("m", "champion", instant(before)) is None, "before the first champion"
    for move, following in zip(moves, [*moves[1:], None], strict=True):
        assert store.alias_at("m", "champion", move.at) == move, "at the exact time of a move: the new version"
        if following is not None:
            just_before = instant(datetime.fromisoformat(following.at) - timedelta(microseconds=1))
            assert store.alias_at("m", "champion", just_before) == move
    assert store.alias_at("m", "champion", instant(datetime.now(UTC) + timedelta(days=1))).version == 3
    assert store.alias_at("m", "challenger", moves[0].at) is None, "aliases do not mix"
    assert store.alias_at("other", "champion", moves[-1].at) is None


def test_moves_of_an_alias_are_ordered_even_when_the_writers_clock_is_behind(backend, monkeypatch):
    import functions.registry.store as store_module

    store = backend.store
    for number in (1, 2):
        approved(store, number)
    first = store.set_alias("m", "champion", 1, expected=None, reason="first")
    past = instant(datetime.fromisoformat(first.at) - timedelta(hours=1))
    monkeypatch.setattr(store_module, "now_iso", lambda: past)  # a laptop whose clock is an hour slow
    second = store.set_alias("m", "champion", 2, expected=1, reason="from a slow clock")
    assert second.at == instant(datetime.fromisoformat(first.at) + timedelta(microseconds=1))
    assert store.alias_at("m", "champion", second.at).version == 2
    assert store.alias_at("m", "champion", first.at).version == 1


def test_move_times_and_instants():
    assert instant("2026-01-31T12:00:00Z") == "2026-01-31T12:00:00.000000+00:00"
    assert instant("2026-01-31T13:00:00+01:00") == "2026-01-31T12:00:00.000000+00:00"
    assert instant("2026-01-31") == "2026-01-31T00:00:00.000000+00:00", "a time without a zone is UTC"
    with pytest.raises(InvalidInput, match="'yesterday' is not an ISO 8601 time"):
        instant("yesterday")
    future = instant(datetime.now(UTC) + timedelta(days=1))
    assert move_time(future) == instant(datetime.fromisoformat(future) + timedelta(microseconds=1))
    assert move_time(None) <= instant(datetime.now(UTC))


# --- the adapter's keys ---------------------------------------------------------------------------


def test_an_alias_move_is_one_transaction_of_alias_audit_and_history_items(registry_table):
    from functions.registry.dynamo import DynamoRegistryStore

    store = DynamoRegistryStore(registry_table)
    approved(store, 1)
    move = store.set_alias("m", "champion", 1, expected=None, reason="first", actor="a", approved_only=True)
    items = registry_table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": "MODEL#m"})
    keys = sorted(i["sk"] for i in items["Items"])
    assert f"HISTORY#champion#{move.at}" in keys and keys.count("ALIAS#champion") == 1
    assert len([k for k in keys if k.startswith("AUDIT#")]) == 2  # the approval and the move
    alias = registry_table.get_item(Key={"pk": "MODEL#m", "sk": "ALIAS#champion"})["Item"]
    assert alias["updated_at"] == move.at and alias["actor"] == "a"


def test_which_version_at_a_time_is_one_query_of_one_item(registry_table, monkeypatch):
    from functions.registry.dynamo import DynamoRegistryStore

    store = DynamoRegistryStore(registry_table)
    for number in (1, 2):
        approved(store, number)
    store.set_alias("m", "challenger", 2, expected=None, reason="earlier, and under another alias")
    move = store.set_alias("m", "champion", 1, expected=None, reason="first")
    store.set_alias("m", "champion", 2, expected=1, reason="second")
    calls = []
    real_query = registry_table.query
    monkeypatch.setattr(registry_table, "query", lambda **kwargs: calls.append(kwargs) or real_query(**kwargs))
    assert store.alias_at("m", "champion", move.at) == move
    (call,) = calls
    assert call["Limit"] == 1 and call["ScanIndexForward"] is False
