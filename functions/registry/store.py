"""The registry's port: model specs, runs, versions, aliases and their audit trail.

Domain code receives a `RegistryStore`; registry.dynamo implements it on one DynamoDB table
(and tests use an in-memory twin). Every alias move is conditional and audited in one
transaction.

Version numbers are 1, 2, 3... per model, none skipped and none given twice. A run reserves its
number in one conditional write that moves the counter and records the reservation together,
so a retried reservation (throttled, or written but its reply lost) finds the number it took
the first time; registering is idempotent per run; and a run that fails before registering
gives its number back while no later number has been reserved.

Approvals, aliases and their history: a version is registered PendingManualApproval and moves to
Approved or Rejected (`set_status`, conditioned on the state it is read in); only an Approved
version can be made champion (`set_alias(..., approved_only=True)` checks it in the same write).
Every later change is an `AuditEntry` (who, when, why, from what to what) written in the same
transaction as the change, and returned to the caller, which publishes it (registry.events). Each alias move is
also kept as a history entry keyed by alias and time, so "which version held the champion alias at
time T" is one read (`alias_at`); an alias's moves are strictly ordered in time (`move_time`).
"""

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from functions.errors import InvalidInput
from functions.records import AliasName, AuditEntry, ModelVersion, Retrain, Rollout, Run, VersionStatus, now_iso
from functions.spec import ModelSpec

UNKNOWN_ACTOR = "unknown"
# What each state change is called in the audit trail.
STATUS_ACTIONS: dict[VersionStatus, str] = {"PendingManualApproval": "register", "Approved": "approve",
                                            "Rejected": "reject"}


def instant(value: str | datetime) -> str:
    """A time as the registry keeps it: ISO 8601 in UTC with microseconds, so that text order is time order.

    A time without a zone is UTC. InvalidInput for text that is not an ISO 8601 time."""
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            raise InvalidInput(f"{text[:64]!r} is not an ISO 8601 time, such as 2026-01-31T12:00:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def move_time(previous: str | None) -> str:
    """The time of an alias's next move: now, or a microsecond after its last move when the writer's clock
    is behind it (another machine's clock), so that an alias's moves are strictly ordered in time."""
    now = now_iso()
    if previous is None or now > previous:
        return now
    return instant(datetime.fromisoformat(previous) + timedelta(microseconds=1))


class RegistryStore(Protocol):
    def put_spec(self, spec: ModelSpec) -> None: ...

    def get_spec(self, model: str) -> ModelSpec:
        """UnknownModel when no spec of that name is registered."""
        ...

    def list_specs(self) -> list[ModelSpec]: ...

    def start_run(self, run: Run) -> bool:
        """Record a new run; False (and no change) when it is already recorded."""
        ...

    def update_run(self, model: str, run_id: str, **fields: Any) -> None:
        """Set fields of a run (validated against the fields of `Run`)."""
        ...

    def end_run(self, model: str, run_id: str, **fields: Any) -> bool:
        """Set fields of a run only while it is RUNNING, in one conditional write; False (nothing
        written) when its end is already recorded or there is no such run."""
        ...

    def get_run(self, model: str, run_id: str) -> Run: ...

    def list_runs(self, model: str, limit: int = 20) -> list[Run]:
        """The latest runs first."""
        ...

    def list_run_models(self) -> list[str]:
        """The names of the models that have runs, sorted: with a registered spec or without one
        (an upload for a model with no spec makes a run that fails, and it is recorded too)."""
        ...

    def version_for_run(self, model: str, run_id: str) -> int:
        """The version number of a run's model, reserved on first call; every later call returns it.

        The counter moves only with the run's reservation (one conditional write), so a failed or
        retried call never skips a number, and concurrent runs never share one.
        """
        ...

    def put_version(self, version: ModelVersion) -> None:
        """Record a version; a no-op when the same run already registered it (a retry whose reply was lost).

        The version's own record says who registered it and when (registered_by, created_at): its
        registration is one write, and the audit trail has every change after it.
        Conflict when another run registered that version number.
        """
        ...

    def set_status(self, model: str, version: int, status: VersionStatus, *, expected: VersionStatus, reason: str,
                   actor: str, unless_alias: AliasName | None = None) -> AuditEntry:
        """Move a version from `expected` to `status`, with its audit entry, in one conditional write.

        With `unless_alias`, only while that alias does not point at the version (a champion is not rejected).
        Conflict when the version is not in `expected` (another writer changed it first, or it does not exist)
        or the alias points at it.
        """
        ...

    def release_version(self, model: str, run_id: str) -> bool:
        """Give back the number a failed run reserved but never registered; True when it was given back.

        Only the latest number can go back (nothing later reserved), so no gap opens; a registered
        version, or a run without a reservation, changes nothing (a retried release is a no-op).
        """
        ...

    def get_version(self, model: str, version: int) -> ModelVersion: ...

    def list_versions(self, model: str) -> list[ModelVersion]: ...

    def get_alias(self, model: str, alias: AliasName = "champion") -> int | None: ...

    def set_alias(self, model: str, alias: AliasName, version: int, *, expected: int | None, reason: str,
                  actor: str = UNKNOWN_ACTOR, approved_only: bool = False) -> AuditEntry:
        """Point `alias` at `version` if it still points at `expected` (None: unset), with its audit entry and its
        history entry, in one transaction; returns the audit entry. With `approved_only`, only while the version
        is Approved (checked in the same transaction). The move's time is `move_time` of the alias's last move.

        Conflict when another writer moved the alias first, or the version is not Approved.
        """
        ...

    def audit_trail(self, model: str) -> list[AuditEntry]:
        """Every alias move of the model, oldest first."""
        ...

    def changes(self, model: str) -> list[AuditEntry]:
        """The whole audit trail: every alias move and state change of the model, oldest first."""
        ...

    def alias_history(self, model: str, alias: AliasName | None = None) -> list[AuditEntry]:
        """The moves of `alias` (None: of each alias, alias by alias), oldest first."""
        ...

    def alias_at(self, model: str, alias: AliasName, at: str) -> AuditEntry | None:
        """The last move of `alias` at or before `at` (an `instant`): one read. None before its first move."""
        ...

    def get_rollout(self, model: str) -> Rollout | None:
        """The model's latest roll-out (None: it never had one)."""
        ...

    def put_rollout(self, rollout: Rollout, *, expected: Rollout | None, entry: AuditEntry) -> None:
        """Write the roll-out and its audit entry in one transaction, only while the stored roll-out is
        `expected` (same id and status; None: there is none). Conflict when another writer changed it first."""
        ...

    def get_retrain(self, model: str) -> Retrain | None:
        """The model's latest automatic retrain (None: it never had one)."""
        ...

    def claim_retrain(self, retrain: Retrain, *, cooldown_since: str, entry: AuditEntry) -> bool:
        """Record `retrain` as the model's latest, with its audit entry, in one conditional write, only while the
        model's last retrain started before `cooldown_since` (or it has none). False, and nothing written, when
        one started since: the cooldown holds (another event claimed it first)."""
        ...

    def set_retrain_run(self, model: str, event_id: str, run_id: str) -> None:
        """Name the run a claimed retrain started, while the model's latest retrain is still `event_id`'s."""
        ...
