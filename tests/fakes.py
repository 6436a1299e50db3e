"""In-memory twins of the storage ports, for domain tests: fast, and able to fail on purpose.

Each fake keeps the contract of its AWS adapter (tests/<part>/test_store.py runs the same
tests against both), and has `faults`: a test plans the failures that matter, per operation:

    objects.faults.inject("put_bytes", throttled())              # the call fails, nothing written
    registry.faults.inject("set_alias", lost_reply(), after=True)  # written, but the caller hears a timeout
"""

import copy
import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from functions.errors import Conflict, InvalidInput, NotFound, ObjectTooLarge, RetryableError, UnknownModel
from functions.features.store import entity_key
from functions.jsonable import jsonable
from functions.records import (
    AliasName,
    AuditEntry,
    DatasetVersion,
    ModelVersion,
    Retrain,
    Rollout,
    Run,
    VersionStatus,
    now_iso,
)
from functions.registry.store import STATUS_ACTIONS, UNKNOWN_ACTOR, instant, move_time
from functions.spec import ModelSpec
from functions.storage.objects import ObjectHead, ObjectStore, sha256


def throttled(what: str = "storage") -> RetryableError:
    return RetryableError(f"{what}: storage is busy, try again")


def lost_reply(what: str = "storage") -> RetryableError:
    """What a caller sees when its write succeeded but the reply never came: a timeout."""
    return RetryableError(f"{what}: storage timed out, try again")


def missing(what: str = "object") -> NotFound:
    return NotFound(f"{what}: not found")


def condition_failed(what: str = "record") -> Conflict:
    return Conflict(f"{what}: the record changed or already exists")


@dataclass
class _Plan:
    operation: str
    error: Exception
    times: int
    after: bool


class Faults:
    """Failures planned for a fake's operations, each raised `times` times (before or after the write)."""

    def __init__(self) -> None:
        self._plans: list[_Plan] = []
        self.calls: list[str] = []

    def inject(self, operation: str, error: Exception, *, times: int = 1, after: bool = False) -> None:
        self._plans.append(_Plan(operation, error, times, after))

    def clear(self) -> None:
        self._plans.clear()

    def pending(self) -> bool:
        """Whether a planned failure is still to come."""
        return any(plan.times > 0 for plan in self._plans)

    def before(self, operation: str) -> None:
        self.calls.append(operation)
        self._raise(operation, after=False)

    def after(self, operation: str) -> None:
        self._raise(operation, after=True)

    def _raise(self, operation: str, *, after: bool) -> None:
        for plan in self._plans:
            if plan.operation == operation and plan.after == after and plan.times > 0:
                plan.times -= 1
                raise plan.error


def _without_non_finite(value: Any) -> Any:
    """A map as DynamoDB keeps it: NaN and infinity left out (see storage.dynamo.attribute)."""
    if isinstance(value, dict):
        return {k: _without_non_finite(v) for k, v in value.items()
                if not (isinstance(v, float) and not math.isfinite(v))}
    return value


