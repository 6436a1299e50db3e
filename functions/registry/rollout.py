"""Roll-outs: a challenger serves a share of the traffic (canary) or is scored beside the champion (shadow),
then is promoted after its bake time if its alarms stayed quiet, or rolled back as soon as one fires.

A model has one ROLLOUT item in the registry (the latest roll-out, running or ended); the predict
function reads it with the champion alias on its TTL. Every change of it is one conditional write
(on the roll-out it was read as: its id and status) with its audit entry (`rollout_id` set: action
rollout_start, rollout_promote or rollout_rollback; version: the challenger, from_version: the champion),
announced as a "Model Rollout State Change" event. Alias moves go through the registry's own
lifecycle (`lifecycle.promote`, `lifecycle.rollback`), so they are audited and announced as any move.

Ending a roll-out races with the other end (an alarm's rollback and the bake time's promotion):
a rollback marks the roll-out ended first, then restores the champion if the challenger had become it;
a promotion moves the champion first, then marks the roll-out promoted, and puts the champion back
when a rollback ended the roll-out meanwhile. Either way a rolled-back roll-out leaves its champion serving.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from functions.errors import Conflict, InvalidInput, NotFound
from functions.records import (
    MAX_BAKE_SECONDS,
    MIN_BAKE_SECONDS,
    AuditEntry,
    Rollout,
    RolloutMode,
    RolloutStatus,
    now_iso,
)
from functions.registry.events import EventPublisher, announce
from functions.registry.lifecycle import (
    InvalidTransition,
    _check_serves_as,
    _require_approved,
    _retrying,
    _version,
    promote,
    rollback,
)
from functions.registry.store import RegistryStore as Registry

MODES: tuple[RolloutMode, ...] = ("canary", "shadow")
MAX_REASON_CHARS = 500
ALARM = "ALARM"


@dataclass(frozen=True)
class RolloutOutcome:
    """What a roll-out command did, in words; the roll-out as it now is; the events that could not be sent."""

    rollout: Rollout | None
    message: str
    changed: bool = True
    unsent: int = 0


def start(registry: Registry, model: str, version: int, *, mode: RolloutMode = "canary", share: float = 0.1,
          bake_seconds: int = 600, actor: str, reason: str = "", events: EventPublisher | None = None,
          now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RolloutOutcome:
    """Start rolling out an approved `version` beside the champion: the challenger alias points at it and the
    predict function routes (canary) or mirrors (shadow) `share` of the requests to it for `bake_seconds`."""
    _check_settings(mode, share, bake_seconds, reason)

    def once() -> RolloutOutcome:
        spec = registry.get_spec(model)
        record = _version(registry, model, version)
        _require_approved(record, "rolled out")
        champion = registry.get_alias(model, "champion")
        if champion is None:
            raise InvalidTransition(f"model {model!r} has no champion to roll out beside: make v{version} the "
                                    f"champion (`mlops models promote {model} {version}`)")
        if champion == version:
            raise InvalidTransition(f"v{version} is already the champion of model {model!r}: roll out another version")
        _check_serves_as(registry, spec, record, champion)
        current = registry.get_rollout(model)
        if current is not None and current.running:
            raise InvalidTransition(f"a roll-out of v{current.challenger} of model {model!r} is running (since "
                                    f"{current.started_at}, by {current.started_by}): `mlops rollout promote "
                                    f"{model}` or `mlops rollout rollback {model}` first")
        changes = []
        challenger = registry.get_alias(model, "challenger")
        if challenger != version:
            changes.append(registry.set_alias(model, "challenger", version, expected=challenger, actor=actor,
                                              approved_only=True, reason=f"{mode} roll-out: {reason or 'started'}"))
        started = now().astimezone(UTC)
        rollout = Rollout(model=model, rollout_id=f"{model}-v{version}-{started:%Y%m%dT%H%M%S%f}", champion=champion,
                          challenger=version, mode=mode, share=share, bake_seconds=bake_seconds, started_by=actor,
                          started_at=started.isoformat(timespec="microseconds"),
                          bake_ends_at=(started + timedelta(seconds=bake_seconds)).isoformat(timespec="seconds"),
                          reason=reason)
        entry = _entry(rollout, "rollout_start", reason or f"{mode} roll-out of {share:.0%} for {bake_seconds} s",
                       actor)
        registry.put_rollout(rollout, expected=current, entry=entry)
        changes.append(entry)
        unsent = sum(not announce(events, change) for change in changes)
        share_text = f"{share:.0%} of the requests" if mode == "canary" else f"scored on {share:.0%} of the requests"
        return RolloutOutcome(rollout, f"v{version} of {model} is rolling out as a {mode} ({share_text}) beside the "
                                       f"champion v{champion}; it is promoted at {rollout.bake_ends_at} unless an "
                                       "alarm fires first", unsent=unsent)

    return _retrying(once, model)


def status(registry: Registry, model: str) -> Rollout | None:
    """The model's latest roll-out (None: it never had one). UnknownModel for a model with no spec."""
    registry.get_spec(model)
    return registry.get_rollout(model)


