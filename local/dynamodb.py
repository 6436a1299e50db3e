"""DynamoDB on the local cloud: two things moto's DynamoDB lacks (local.patches applies both).

- Atomic operations. moto's server serves each request on a thread of its own; moto checks a
  condition, then writes, with nothing held in between (a concurrent request can write between the
  two), and a failed transaction restores a copy of the whole table taken when it started, undoing
  what other requests wrote meanwhile (or fails copying a table another request is changing).
  `atomic_dynamodb` runs each operation alone, as DynamoDB's are atomic and its transactions
  serializable, so concurrent conditional writes never lose an update.
- A Query reads its partition, in sort-key order, up to its limit. moto's sorts every item of the
  table (all partitions) through its DynamoType comparisons on every query, so one query of a
  registry of tens of thousands of items takes most of a second. `partition_queries` hands moto only
  the partition's items that the key condition selects, in order and no more than the limit needs
  (plus one, so that moto still returns LastEvaluatedKey), comparing string and number keys as plain
  values; moto then answers as before (its limit and size limit, LastEvaluatedKey, filter,
  projection). Queries of an index, or of other key types, are moto's own.
- An item's size is kept as it is built. moto checks the 400 KB item limit by adding up the sizes of
  every attribute already set each time one more is set (quadratic in an item's attributes: about
  40% of a BatchWriteItem's time); `linear_item_size` adds each attribute's size once, with the
  same limit and the same error.
"""

import copy
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from typing import Any
from unittest import mock

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, ItemSizeTooLarge, LimitedSizeDict, bytesize
from moto.dynamodb.models.table import Table

# The operations moto's server runs, each alone (a batch runs item by item, as on DynamoDB).
OPERATIONS = ("get_item", "put_item", "update_item", "delete_item", "query", "scan", "transact_write_items")
_turn = threading.RLock()  # re-entrant: a transaction calls put_item, update_item...
_moto_query = Table.query

# Key conditions on a sort key, on plain values (what DynamoDB allows in a KeyConditionExpression).
_KEY_CONDITIONS: dict[str, Callable[..., bool]] = {
    "EQ": lambda key, value: key == value,
    "=": lambda key, value: key == value,
    "LE": lambda key, value: key <= value,
    "<=": lambda key, value: key <= value,
    "LT": lambda key, value: key < value,
    "<": lambda key, value: key < value,
    "GE": lambda key, value: key >= value,
    ">=": lambda key, value: key >= value,
    "GT": lambda key, value: key > value,
    ">": lambda key, value: key > value,
    "BETWEEN": lambda key, low, high: low <= key <= high,
    "BEGINS_WITH": lambda key, prefix: isinstance(key, str) and key.startswith(prefix),
}


