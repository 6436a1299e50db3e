"""A version's life after registration: approval, promotion by hand, rollback, and the aliases' history.

States: a version is registered PendingManualApproval. It becomes Approved (by the promotion gate
when the spec's `approval` is auto and it wins the gate, or by a person: `approve`) or Rejected
(`reject`). An Approved version that is not the champion may still be rejected (it then can never
serve again); a Rejected version is never approved. Only an Approved version is made champion,
which the store checks in the alias's own conditional write, so a version rejected at the same
moment cannot slip in; and a champion is not rejected (the rejection is conditioned on the alias).

Every change is a conditional write read-decide-write: when another writer got there first, the
call reads again and decides again (up to ATTEMPTS times), so concurrent calls never lose an
update and never act on a state they did not see. Each change made is announced on EventBridge
(registry.events) with who made it (`actor`: an IAM/STS identity ARN) and why.

Refusals are InvalidTransition (409) with what to do instead; an unknown model is UnknownModel,
an unknown version NotFound.
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from functions.errors import Conflict, NotFound
from functions.records import ALIASES, AliasName, AuditEntry, ModelVersion
from functions.registry.events import EventPublisher, announce
from functions.registry.store import RegistryStore, instant
from functions.spec import ModelSpec, label_text

ATTEMPTS = 8  # reading and deciding again when another writer changed the registry first
BACKOFF_S = 0.002  # the first wait before deciding again (doubled each time, with jitter)
T = TypeVar("T")


class InvalidTransition(Conflict):
    """A change the version's state does not allow (approve a rejected version, roll back to a pending one...)."""

    code = "InvalidTransition"


@dataclass(frozen=True)
class Outcome:
    """What a call changed (nothing when the registry already was as asked), in words, and the events unsent."""

    model: str
    version: int
    message: str
    changes: list[AuditEntry] = field(default_factory=list)
    unsent: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True)
class Interval:
    """`version` held `alias` from `start` until `end` (None: it still does), moved there by `actor` for `reason`."""

    alias: AliasName
    version: int
    start: str
    end: str | None
    actor: str
    reason: str


def approve(registry: RegistryStore, model: str, version: int, *, actor: str, reason: str = "",
            events: EventPublisher | None = None) -> Outcome:
    """PendingManualApproval -> Approved. Approving an approved version changes nothing; a rejected one is refused."""

    def once() -> Outcome:
        record = _version(registry, model, version)
        if record.status == "Approved":
            return Outcome(model, version, f"v{version} of {model} is already approved")
        if record.status == "Rejected":
            raise InvalidTransition(f"v{version} of model {model!r} was rejected{_by(record)}: a rejected version "
                                    "is never approved; register a new version instead")
        change = registry.set_status(model, version, "Approved", expected=record.status, actor=actor,
                                     reason=reason or "approved")
        champion = registry.get_alias(model, "champion")
        then = "" if champion == version else f"; `mlops models promote {model} {version}` makes it the champion"
        return _made(events, [change], f"v{version} of {model} is approved{then}")

    return _retrying(once, model)


def reject(registry: RegistryStore, model: str, version: int, *, actor: str, reason: str = "",
           events: EventPublisher | None = None) -> Outcome:
    """PendingManualApproval or Approved -> Rejected, unless the version is the champion (roll back first)."""

    def once() -> Outcome:
        record = _version(registry, model, version)
        if record.status == "Rejected":
            return Outcome(model, version, f"v{version} of {model} is already rejected")
        if registry.get_alias(model, "champion") == version:
            raise InvalidTransition(f"v{version} is the champion of model {model!r}: roll back to an earlier version "
                                    f"(`mlops models rollback {model} VERSION`) or promote another one first")
        change = registry.set_status(model, version, "Rejected", expected=record.status, actor=actor,
                                     reason=reason or "rejected", unless_alias="champion")
        return _made(events, [change], f"v{version} of {model} is rejected: it will never be champion")

    return _retrying(once, model)


def promote(registry: RegistryStore, model: str, version: int, *, actor: str, reason: str = "",
            events: EventPublisher | None = None) -> Outcome:
    """Make an Approved version the champion, by hand (the promotion gate is the pipeline's way)."""

    def once() -> Outcome:
        spec = registry.get_spec(model)
        record = _version(registry, model, version)
        _require_approved(record, "promoted")
        champion = registry.get_alias(model, "champion")
        if champion == version:
            return Outcome(model, version, f"v{version} is already the champion of {model}")
        _check_serves_as(registry, spec, record, champion)
        change = registry.set_alias(model, "champion", version, expected=champion, actor=actor, approved_only=True,
                                    reason=reason or "promoted by hand")
        was = f" (was v{champion})" if champion is not None else ""
        return _made(events, [change], f"v{version} is the champion of {model}{was}")

    return _retrying(once, model)


def rollback(registry: RegistryStore, model: str, to_version: int, *, actor: str, reason: str = "",
             events: EventPublisher | None = None) -> Outcome:
    """Point the champion back at an earlier Approved version, in one call (audited and announced like any move)."""

    def once() -> Outcome:
        spec = registry.get_spec(model)
        record = _version(registry, model, to_version)
        champion = registry.get_alias(model, "champion")
        if champion is None:
            raise NotFound(f"model {model!r} has no champion to roll back")
        if champion == to_version:
            return Outcome(model, to_version, f"v{to_version} is already the champion of {model}")
        if to_version > champion:
            raise InvalidTransition(f"v{to_version} is not earlier than the champion v{champion}: a rollback goes "
                                    f"back; `mlops models promote {model} {to_version}` makes a later version champion")
        _require_approved(record, "rolled back to")
        _check_serves_as(registry, spec, record, champion)
        change = registry.set_alias(model, "champion", to_version, expected=champion, actor=actor, approved_only=True,
                                    reason=f"rollback: {reason}" if reason else "rollback")
        return _made(events, [change], f"v{to_version} is the champion of {model} again (was v{champion})")

    return _retrying(once, model)