def promote_rollout(registry: Registry, model: str, *, actor: str, reason: str = "",
                    events: EventPublisher | None = None, rollout_id: str | None = None) -> RolloutOutcome:
    """End the running roll-out by making its challenger the champion (`lifecycle.promote`).

    With `rollout_id` (the bake time's end), a roll-out that already ended, or another one, is left alone."""
    _check_reason(reason)

    def once() -> RolloutOutcome:
        current = _running(registry, model, rollout_id)
        if isinstance(current, RolloutOutcome):
            return current
        moved = promote(registry, model, current.challenger, actor=actor, events=events,
                        reason=f"roll-out {current.rollout_id} promoted: {reason or 'its bake time passed quietly'}")
        ended = _ended(current, "promoted", actor, reason or "promoted")
        entry = _entry(ended, "rollout_promote", reason or "promoted", actor)
        try:
            registry.put_rollout(ended, expected=current, entry=entry)
        except Conflict:
            latest = registry.get_rollout(model)
            if latest is not None and latest.rollout_id == current.rollout_id and latest.status == "rolled_back":
                # A rollback ended it meanwhile: it wins, and the champion it kept is put back.
                rollback(registry, model, current.champion, actor=actor, events=events,
                         reason=f"roll-out {current.rollout_id} was rolled back while it was being promoted")
                raise InvalidTransition(f"the roll-out of v{current.challenger} of model {model!r} was rolled back "
                                        f"meanwhile ({latest.end_reason}); v{current.champion} stays the champion"
                                        ) from None
            raise
        unsent = moved.unsent + (0 if announce(events, entry) else 1)
        return RolloutOutcome(ended, f"v{current.challenger} is the champion of {model} (was v{current.champion}): "
                                     "the roll-out is promoted", unsent=unsent)

    return _retrying(once, model)


def rollback_rollout(registry: Registry, model: str, *, actor: str, reason: str = "",
                     events: EventPublisher | None = None, rollout_id: str | None = None) -> RolloutOutcome:
    """End the running roll-out without promoting its challenger: the champion keeps serving (or is restored,
    through `lifecycle.rollback`, when the challenger had become it)."""
    _check_reason(reason)

    def once() -> RolloutOutcome:
        current = _running(registry, model, rollout_id)
        if isinstance(current, RolloutOutcome):
            return current
        ended = _ended(current, "rolled_back", actor, reason or "rolled back")
        entry = _entry(ended, "rollout_rollback", reason or "rolled back", actor)
        registry.put_rollout(ended, expected=current, entry=entry)
        unsent = 0 if announce(events, entry) else 1
        champion = registry.get_alias(model, "champion")
        restored = ""
        if champion == current.challenger:
            unsent += rollback(registry, model, current.champion, actor=actor, events=events,
                               reason=f"roll-out {current.rollout_id} rolled back").unsent
            restored = " again"
        return RolloutOutcome(ended, f"the roll-out of v{current.challenger} of {model} is rolled back: "
                                     f"v{current.champion} is the champion{restored}", unsent=unsent)

    return _retrying(once, model)


