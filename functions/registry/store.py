"""The registry table: model specs, runs, versions, aliases and their audit trail.

One DynamoDB table, partition `MODEL#<model>`; the sort key says what an item is (SPEC,
RUN#, VERSION#, COUNTER, ALIAS#, AUDIT#). Records come back as plain Python values: numbers
as int/float (never Decimal), and the fields stored as JSON strings (metrics, params,
signature, classes) decoded.
"""

import json
import math
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from pydantic import ValidationError

from functions import aws
from functions.errors import Conflict, MlopsError, NotFound, RetryableError, UnknownModel
from functions.settings import settings
from functions.spec import ModelSpec
from functions.storage import storage_errors

# Fields kept as JSON strings: their content is free-form (floats that may be NaN, nested lists).
JSON_FIELDS = frozenset({"metrics", "params", "signature", "classes"})
ALIASES = frozenset({"champion", "challenger"})


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _pk(model: str) -> str:
    return f"MODEL#{model}"


def _version_sk(version: int) -> str:
    return f"VERSION#{int(version):06d}"


def json_dumps(value: Any) -> str:
    """JSON without NaN/Infinity (not JSON): they become null."""
    return json.dumps(_finite(value), sort_keys=True, default=_plain)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """numpy scalars and the like, for json.dumps."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_item(value: Any) -> Any:
    """A Python value as DynamoDB accepts it (floats as Decimal; NaN/inf as null)."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, Decimal)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy scalar
        return to_item(value.item())
    if isinstance(value, dict):
        return {str(k): to_item(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_item(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [to_item(v) for v in sorted(value)]
    raise TypeError(f"cannot store a {type(value).__name__}")


def from_item(value: Any) -> Any:
    """A DynamoDB value as plain Python (Decimal -> int or float, sets -> sorted lists)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_item(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_item(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(from_item(v) for v in value)
    return value


def _decode(item: dict) -> dict:
    record = {k: from_item(v) for k, v in item.items() if k not in {"pk", "sk"}}
    for field in JSON_FIELDS & record.keys():
        if isinstance(record[field], str):
            try:
                record[field] = json.loads(record[field])
            except ValueError:
                pass  # an older or hand-written item: leave it as stored
    return record


def _encode(fields: dict) -> dict:
    return {k: json_dumps(v) if k in JSON_FIELDS and not isinstance(v, str) else to_item(v) for k, v in fields.items()}


class RegistryStore:
    """Data access for the registry table (a boto3 DynamoDB Table resource is injected)."""

    def __init__(self, table):
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
        with storage_errors(f"reading the spec of model {model!r}"):
            item = self.table.get_item(Key={"pk": _pk(model), "sk": "SPEC"}, ConsistentRead=True).get("Item")
        if not item:
            raise UnknownModel(
                f"no model spec named {model!r} is registered; create it with `mlops models create {model} --spec FILE`"
            )
        return _parse_spec(model, item)

    def list_specs(self) -> list[ModelSpec]:
        items = self._scan(FilterExpression=Attr("sk").eq("SPEC"))
        return sorted((_parse_spec(i["pk"].removeprefix("MODEL#"), i) for i in items), key=lambda s: s.name)

    # --- runs
    def start_run(self, model: str, run_id: str, *, bucket: str, key: str, version_id: str | None,
                  code_version: str) -> bool:
        item = {
            "pk": _pk(model),
            "sk": f"RUN#{run_id}",
            "model": model,
            "run_id": run_id,
            "status": "RUNNING",
            "bucket": bucket,
            "key": key,
            "version_id": version_id,
            "code_version": code_version,
            "started_at": now_iso(),
        }
        try:
            with storage_errors(f"recording run {run_id}"):
                self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except Conflict:
            return False
        return True

    def update_run(self, model: str, run_id: str, **fields: Any) -> None:
        if not fields:
            return
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": value for i, value in enumerate(_encode(fields).values())}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        with storage_errors(f"updating run {run_id}"):
            self.table.update_item(
                Key={"pk": _pk(model), "sk": f"RUN#{run_id}"},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    def get_run(self, model: str, run_id: str) -> dict:
        with storage_errors(f"reading run {run_id}"):
            item = self.table.get_item(Key={"pk": _pk(model), "sk": f"RUN#{run_id}"}, ConsistentRead=True).get("Item")
        if not item:
            raise NotFound(f"run {run_id!r} of model {model!r} does not exist")
        return _decode(item)

    def list_runs(self, model: str, limit: int = 20) -> list[dict]:
        # Run ids are hashes, not times: sort by start time here (a model has few runs).
        runs = [_decode(i) for i in self._query(model, "RUN#")]
        runs.sort(key=lambda r: str(r.get("started_at", "")), reverse=True)
        return runs[:limit]

    # --- versions
    def next_version(self, model: str) -> int:
        with storage_errors(f"allocating a version of model {model!r}"):
            response = self.table.update_item(
                Key={"pk": _pk(model), "sk": "COUNTER"},
                UpdateExpression="ADD #n :one",
                ExpressionAttributeNames={"#n": "next_version"},
                ExpressionAttributeValues={":one": 1},
                ReturnValues="UPDATED_NEW",
            )
        return int(response["Attributes"]["next_version"])

    def put_version(self, model: str, version: int, record: dict) -> None:
        item = {**_encode(record), "pk": _pk(model), "sk": _version_sk(version), "model": model, "version": int(version)}
        item.setdefault("status", "registered")
        item.setdefault("created_at", now_iso())
        with storage_errors(f"registering version {version} of model {model!r}"):
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")

    def get_version(self, model: str, version: int) -> dict:
        with storage_errors(f"reading version {version} of model {model!r}"):
            item = self.table.get_item(Key={"pk": _pk(model), "sk": _version_sk(version)}, ConsistentRead=True).get("Item")
        if not item:
            raise NotFound(f"model {model!r} has no version {version}")
        return _decode(item)

    def list_versions(self, model: str) -> list[dict]:
        return [_decode(i) for i in self._query(model, "VERSION#")]

    def version_for_run(self, model: str, run_id: str) -> int:
        """The version number of a run's model, allocated once: a retried registration reuses it."""
        key = {"pk": _pk(model), "sk": f"RUNVERSION#{run_id}"}
        with storage_errors(f"reading the version of run {run_id}"):
            item = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
        if item:
            return int(item["version"])
        version = self.next_version(model)
        try:
            with storage_errors(f"reserving version {version} for run {run_id}"):
                self.table.put_item(Item={**key, "version": version}, ConditionExpression="attribute_not_exists(pk)")
        except Conflict:  # a concurrent copy of the same step reserved first: use its number
            with storage_errors(f"reading the version of run {run_id}"):
                return int(self.table.get_item(Key=key, ConsistentRead=True)["Item"]["version"])
        return version

    # --- aliases
    def get_alias(self, model: str, alias: str = "champion") -> int | None:
        _check_alias(alias)
        with storage_errors(f"reading the {alias} of model {model!r}"):
            item = self.table.get_item(Key={"pk": _pk(model), "sk": f"ALIAS#{alias}"}, ConsistentRead=True).get("Item")
        if not item or item.get("version") is None:
            return None
        return int(item["version"])

    def set_alias(self, model: str, alias: str, version: int, *, expected: int | None, reason: str) -> None:
        """Point `alias` at `version` if it still points at `expected` (None: unset), with an audit item.

        Both writes go in one transaction: an alias never moves without its audit record.
        Raises Conflict when another writer moved the alias first.
        """
        _check_alias(alias)
        now = now_iso()
        if expected is None:
            condition, values = "attribute_not_exists(pk)", {}
        else:
            condition, values = "#v = :expected", {":expected": int(expected)}
        alias_put = {
            "Update": {
                "TableName": self.table.name,
                "Key": {"pk": _pk(model), "sk": f"ALIAS#{alias}"},
                "UpdateExpression": "SET #v = :version, updated_at = :now, reason = :reason",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":version": int(version), ":now": now, ":reason": reason, **values},
            }
        }
        audit_put = {
            "Put": {
                "TableName": self.table.name,
                "Item": {
                    "pk": _pk(model),
                    "sk": f"AUDIT#{now}#{uuid.uuid4()}",
                    "model": model,
                    "action": f"set_{alias}",
                    "alias": alias,
                    "version": int(version),
                    "from_version": None if expected is None else int(expected),
                    "reason": reason,
                    "at": now,
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        with storage_errors(f"moving the {alias} of model {model!r}"):
            try:
                self.table.meta.client.transact_write_items(TransactItems=[alias_put, audit_put])
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = {r.get("Code") for r in error.response.get("CancellationReasons", [])}
                if "ConditionalCheckFailed" in reasons:
                    raise Conflict(f"the {alias} of model {model!r} moved while it was being changed; try again") from error
                if reasons & {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}:
                    raise RetryableError(f"moving the {alias} of model {model!r}: storage is busy, try again") from error
                raise

    def audit_trail(self, model: str) -> list[dict]:
        return [_decode(i) for i in self._query(model, "AUDIT#")]

    # --- helpers
    def _query(self, model: str, prefix: str) -> list[dict]:
        items: list[dict] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(_pk(model)) & Key("sk").begins_with(prefix),
            "ConsistentRead": True,
        }
        with storage_errors(f"listing the records of model {model!r}"):
            while True:
                page = self.table.query(**kwargs)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return items
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _scan(self, **kwargs: Any) -> list[dict]:
        items: list[dict] = []
        with storage_errors("listing the registered models"):
            while True:
                page = self.table.scan(**kwargs)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return items
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise ValueError(f"unknown alias {alias!r}")


def _parse_spec(model: str, item: dict) -> ModelSpec:
    try:
        return ModelSpec.model_validate_json(item["spec"])
    except (KeyError, TypeError, ValidationError) as error:
        raise MlopsError(f"the stored spec of model {model!r} is unreadable; register it again") from error


def registry_store() -> RegistryStore:
    """The store of the running function (table name from its settings)."""
    return RegistryStore(aws.table(settings().registry_table))