@contextmanager
def atomic_dynamodb() -> Iterator[None]:
    """While active, each DynamoDB operation of moto runs alone: a condition and its write, a transaction
    and its rollback, are never interleaved with another request's."""

    def alone(operation: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(operation)
        def call(*args: Any, **kwargs: Any) -> Any:
            with _turn:
                return operation(*args, **kwargs)

        return call

    with ExitStack() as stack:
        for name in OPERATIONS:
            stack.enter_context(mock.patch.object(DynamoDBBackend, name, alone(getattr(DynamoDBBackend, name))))
        yield


@contextmanager
def partition_queries() -> Iterator[None]:
    """While active, a Query of a table's own keys reads only its partition's items in range (see above)."""
    with mock.patch.object(Table, "query", _partition_query):
        yield


ITEM_SIZE_LIMIT = 405_000  # moto's: DynamoDB's 400 KB, measured to lie between 409 and 410 KB


@contextmanager
def linear_item_size() -> Iterator[None]:
    """While active, an item's size is the running sum of its attributes' (see above)."""
    with mock.patch.object(LimitedSizeDict, "__setitem__", _set_sized):
        yield


def _size(key: str, value: Any) -> int:
    return bytesize(key) + (value.size() if type(value) is DynamoType else bytesize(str(value)))


def _set_sized(self: LimitedSizeDict, key: str, value: Any) -> None:
    # The running size holds while the item changed only here; a deletion, a copy or a dict.update
    # (which bypass __setitem__) changes the count of attributes, and the size is then summed afresh.
    known: tuple[int, int] = self.__dict__.get("sized", (0, -1))  # (size, attributes)
    size = (known[0] if known[1] == len(self) else sum(_size(k, v) for k, v in self.items())) + _size(key, value)
    if key in self:
        size -= _size(key, dict.__getitem__(self, key))
    if size > ITEM_SIZE_LIMIT:
        raise ItemSizeTooLarge
    dict.__setitem__(self, key, value)
    self.__dict__["sized"] = (size, len(self))


def _plain(value: DynamoType | None) -> str | Decimal | None:
    """A string or number key as a Python value (None: another type, left to moto)."""
    if value is None:
        return None
    if value.type == "S":
        return str(value.value)
    if value.type == "N":
        return Decimal(str(value.value))
    return None


def _key_condition(comparison: str | None, values: list[DynamoType],
                   key_types: set[type]) -> Callable[[Any], bool] | None:
    """The sort-key condition as a test of a plain key (None: one to leave to moto)."""
    if not comparison:
        return lambda key: True
    bounds = [_plain(value) for value in values]
    condition = _KEY_CONDITIONS.get(comparison)
    if condition is None or any(b is None for b in bounds) or key_types - {type(b) for b in bounds}:
        return None
    return lambda key: condition(key, *bounds)


def _partition_query(self: Table, hash_key: DynamoType | None, range_comparison: str | None,
                     range_objs: list[DynamoType], limit: int | None, exclusive_start_key: dict[str, Any] | None,
                     scan_index_forward: bool, projection_expressions: Any, index_name: str | None = None,
                     consistent_read: bool = False, filter_expression: Any = None,
                     hash_key_conditions: Any = None, range_key_conditions: Any = None,
                     **filter_kwargs: Any) -> Any:
    def moto(table: Table) -> Any:
        return _moto_query(table, hash_key, range_comparison, range_objs, limit, exclusive_start_key,  # type: ignore[arg-type]
                           scan_index_forward, projection_expressions, index_name, consistent_read, filter_expression,
                           hash_key_conditions=hash_key_conditions, range_key_conditions=range_key_conditions,
                           **filter_kwargs)

    if (index_name or filter_kwargs or hash_key is None or not self.range_key_attr
            or (range_key_conditions and len(range_key_conditions) > 1)):
        return moto(self)
    keyed: list[tuple[Any, Any]] = []
    for item in self.items.get(hash_key, {}).values():
        key = _plain(item.range_key)
        if key is None:
            return moto(self)
        keyed.append((key, item))
    keyed.sort(key=lambda pair: pair[0])
    if not scan_index_forward:
        keyed.reverse()
    if exclusive_start_key and self.range_key_attr in exclusive_start_key:
        start = _plain(DynamoType(exclusive_start_key[self.range_key_attr]))
        if start is None or {type(k) for k, _ in keyed} - {type(start)}:
            return moto(self)
        keyed = [(k, i) for k, i in keyed if (k > start if scan_index_forward else k < start)]
    in_range = _key_condition(range_comparison, range_objs, {type(k) for k, _ in keyed})
    if in_range is None:
        return moto(self)
    selected = []
    for position, (key, item) in enumerate(keyed):
        if not in_range(key):
            continue
        selected.append(item)
        if limit and len(selected) == limit:
            # moto reads on to the partition's next item, if any (in range or not): it then says where it stopped.
            selected.extend(i for _, i in keyed[position + 1:position + 2])
            break
    if not scan_index_forward:
        selected.reverse()  # moto sorts them in key order, then reverses
    partition = copy.copy(self)  # moto's query over these items only
    partition.all_items = lambda: selected  # type: ignore[method-assign]
    return moto(partition)
