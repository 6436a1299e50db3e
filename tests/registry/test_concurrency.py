"""20 promotions and rollbacks at once, on the fake and on DynamoDB (moto, whose operations run alone as
DynamoDB's are atomic: local.dynamodb.atomic_dynamodb, as on the local cloud): one champion at the end, the one
its last move names, and a history with no gap (each move starts from the version the previous one left)."""

import threading

import pytest

from functions.errors import Conflict
from functions.registry.lifecycle import InvalidTransition, Outcome, approve, promote, rollback
from tests.fakes import MemoryEventPublisher
from tests.registry.test_lifecycle import SPEC
from tests.registry.test_store import version

CALLS = 20
PROMOTIONS = [4, 5, 2, 3, 4, 5, 1, 2, 4, 5]  # to any approved version
ROLLBACKS = [1, 2, 3, 1, 2, 3, 1, 2, 1, 2]  # refused when not earlier than the champion of the moment


@pytest.fixture
def atomic(backend):
    """DynamoDB's atomic operations for moto, as the local cloud has them."""
    if backend.kind == "memory":
        yield
        return
    from local.dynamodb import atomic_dynamodb

    with atomic_dynamodb():
        yield


def test_concurrent_promotions_and_rollbacks_leave_one_champion_and_a_history_with_no_gap(backend, atomic):
    store, events = backend.store, MemoryEventPublisher()
    store.put_spec(SPEC)
    for number in range(1, 6):
        store.put_version(version(number))
        approve(store, "m", number, actor="setup")
    for number in (1, 2, 3):
        promote(store, "m", number, actor="setup")
    start = threading.Barrier(CALLS)
    results: list[Outcome | Exception] = [Conflict("not run")] * CALLS

    def work(i: int) -> None:
        start.wait()
        try:
            if i % 2:
                results[i] = rollback(store, "m", ROLLBACKS[i // 2], actor=f"caller-{i}", reason=f"call {i}",
                                      events=events)
            else:
                results[i] = promote(store, "m", PROMOTIONS[i // 2], actor=f"caller-{i}", reason=f"call {i}",
                                     events=events)
        except Exception as failed:  # noqa: BLE001 - kept for the assertion below, which names it
            results[i] = failed

    threads = [threading.Thread(target=work, args=(i,)) for i in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, InvalidTransition)]
    assert unexpected == [], "every call either made its change, found it made, or was refused for its state"
    moves = store.alias_history("m", "champion")
    changed = [r for r in results if isinstance(r, Outcome) and r.changed]
    assert len(moves) == 3 + len(changed), "every change that was reported made is in the history, once"
    assert moves[0].from_version is None
    for previous, move in zip(moves, moves[1:], strict=False):
        assert move.from_version == previous.version, f"a gap: {previous.version} -> then from {move.from_version}"
        assert move.at > previous.at
    assert store.get_alias("m") == moves[-1].version
    assert [m for m in store.audit_trail("m") if m.alias == "champion"] == moves
    assert {(m.version, m.reason) for m in moves[3:]} == {(r.version, r.changes[0].reason) for r in changed}
    for move in moves[3:]:  # a rollback only ever went back
        assert not move.reason.startswith("rollback") or move.version < (move.from_version or 0)
    assert sorted((e.detail["time"], e.detail["from"], e.detail["to"]) for e in events.events) == [
        (m.at, m.from_version, m.version) for m in moves[3:]], "one event per move made, none for the others"