def end_of_bake(registry: Registry, model: str, rollout_id: str, alarm_states: Mapping[str, str], *, actor: str,
                events: EventPublisher | None = None) -> RolloutOutcome:
    """The bake time of `rollout_id` is over: promote its challenger if none of its alarms is in ALARM, else roll
    it back. A roll-out that ended already (an alarm rolled it back, a person decided) is left as it is."""
    firing = sorted(name for name, state in alarm_states.items() if state == ALARM)
    if firing:
        return rollback_rollout(registry, model, actor=actor, events=events, rollout_id=rollout_id,
                                reason=f"alarm {', '.join(firing)} in ALARM at the end of the bake time")
    try:
        return promote_rollout(registry, model, actor=actor, events=events, rollout_id=rollout_id,
                               reason="its bake time passed with its alarms quiet")
    except InvalidTransition as refused:  # e.g. the challenger was rejected meanwhile: it does not go live
        return rollback_rollout(registry, model, actor=actor, events=events, rollout_id=rollout_id,
                                reason=f"not promoted: {refused.message}"[:MAX_REASON_CHARS])


def on_alarm(registry: Registry, alarm: str, alarm_reason: str, *, actor: str,
             events: EventPublisher | None = None) -> list[RolloutOutcome]:
    """An alarm on the challengers' metrics went to ALARM: roll back every running roll-out.

    The alarms watch the metrics of every model's challenger together (a model is data, not part of the
    stack), so each running roll-out is rolled back: usually there is one."""
    reason = f"alarm {alarm} fired: {alarm_reason}"[:MAX_REASON_CHARS]
    outcomes = []
    for spec in registry.list_specs():
        current = registry.get_rollout(spec.name)
        if current is not None and current.running:
            outcomes.append(rollback_rollout(registry, spec.name, actor=actor, events=events, reason=reason,
                                             rollout_id=current.rollout_id))
    return outcomes


# --- helpers


def _check_settings(mode: str, share: float, bake_seconds: int, reason: str) -> None:
    if mode not in MODES:
        raise InvalidInput(f"the roll-out mode is canary or shadow, not {mode[:32]!r}")
    if not (0 < share <= 1) or (mode == "canary" and share >= 1):
        raise InvalidInput(f"a {mode} roll-out's share is above 0 and {'below' if mode == 'canary' else 'at most'} 1 "
                           f"(0.1 is 10% of the requests), not {share!r}"
                           + (": to send every request to it, promote it" if mode == "canary" else ""))
    if not (MIN_BAKE_SECONDS <= bake_seconds <= MAX_BAKE_SECONDS):
        raise InvalidInput(f"the bake time is {MIN_BAKE_SECONDS} s to {MAX_BAKE_SECONDS // 86400} days, "
                           f"not {bake_seconds} s")
    _check_reason(reason)


def _check_reason(reason: str) -> None:
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"a reason is at most {MAX_REASON_CHARS} characters")


ROLLOUT_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _running(registry: Registry, model: str, rollout_id: str | None) -> Rollout | RolloutOutcome:
    """The running roll-out, or (when the caller names one that ended) the outcome saying nothing changes."""
    registry.get_spec(model)
    current = registry.get_rollout(model)
    if rollout_id is not None:
        if not ROLLOUT_ID.fullmatch(rollout_id):
            raise InvalidInput("a roll-out id is letters, digits, '-', '_' and '.'")
        if current is None or current.rollout_id != rollout_id or not current.running:
            ended = "is another one's" if current is not None and current.rollout_id != rollout_id else "ended"
            return RolloutOutcome(current, f"roll-out {rollout_id} of {model} {ended} already", changed=False)
    if current is None:
        raise NotFound(f"model {model!r} has no roll-out: start one with `mlops rollout start {model} VERSION`")
    if not current.running:
        raise InvalidTransition(f"the roll-out of v{current.challenger} of model {model!r} already ended: "
                                f"{current.status.replace('_', ' ')} at {current.ended_at} by {current.ended_by}")
    return current


def _ended(rollout: Rollout, status: RolloutStatus, actor: str, reason: str) -> Rollout:
    return rollout.model_copy(update={"status": status, "ended_at": now_iso(), "ended_by": actor,
                                      "end_reason": reason})


def _entry(rollout: Rollout, action: str, reason: str, actor: str) -> AuditEntry:
    return AuditEntry(model=rollout.model, action=action, version=rollout.challenger, from_version=rollout.champion,
                      reason=reason, at=rollout.ended_at or rollout.started_at, actor=actor,
                      rollout_id=rollout.rollout_id)