def history(registry: RegistryStore, model: str) -> list[Interval]:
    """Which version held each alias over time: one interval per move, alias by alias, oldest first."""
    registry.get_spec(model)  # UnknownModel: clearer than an empty history
    moves = registry.alias_history(model)
    intervals = []
    for alias in ALIASES:
        held = sorted((m for m in moves if m.alias == alias), key=lambda m: m.at)
        ends: list[str | None] = [m.at for m in held[1:]]
        for move, end in zip(held, [*ends, None], strict=False):
            intervals.append(Interval(alias=alias, version=move.version, start=move.at, end=end, actor=move.actor,
                                      reason=move.reason))
    return intervals


def serving_at(registry: RegistryStore, model: str, at: str | datetime,
               alias: AliasName = "champion") -> AuditEntry | None:
    """The move that put the version holding `alias` at time `at` there (one read); None before the alias's first.

    A time without a zone is UTC; InvalidInput for text that is not an ISO 8601 time."""
    move = registry.alias_at(model, alias, instant(at))
    if move is None:
        registry.get_spec(model)  # UnknownModel, rather than "no champion yet"
    return move


def trail(registry: RegistryStore, model: str) -> list[AuditEntry]:
    """The whole audit trail, oldest first: each version's registration (its own record) and every change after it."""
    registry.get_spec(model)
    registered = [registration(v) for v in registry.list_versions(model)]
    return sorted([*registered, *registry.changes(model)], key=lambda entry: entry.at)


def registration(version: ModelVersion) -> AuditEntry:
    """The registration of a version, as a change (from no state to PendingManualApproval)."""
    return AuditEntry(model=version.model, action="register", version=version.version,
                      status="PendingManualApproval", reason=f"registered by run {version.run_id}",
                      at=version.created_at, actor=version.registered_by or "unknown")


# --- helpers


def _retrying(once: Callable[[], T], model: str) -> T:
    for attempt in range(ATTEMPTS):
        try:
            return once()
        except InvalidTransition:
            raise
        except Conflict:  # another writer got there first: read and decide again, after a short random wait
            time.sleep(random.uniform(0, BACKOFF_S * 2 ** attempt))
    raise Conflict(f"the registry of model {model!r} kept changing while this change was being made; try again")


def _made(events: EventPublisher | None, changes: list[AuditEntry], message: str) -> Outcome:
    unsent = sum(not announce(events, change) for change in changes)
    return Outcome(changes[0].model, changes[0].version, message, changes, unsent)


def _version(registry: RegistryStore, model: str, version: int) -> ModelVersion:
    try:
        return registry.get_version(model, version)
    except NotFound:
        registry.get_spec(model)  # UnknownModel when there is no such model at all
        raise NotFound(f"model {model!r} has no version {version}") from None


def _by(record: ModelVersion) -> str:
    who = f" by {record.status_changed_by}" if record.status_changed_by else ""
    when = f" at {record.status_changed_at}" if record.status_changed_at else ""
    why = f" ({record.status_reason})" if record.status_reason else ""
    return f"{who}{when}{why}"


def _require_approved(record: ModelVersion, doing: str) -> None:
    if record.status == "Rejected":
        raise InvalidTransition(f"v{record.version} of model {record.model!r} was rejected{_by(record)}: it cannot "
                                f"be {doing}")
    if record.status != "Approved":
        raise InvalidTransition(f"v{record.version} of model {record.model!r} was never approved: only an approved "
                                f"version can be {doing}; approve it first (`mlops models approve {record.model} "
                                f"{record.version}`)")


def _check_serves_as(registry: RegistryStore, spec: ModelSpec, record: ModelVersion, champion: int | None) -> None:
    """InvalidTransition when `record` cannot answer the model's requests in the champion's place: another task,
    another target, or other classes than the champion's (unless the spec's classes are the version's)."""
    v = f"v{record.version}"
    if record.task != spec.task:
        raise InvalidTransition(f"{v} solves another task ({record.task}) than model {spec.name!r} ({spec.task})")
    if record.target != spec.target:
        raise InvalidTransition(f"{v} predicts another target ({record.target!r}) than model {spec.name!r} "
                                f"({spec.target!r})")
    if champion is None or record.classes is None:
        return
    current = registry.get_version(spec.name, champion)
    if current.classes is None or _classes(current.classes) == _classes(record.classes):
        return
    if spec.classes is not None and _classes(spec.classes) == _classes(record.classes):
        return  # the spec's classes changed the model's output on purpose
    raise InvalidTransition(f"{v} predicts the classes [{', '.join(map(repr, record.classes))}] but the champion "
                            f"v{champion} predicts [{', '.join(map(repr, current.classes))}]: serving it would change "
                            "the model's output (list the classes in the spec to change them on purpose)")


def _classes(classes: list) -> set[str]:
    return {label_text(c) for c in classes}
