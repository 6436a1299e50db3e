"""The registry's port: model specs, runs, versions, aliases and their audit trail.

Domain code receives a `RegistryStore`; registry.dynamo implements it on one DynamoDB table
(and tests use an in-memory twin). Every alias move is conditional and audited in one
transaction.

Version numbers are 1, 2, 3... per model, none skipped and none given twice. A run reserves its
number in one conditional write that moves the counter and records the reservation together,
so a retried reservation (throttled, or written but its reply lost) finds the number it took
the first time; registering is idempotent per run; and a run that fails before registering
gives its number back while no later number has been reserved.
"""

from typing import Any, Protocol

from functions.records import AliasName, AuditEntry, ModelVersion, Run
from functions.spec import ModelSpec


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

        Conflict when another run registered that version number.
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

    def set_alias(self, model: str, alias: AliasName, version: int, *, expected: int | None, reason: str) -> None:
        """Point `alias` at `version` if it still points at `expected` (None: unset), with its audit entry.

        Conflict when another writer moved the alias first.
        """
        ...

    def audit_trail(self, model: str) -> list[AuditEntry]:
        """Every alias move of the model, oldest first."""
        ...
