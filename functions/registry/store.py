"""The registry's port: model specs, runs, versions, aliases and their audit trail.

Domain code receives a `RegistryStore`; registry.dynamo implements it on one DynamoDB table
(and tests use an in-memory twin). Every alias move is conditional and audited in one
transaction; a run's version number is reserved once, however often it asks.
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

    def get_run(self, model: str, run_id: str) -> Run: ...

    def list_runs(self, model: str, limit: int = 20) -> list[Run]:
        """The latest runs first."""
        ...

    def version_for_run(self, model: str, run_id: str) -> int:
        """The version number of a run's model, reserved on first call; every later call returns it."""
        ...

    def put_version(self, version: ModelVersion) -> None:
        """Conflict when that version number is already registered."""
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
