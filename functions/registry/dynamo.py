"""The registry on one DynamoDB table (the adapter of registry.store.RegistryStore).

Partition `MODEL#<model>`; the sort key says what an item is: SPEC, RUN#<id>, VERSION#<n>,
COUNTER, RUNVERSION#<run id>, ALIAS#<alias>, ROLLOUT (the latest roll-out), RETRAIN (the latest automatic
retrain: its cooldown), AUDIT#<time>#<uuid> (every change: alias moves, state changes, roll-outs, retrains),
HISTORY#<alias>#<time> (each move of an alias, also in AUDIT#).

"Which version held the champion alias at time T" is one query: sk BETWEEN HISTORY#champion# and
HISTORY#champion#<T>, newest first, Limit 1 (an alias's move times are unique and ordered: each
move is conditioned on the alias's version and on the time of its last move, see store.move_time).

COUNTER holds the last version number reserved (`next_version`), RUNVERSION#<run id> the number
a run reserved. Both change only together, in one transaction conditioned on the counter's value
as read and on the run having no reservation yet: a throttled reservation changes nothing, a
retry after a lost reply reads the reservation it made, and two runs never get one number.
"""

import uuid
from functools import cache
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from pydantic import ValidationError

from functions import aws
from functions.errors import Conflict, MlopsError, NotFound, RetryableError, UnknownModel
from functions.records import AliasName, AuditEntry, ModelVersion, Retrain, Rollout, Run, VersionStatus, now_iso
from functions.registry.store import STATUS_ACTIONS, UNKNOWN_ACTOR, instant, move_time
from functions.settings import settings
from functions.spec import ModelSpec
from functions.storage.dynamo import attributes, from_item, query_all, to_item, transact
from functions.storage.errors import storage_errors

# Reading the counter and reserving the next number again, when other runs keep taking it first.
RESERVATION_ATTEMPTS = 10

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


def _pk(model: str) -> str:
    return f"MODEL#{model}"


def _version_sk(version: int) -> str:
    return f"VERSION#{int(version):06d}"


def _history_sk(alias: str, at: str) -> str:
    return f"HISTORY#{alias}#{at}"


def _audit_sk(at: str) -> str:
    return f"AUDIT#{at}#{uuid.uuid4()}"