def _plain(value: Any) -> Any:
    """Records inside a value (a run's artifacts) as the plain values the adapter stores them as."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class MemoryObjectStore(ObjectStore):
    """A versioned bucket in memory."""

    def __init__(self, bucket: str = "memory-bucket"):
        super().__init__(bucket)
        self.faults = Faults()
        self.versions: dict[str, list[tuple[str, bytes]]] = {}  # key -> [(version id, bytes)], newest last
        self.metadata: dict[tuple[str, str], dict[str, str]] = {}  # (key, version id) -> user metadata

    def get_bytes(self, key: str, *, version_id: str | None = None, max_bytes: int | None = None) -> bytes:
        self.faults.before("get_bytes")
        versions = self.versions.get(key) or []
        if version_id and version_id != "null":
            versions = [v for v in versions if v[0] == version_id]
        if not versions:
            raise missing(f"reading {key}")
        data = versions[-1][1]
        if max_bytes is not None and len(data) > max_bytes:
            raise ObjectTooLarge(f"{key} holds {len(data)} bytes, more than {max_bytes}", size=len(data))
        return data

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        self.faults.before("put_bytes")
        self.put(key, data)
        self.faults.after("put_bytes")
        return sha256(data)

    def list_keys(self, prefix: str) -> Iterator[str]:
        self.faults.before("list_keys")
        yield from sorted(key for key in self.versions if key.startswith(prefix))

    def head(self, key: str, *, version_id: str | None = None) -> ObjectHead:
        self.faults.before("head")
        versions = self.versions.get(key) or []
        if version_id and version_id != "null":
            versions = [v for v in versions if v[0] == version_id]
        if not versions:
            raise missing(f"reading the metadata of {key}")
        found, data = versions[-1]
        return ObjectHead(size=len(data), metadata=dict(self.metadata.get((key, found), {})))

    def put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> str:
        """Store a version without faults (a test's own upload, with its user metadata); returns its version id."""
        versions = self.versions.setdefault(key, [])
        version_id = f"v{len(versions) + 1}-{sha256(data)[:8]}"
        versions.append((version_id, bytes(data)))
        self.metadata[(key, version_id)] = {name.lower(): value for name, value in (metadata or {}).items()}
        return version_id

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(key for key in self.versions if key.startswith(prefix))


class MemoryRegistryStore:
    """The registry's records as plain values, validated on read as DynamoDB items are."""

    _claiming = threading.Lock()  # a conditional write is atomic (a class lock: stores are deep-copied)

    def __init__(self) -> None:
        self.faults = Faults()
        self.specs: dict[str, str] = {}  # model -> spec JSON
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.versions: dict[tuple[str, int], ModelVersion] = {}
        self.counters: dict[str, int] = {}
        self.reservations: dict[tuple[str, str], int] = {}
        self.aliases: dict[tuple[str, str], int] = {}
        self.audit: list[AuditEntry] = []  # the alias moves
        self.trail: list[AuditEntry] = []  # every change: the alias moves and the versions' state changes
        self.rollouts: dict[str, Rollout] = {}  # model -> its latest roll-out
        self.retrains: dict[str, Retrain] = {}  # model -> its latest automatic retrain

    def put_spec(self, spec: ModelSpec) -> None:
        self.faults.before("put_spec")
        self.specs[spec.name] = spec.model_dump_json()
        self.faults.after("put_spec")

    def get_spec(self, model: str) -> ModelSpec:
        self.faults.before("get_spec")
        if model not in self.specs:
            raise UnknownModel(
                f"no model spec named {model!r} is registered; create it with `mlops models create {model} --spec FILE`"
            )
        return ModelSpec.model_validate_json(self.specs[model])

    def list_specs(self) -> list[ModelSpec]:
        self.faults.before("list_specs")
        return [ModelSpec.model_validate_json(self.specs[name]) for name in sorted(self.specs)]

    def start_run(self, run: Run) -> bool:
        self.faults.before("start_run")
        key = (run.model, run.run_id)
        if key in self.runs:
            return False
        self.runs[key] = run.model_dump()
        self.faults.after("start_run")
        return True

    def update_run(self, model: str, run_id: str, **fields: Any) -> None:
        self.faults.before("update_run")
        unknown = sorted(set(fields) - set(Run.model_fields))
        if unknown:
            raise KeyError(f"Run has no field(s) {', '.join(unknown)}")
        values = copy.deepcopy(jsonable({name: _without_non_finite(_plain(value)) for name, value in fields.items()}))
        run = self.runs.setdefault((model, run_id), {})
        if run:  # the adapter refuses a value that does not fit its field, and writes nothing
            Run.model_validate({**run, **values})
        run.update(values)
        self.faults.after("update_run")

    def end_run(self, model: str, run_id: str, **fields: Any) -> bool:
        """As the adapter: one conditional write (fault point "end_run"), only while the run is RUNNING."""
        self.faults.before("end_run")
        unknown = sorted(set(fields) - set(Run.model_fields))
        if unknown:
            raise KeyError(f"Run has no field(s) {', '.join(unknown)}")
        run = self.runs.get((model, run_id))
        if run is None or run.get("status", "RUNNING") != "RUNNING":
            return False
        values = copy.deepcopy(jsonable(_plain(fields)))
        Run.model_validate({**run, **values})
        run.update(values)
        self.faults.after("end_run")
        return True

    def get_run(self, model: str, run_id: str) -> Run:
        self.faults.before("get_run")
        if (model, run_id) not in self.runs:
            raise NotFound(f"run {run_id!r} of model {model!r} does not exist")
        return Run.model_validate(self.runs[(model, run_id)])

    def list_runs(self, model: str, limit: int = 20) -> list[Run]:
        self.faults.before("list_runs")
        runs = [Run.model_validate(item) for (m, _), item in self.runs.items() if m == model]
        return sorted(runs, key=lambda r: r.started_at, reverse=True)[:limit]

    def list_run_models(self) -> list[str]:
        self.faults.before("list_run_models")
        return sorted({model for model, _ in self.runs})

    def version_for_run(self, model: str, run_id: str) -> int:
        """As the adapter: read the reservation (fault point "version_for_run"), else move the counter and
        record the reservation in one conditional write (fault point "reserve_version")."""
        self.faults.before("version_for_run")
        key = (model, run_id)
        if key not in self.reservations:
            self.faults.before("reserve_version")
            self.counters[model] = self.counters.get(model, 0) + 1
            self.reservations[key] = self.counters[model]
            self.faults.after("reserve_version")
        return self.reservations[key]

    def put_version(self, version: ModelVersion) -> None:
        self.faults.before("put_version")
        key = (version.model, version.version)
        if key in self.versions:
            if self.versions[key].run_id == version.run_id:
                return  # the same run registered it: a retry whose first reply was lost
            raise Conflict(f"version {version.version} of model {version.model!r} is already registered "
                           "by another run")
        self.versions[key] = version
        self.faults.after("put_version")

    def release_version(self, model: str, run_id: str) -> bool:
        self.faults.before("release_version")
        number = self.reservations.get((model, run_id))
        if number is None or self.counters.get(model) != number or (model, number) in self.versions:
            return False
        del self.reservations[(model, run_id)]
        self.counters[model] = number - 1
        self.faults.after("release_version")
        return True

    def get_version(self, model: str, version: int) -> ModelVersion:
        self.faults.before("get_version")
        if (model, version) not in self.versions:
            raise NotFound(f"model {model!r} has no version {version}")
        return self.versions[(model, version)]

    def list_versions(self, model: str) -> list[ModelVersion]:
        self.faults.before("list_versions")
        return [self.versions[key] for key in sorted(k for k in self.versions if k[0] == model)]

    def get_alias(self, model: str, alias: AliasName = "champion") -> int | None:
        self.faults.before("get_alias")
        return self.aliases.get((model, alias))

    # A conditional write is atomic on DynamoDB: threads (the concurrency tests) take turns here.
    _writing = threading.RLock()

    def set_alias(self, model: str, alias: AliasName, version: int, *, expected: int | None, reason: str,
                  actor: str = UNKNOWN_ACTOR, approved_only: bool = False) -> AuditEntry:
        with self._writing:
            self.faults.before("set_alias")
            if self.aliases.get((model, alias)) != expected:
                raise Conflict(f"the {alias} of model {model!r} moved while it was being changed; try again")
            if approved_only and getattr(self.versions.get((model, version)), "status", None) != "Approved":
                raise Conflict(f"the {alias} of model {model!r} moved while it was being changed; try again "
                               f"(or v{version} is no longer approved)")
            moves = [e for e in self.audit if e.model == model and e.alias == alias]
            entry = AuditEntry(model=model, action=f"set_{alias}", alias=alias, version=version, from_version=expected,
                               reason=reason, at=move_time(moves[-1].at if moves else None),
                               actor=actor)  # validated before anything moves
            self.aliases[(model, alias)] = version
            self.audit.append(entry)
            self.trail.append(entry)
            self.faults.after("set_alias")
            return entry

    def set_status(self, model: str, version: int, status: VersionStatus, *, expected: VersionStatus, reason: str,
                   actor: str, unless_alias: AliasName | None = None) -> AuditEntry:
        with self._writing:
            self.faults.before("set_status")
            record = self.versions.get((model, version))
            if record is None or record.status != expected:
                raise Conflict(f"version {version} of model {model!r} is not {expected} any more")
            if unless_alias is not None and self.aliases.get((model, unless_alias)) == version:
                raise Conflict(f"version {version} of model {model!r} is the {unless_alias}")
            at = now_iso()
            entry = AuditEntry(model=model, action=STATUS_ACTIONS[status], version=version, status=status,
                               from_status=expected, reason=reason, at=at, actor=actor)
            self.versions[(model, version)] = record.model_copy(update={
                "status": status, "status_reason": reason, "status_changed_by": actor, "status_changed_at": at})
            self.trail.append(entry)
            self.faults.after("set_status")
            return entry

    def audit_trail(self, model: str) -> list[AuditEntry]:
        self.faults.before("audit_trail")
        return [entry for entry in self.audit if entry.model == model]

    def changes(self, model: str) -> list[AuditEntry]:
        self.faults.before("changes")
        return [entry for entry in self.trail if entry.model == model]

    def alias_history(self, model: str, alias: AliasName | None = None) -> list[AuditEntry]:
        self.faults.before("alias_history")
        moves = [e for e in self.audit if e.model == model and (alias is None or e.alias == alias)]
        return sorted(moves, key=lambda e: (str(e.alias), e.at))

    def alias_at(self, model: str, alias: AliasName, at: str) -> AuditEntry | None:
        self.faults.before("alias_at")
        moves = [e for e in self.audit if e.model == model and e.alias == alias and e.at <= instant(at)]
        return max(moves, key=lambda e: e.at, default=None)


    def get_rollout(self, model: str) -> Rollout | None:
        self.faults.before("get_rollout")
        return self.rollouts.get(model)

    def put_rollout(self, rollout: Rollout, *, expected: Rollout | None, entry: AuditEntry) -> None:
        """As the adapter: one conditional write on the stored roll-out's id and status (fault point "put_rollout")."""
        self.faults.before("put_rollout")
        stored = self.rollouts.get(rollout.model)
        if (stored and (stored.rollout_id, stored.status)) != (expected and (expected.rollout_id, expected.status)):
            raise Conflict(f"the roll-out of model {rollout.model!r} changed while it was being changed; try again")
        self.rollouts[rollout.model] = rollout
        self.trail.append(entry)
        self.faults.after("put_rollout")

    def get_retrain(self, model: str) -> Retrain | None:
        self.faults.before("get_retrain")
        return self.retrains.get(model)

    def claim_retrain(self, retrain: Retrain, *, cooldown_since: str, entry: AuditEntry) -> bool:
        """As the adapter: one conditional write on the last retrain's start (fault point "claim_retrain")."""
        self.faults.before("claim_retrain")
        with self._claiming:
            stored = self.retrains.get(retrain.model)
            if stored is not None and stored.started_at >= cooldown_since:
                return False
            self.retrains[retrain.model] = retrain
            self.trail.append(entry)
        self.faults.after("claim_retrain")
        return True

    def set_retrain_run(self, model: str, event_id: str, run_id: str) -> None:
        self.faults.before("set_retrain_run")
        with self._claiming:
            stored = self.retrains.get(model)
            if stored is None or stored.event_id != event_id:
                raise Conflict(f"the latest retrain of model {model!r} is another event's")
            self.retrains[model] = stored.model_copy(update={"run_id": run_id})

class MemoryEventPublisher:
    """The registry's events as EventBridge would receive them (a list), able to fail to send on purpose.

    As the EventBridge adapter, it never raises: `publish` says whether the event was sent."""

    _sending = threading.Lock()

    def __init__(self) -> None:
        self.faults = Faults()
        self.events: list[Any] = []  # RegistryEvent, or monitoring's MonitoringEvent

    def publish(self, event: Any) -> bool:
        with self._sending:
            try:
                self.faults.before("publish")
            except Exception:  # noqa: BLE001 - the adapter's contract: a failure to send is False, never raised
                return False
            self.events.append(event)
            return True

    def details(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        return [e.detail for e in self.events if detail_type is None or e.detail_type == detail_type]


class MemoryAlarms:
    """CloudWatch's metric alarms by name (monitoring.alarms.ModelAlarms)."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.alarms: dict[str, dict[str, Any]] = {}

    def put(self, alarms: list[dict[str, Any]]) -> None:
        self.faults.before("put")
        self.alarms.update({alarm["AlarmName"]: alarm for alarm in alarms})


class MemoryDatasetStore:
    def __init__(self) -> None:
        self.faults = Faults()
        self.datasets: dict[tuple[str, str], DatasetVersion] = {}
        self.identities: dict[tuple[str, str], str] = {}  # (model, run key) -> the run that holds it

    def put_dataset(self, dataset: DatasetVersion) -> bool:
        self.faults.before("put_dataset")
        key = (dataset.model, dataset.dataset_id)
        known = self.datasets.get(key)
        if known is not None:
            self.datasets[key] = known.model_copy(update={"runs": known.runs | dataset.runs})
            return False
        self.datasets[key] = dataset.model_copy(update={"profile": jsonable(dataset.profile)})
        self.faults.after("put_dataset")
        return True

    def get_dataset(self, model: str, dataset_id: str) -> DatasetVersion:
        self.faults.before("get_dataset")
        if (model, dataset_id) not in self.datasets:
            raise NotFound(f"model {model!r} has no dataset {dataset_id[:12]}")
        return self.datasets[(model, dataset_id)]

    def list_datasets(self, model: str) -> list[DatasetVersion]:
        self.faults.before("list_datasets")
        return sorted((d for (m, _), d in self.datasets.items() if m == model), key=lambda d: d.created_at)

    def identified_run(self, model: str, run_key: str) -> str | None:
        self.faults.before("identified_run")
        return self.identities.get((model, run_key))

    def claim_identity(self, model: str, run_key: str, run_id: str, *, expected: str | None) -> bool:
        self.faults.before("claim_identity")
        if self.identities.get((model, run_key)) != expected:
            return self.identities.get((model, run_key)) == run_id  # a retried claim whose reply was lost
        self.identities[(model, run_key)] = run_id
        self.faults.after("claim_identity")
        return True


class MemoryOnlineStore:
    def __init__(self) -> None:
        self.faults = Faults()
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.expires_at: dict[tuple[str, str], float] = {}  # epoch seconds; rows without one never expire

    def put_latest(self, model: str, rows: dict[str, dict[str, Any]], *, dataset_id: str, ttl_days: int) -> int:
        self.faults.before("put_latest")
        expires_at = time.time() + ttl_days * 86_400
        for key, row in rows.items():
            self.rows[(model, key)] = jsonable(row)
            self.expires_at[(model, key)] = expires_at
        self.faults.after("put_latest")
        return len(rows)

    def get_latest(self, model: str, entity: Any) -> dict[str, Any] | None:
        self.faults.before("get_latest")
        key = entity_key(entity)
        if key is None:
            raise InvalidInput("the entity id is missing or too long")
        return self._unexpired(model, key)

    def get_many(self, model: str, entities: Iterable[Any]) -> dict[str, dict[str, Any]]:
        self.faults.before("get_many")
        keys = sorted({key for key in map(entity_key, entities) if key is not None})
        found = {key: self._unexpired(model, key) for key in keys}
        return {key: row for key, row in found.items() if row is not None}

    def _unexpired(self, model: str, key: str) -> dict[str, Any] | None:
        """Like the adapter, skip what has expired (DynamoDB's TTL deletes lazily)."""
        if self.expires_at.get((model, key), math.inf) < time.time():
            return None
        return self.rows.get((model, key))


class MemoryExecutions:
    """Started executions by name (a repeated name starts nothing)."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.started: dict[str, dict[str, Any]] = {}

    def start(self, name: str, payload: dict[str, Any]) -> bool:
        self.faults.before("start")
        if name in self.started:
            return False
        self.started[name] = payload
        self.faults.after("start")
        return True