class DynamoRegistryStore:
    def __init__(self, table: "Table"):
        self.table = table

    # --- specs
    def put_spec(self, spec: ModelSpec) -> None:
        now = now_iso()
        with storage_errors(f"saving the spec of model {spec.name!r}"):
            self.table.update_item(
                Key={"pk": _pk(spec.name), "sk": "SPEC"},
                UpdateExpression="SET #spec = :spec, #model = :model, updated_at = :now, "
                "created_at = if_not_exists(created_at, :now)",
                ExpressionAttributeNames={"#spec": "spec", "#model": "model"},
                ExpressionAttributeValues={":spec": spec.model_dump_json(), ":model": spec.name, ":now": now},
            )

    def get_spec(self, model: str) -> ModelSpec:
        item = self._get({"pk": _pk(model), "sk": "SPEC"}, f"reading the spec of model {model!r}")
        if not item:
            raise UnknownModel(
                f"no model spec named {model!r} is registered; create it with `mlops models create {model} --spec FILE`"
            )
        return _parse_spec(model, item)

    def list_specs(self) -> list[ModelSpec]:
        items = query_all(self.table, "listing the registered models", FilterExpression=Attr("sk").eq("SPEC"))
        return sorted((_parse_spec(i["pk"].removeprefix("MODEL#"), i) for i in items), key=lambda s: s.name)

    # --- runs
    def start_run(self, run: Run) -> bool:
        try:
            with storage_errors(f"recording run {run.run_id}"):
                self.table.put_item(Item=to_item(run, pk=_pk(run.model), sk=f"RUN#{run.run_id}"),
                                    ConditionExpression="attribute_not_exists(pk)")
        except Conflict:
            return False
        return True

    def update_run(self, model: str, run_id: str, **fields: Any) -> None:
        if not fields:
            return
        values = attributes(Run, fields)
        names = {f"#f{i}": name for i, name in enumerate(values)}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values)))
        with storage_errors(f"updating run {run_id}"):
            self.table.update_item(
                Key={"pk": _pk(model), "sk": f"RUN#{run_id}"},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={f":v{i}": value for i, value in enumerate(values.values())},
            )

    def end_run(self, model: str, run_id: str, **fields: Any) -> bool:
        values = attributes(Run, fields)
        names = {f"#f{i}": name for i, name in enumerate(values)}
        try:
            with storage_errors(f"recording the end of run {run_id}"):
                self.table.update_item(
                    Key={"pk": _pk(model), "sk": f"RUN#{run_id}"},
                    UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values))),
                    ConditionExpression="#status = :running",  # false too when there is no such run
                    ExpressionAttributeNames={**names, "#status": "status"},
                    ExpressionAttributeValues={**{f":v{i}": value for i, value in enumerate(values.values())},
                                               ":running": "RUNNING"},
                )
        except Conflict:
            return False
        return True

    def get_run(self, model: str, run_id: str) -> Run:
        item = self._get({"pk": _pk(model), "sk": f"RUN#{run_id}"}, f"reading run {run_id}")
        if not item:
            raise NotFound(f"run {run_id!r} of model {model!r} does not exist")
        return from_item(Run, item)

    def list_runs(self, model: str, limit: int = 20) -> list[Run]:
        # Run ids are hashes, not times: sort by start time here (a model has few runs).
        runs = [from_item(Run, i) for i in self._query(model, "RUN#")]
        runs.sort(key=lambda r: r.started_at, reverse=True)
        return runs[:limit]

    def list_run_models(self) -> list[str]:
        items = query_all(self.table, "listing the models with runs", FilterExpression=Attr("sk").begins_with("RUN#"),
                          ProjectionExpression="pk")
        return sorted({str(item["pk"]).removeprefix("MODEL#") for item in items})

    # --- versions
    def version_for_run(self, model: str, run_id: str) -> int:
        # Read the run's reservation, else the counter; then move the counter from what was read and record
        # the reservation in one transaction. A throttled transaction moves nothing; one whose reply was
        # lost is found by the retry's first read; one that lost a race to another run reads again.
        key = self._reservation_key(model, run_id)
        for _ in range(RESERVATION_ATTEMPTS):
            item = self._get(key, f"reading the version of run {run_id}")
            if item:
                return int(item["version"])
            counter = self._get(self._counter_key(model), f"reading the version counter of model {model!r}")
            current = int(counter["next_version"]) if counter else 0
            version = current + 1
            counter_update = {"Update": {
                "TableName": self.table.name, "Key": self._counter_key(model),
                "UpdateExpression": "SET #n = :version",
                "ConditionExpression": "#n = :current" if counter else "attribute_not_exists(pk)",
                "ExpressionAttributeNames": {"#n": "next_version"},
                "ExpressionAttributeValues": {":version": version, **({":current": current} if counter else {})},
            }}
            reservation = {"Put": {
                "TableName": self.table.name,
                "Item": {**key, "version": version, "run_id": run_id, "reserved_at": now_iso()},
                "ConditionExpression": "attribute_not_exists(pk)",
            }}
            try:
                self._transact([counter_update, reservation], f"reserving version {version} for run {run_id}")
            except Conflict:  # another run took the number, or a concurrent copy of this step reserved: read again
                continue
            return version
        raise RetryableError(f"reserving a version of model {model!r}: other runs kept taking the next number; "
                             "try again")

    def put_version(self, version: ModelVersion) -> None:
        item = to_item(version, pk=_pk(version.model), sk=_version_sk(version.version))
        what = f"registering version {version.version} of model {version.model!r}"
        try:
            with storage_errors(what):
                self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except Conflict:
            existing = self._get({"pk": _pk(version.model), "sk": _version_sk(version.version)}, what)
            if existing is None or existing.get("run_id") != version.run_id:
                raise Conflict(f"version {version.version} of model {version.model!r} is already registered "
                               "by another run") from None
            # The same run registered it: a retry whose first reply was lost.

    def release_version(self, model: str, run_id: str) -> bool:
        key = self._reservation_key(model, run_id)
        item = self._get(key, f"reading the version of run {run_id}")
        if not item:
            return False
        version = int(item["version"])
        # All or nothing: the reservation goes and the counter steps back only if no later number was
        # reserved and the version was never registered.
        give_back = [
            {"Delete": {"TableName": self.table.name, "Key": key, "ConditionExpression": "#v = :version",
                        "ExpressionAttributeNames": {"#v": "version"},
                        "ExpressionAttributeValues": {":version": version}}},
            {"Update": {"TableName": self.table.name, "Key": self._counter_key(model),
                        "UpdateExpression": "SET #n = :previous", "ConditionExpression": "#n = :version",
                        "ExpressionAttributeNames": {"#n": "next_version"},
                        "ExpressionAttributeValues": {":previous": version - 1, ":version": version}}},
            {"ConditionCheck": {"TableName": self.table.name,
                                "Key": {"pk": _pk(model), "sk": _version_sk(version)},
                                "ConditionExpression": "attribute_not_exists(pk)"}},
        ]
        try:
            self._transact(give_back, f"releasing version {version} of run {run_id}")
        except Conflict:  # registered, or a later number was reserved: the number stays taken
            return False
        return True

    def get_version(self, model: str, version: int) -> ModelVersion:
        key = {"pk": _pk(model), "sk": _version_sk(version)}
        item = self._get(key, f"reading version {version} of model {model!r}")
        if not item:
            raise NotFound(f"model {model!r} has no version {version}")
        return from_item(ModelVersion, item)

    def list_versions(self, model: str) -> list[ModelVersion]:
        return [from_item(ModelVersion, i) for i in self._query(model, "VERSION#")]

    # --- aliases
    def get_alias(self, model: str, alias: AliasName = "champion") -> int | None:
        item = self._get({"pk": _pk(model), "sk": f"ALIAS#{alias}"}, f"reading the {alias} of model {model!r}")
        if not item or item.get("version") is None:
            return None
        return int(str(item["version"]))

    def set_alias(self, model: str, alias: AliasName, version: int, *, expected: int | None, reason: str,
                  actor: str = UNKNOWN_ACTOR, approved_only: bool = False) -> AuditEntry:
        what = f"moving the {alias} of model {model!r}"
        conflict = f"the {alias} of model {model!r} moved while it was being changed; try again"
        key = {"pk": _pk(model), "sk": f"ALIAS#{alias}"}
        current = self._get(key, f"reading the {alias} of model {model!r}")
        current_version = None if not current or current.get("version") is None else int(str(current["version"]))
        if current_version != expected:
            raise Conflict(conflict)
        previous_at = str(current["updated_at"]) if current and current.get("updated_at") else None
        at = move_time(previous_at)
        entry = AuditEntry(model=model, action=f"set_{alias}", alias=alias, version=version, from_version=expected,
                           reason=reason, at=at, actor=actor)  # validated (the alias too) before anything is sent
        values: dict[str, Any]
        if current is None:
            condition, values = "attribute_not_exists(pk)", {}
        elif previous_at is None:
            condition, values = "#v = :expected AND attribute_not_exists(updated_at)", {":expected": int(expected or 0)}
        else:  # its version and the time of its last move: no writer moves it from a state it did not read
            condition = "#v = :expected AND updated_at = :previous"
            values = {":expected": int(expected or 0), ":previous": previous_at}
        items: list[dict[str, Any]] = [
            {"Update": {
                "TableName": self.table.name, "Key": key,
                "UpdateExpression": "SET #v = :version, updated_at = :now, reason = :reason, actor = :actor",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":version": int(version), ":now": at, ":reason": reason,
                                              ":actor": actor, **values},
            }},
            {"Put": {"TableName": self.table.name, "Item": to_item(entry, pk=_pk(model), sk=_audit_sk(at)),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"TableName": self.table.name, "Item": to_item(entry, pk=_pk(model), sk=_history_sk(alias, at)),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ]
        if approved_only:
            items.append({"ConditionCheck": {
                "TableName": self.table.name, "Key": {"pk": _pk(model), "sk": _version_sk(version)},
                "ConditionExpression": "#s IN (:approved, :legacy)", "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":approved": "Approved", ":legacy": "registered"},
            }})
            conflict = f"{conflict} (or v{version} is no longer approved)"
        self._transact(items, what, conflict=conflict)
        return entry

    def set_status(self, model: str, version: int, status: VersionStatus, *, expected: VersionStatus, reason: str,
                   actor: str, unless_alias: AliasName | None = None) -> AuditEntry:
        at = now_iso()
        entry = AuditEntry(model=model, action=STATUS_ACTIONS[status], version=version, status=status,
                           from_status=expected, reason=reason, at=at, actor=actor)
        legacy = {"Approved": "registered"}.get(expected, expected)  # versions registered before approvals
        items: list[dict[str, Any]] = [
            {"Update": {
                "TableName": self.table.name, "Key": {"pk": _pk(model), "sk": _version_sk(version)},
                "UpdateExpression": "SET #s = :status, status_reason = :reason, status_changed_by = :actor, "
                                    "status_changed_at = :at",
                "ConditionExpression": "#s IN (:expected, :legacy)",  # false too when there is no such version
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":status": status, ":reason": reason, ":actor": actor, ":at": at,
                                              ":expected": expected, ":legacy": legacy},
            }},
            {"Put": {"TableName": self.table.name, "Item": to_item(entry, pk=_pk(model), sk=_audit_sk(at)),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ]
        if unless_alias is not None:
            items.append({"ConditionCheck": {
                "TableName": self.table.name, "Key": {"pk": _pk(model), "sk": f"ALIAS#{unless_alias}"},
                "ConditionExpression": "attribute_not_exists(pk) OR #v <> :version",
                "ExpressionAttributeNames": {"#v": "version"}, "ExpressionAttributeValues": {":version": int(version)},
            }})
        self._transact(items, f"changing the status of version {version} of model {model!r}",
                       conflict=f"version {version} of model {model!r} is not {expected} any more (or it is the "
                                f"{unless_alias})" if unless_alias else
                                f"version {version} of model {model!r} is not {expected} any more")
        return entry

    def audit_trail(self, model: str) -> list[AuditEntry]:
        return [entry for entry in self.changes(model) if entry.alias is not None]

    def changes(self, model: str) -> list[AuditEntry]:
        return [from_item(AuditEntry, i) for i in self._query(model, "AUDIT#")]

    def alias_history(self, model: str, alias: AliasName | None = None) -> list[AuditEntry]:
        return [from_item(AuditEntry, i) for i in self._query(model, f"HISTORY#{alias}#" if alias else "HISTORY#")]

    def alias_at(self, model: str, alias: AliasName, at: str) -> AuditEntry | None:
        prefix = f"HISTORY#{alias}#"
        with storage_errors(f"reading the {alias} of model {model!r} at {at}"):
            page = self.table.query(
                KeyConditionExpression=Key("pk").eq(_pk(model)) & Key("sk").between(prefix, prefix + instant(at)),
                ScanIndexForward=False, Limit=1, ConsistentRead=True,
            )
        items = page.get("Items", [])
        return from_item(AuditEntry, items[0]) if items else None

    # --- roll-outs (registry.rollout)
    def get_rollout(self, model: str) -> Rollout | None:
        item = self._get({"pk": _pk(model), "sk": "ROLLOUT"}, f"reading the roll-out of model {model!r}")
        return from_item(Rollout, item) if item else None

    def put_rollout(self, rollout: Rollout, *, expected: Rollout | None, entry: AuditEntry) -> None:
        condition, values = "attribute_not_exists(pk)", {}
        if expected is not None:  # on the roll-out as it was read: its id and its status
            condition = "rollout_id = :id AND #s = :status"
            values = {":id": expected.rollout_id, ":status": expected.status}
        self._transact([
            {"Put": {"TableName": self.table.name, "Item": to_item(rollout, pk=_pk(rollout.model), sk="ROLLOUT"),
                     "ConditionExpression": condition,
                     **({"ExpressionAttributeNames": {"#s": "status"}, "ExpressionAttributeValues": values}
                        if values else {})}},
            {"Put": {"TableName": self.table.name,
                     "Item": to_item(entry, pk=_pk(rollout.model), sk=_audit_sk(entry.at)),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ], f"recording the roll-out of model {rollout.model!r}",
            conflict=f"the roll-out of model {rollout.model!r} changed while it was being changed; try again")

    # --- automatic retrains (monitoring.retrain)
    def get_retrain(self, model: str) -> Retrain | None:
        item = self._get({"pk": _pk(model), "sk": "RETRAIN"}, f"reading the last retrain of model {model!r}")
        return from_item(Retrain, item) if item else None

    def claim_retrain(self, retrain: Retrain, *, cooldown_since: str, entry: AuditEntry) -> bool:
        try:
            self._transact([
                {"Put": {"TableName": self.table.name, "Item": to_item(retrain, pk=_pk(retrain.model), sk="RETRAIN"),
                         "ConditionExpression": "attribute_not_exists(pk) OR started_at < :since",
                         "ExpressionAttributeValues": {":since": cooldown_since}}},
                {"Put": {"TableName": self.table.name,
                         "Item": to_item(entry, pk=_pk(retrain.model), sk=_audit_sk(entry.at)),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ], f"recording a retrain of model {retrain.model!r}")
        except Conflict:
            return False
        return True

    def set_retrain_run(self, model: str, event_id: str, run_id: str) -> None:
        try:
            with storage_errors(f"recording the run of the retrain of model {model!r}"):
                self.table.update_item(Key={"pk": _pk(model), "sk": "RETRAIN"}, UpdateExpression="SET run_id = :run",
                                       ConditionExpression="event_id = :event",
                                       ExpressionAttributeValues={":run": run_id, ":event": event_id})
        except Conflict as error:
            raise Conflict(f"the latest retrain of model {model!r} is another event's") from error

    # --- helpers
    @staticmethod
    def _counter_key(model: str) -> dict[str, str]:
        return {"pk": _pk(model), "sk": "COUNTER"}

    @staticmethod
    def _reservation_key(model: str, run_id: str) -> dict[str, str]:
        return {"pk": _pk(model), "sk": f"RUNVERSION#{run_id}"}

    def _transact(self, items: list[dict[str, Any]], what: str, conflict: str | None = None) -> None:
        transact(self.table, items, what, conflict)

    def _get(self, key: dict[str, str], what: str) -> dict[str, Any] | None:
        with storage_errors(what):
            return self.table.get_item(Key=key, ConsistentRead=True).get("Item")

    def _query(self, model: str, prefix: str) -> list[dict[str, Any]]:
        return query_all(self.table, f"listing the records of model {model!r}",
                         KeyConditionExpression=Key("pk").eq(_pk(model)) & Key("sk").begins_with(prefix),
                         ConsistentRead=True)


def _parse_spec(model: str, item: dict[str, Any]) -> ModelSpec:
    try:
        return ModelSpec.model_validate_json(item["spec"])
    except (KeyError, TypeError, ValidationError) as error:
        raise MlopsError(f"the stored spec of model {model!r} is unreadable; register it again") from error


@cache
def registry_store() -> DynamoRegistryStore:
    """The store of the running function (table name from its settings), built once per execution environment."""
    return DynamoRegistryStore(aws.table(settings().registry_table))
