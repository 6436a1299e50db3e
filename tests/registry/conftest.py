"""The registry store on both backends (the fake and DynamoDB under moto), able to fail the same way;
and version 1 of churn, trained once, registered but not yet promoted."""

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from tests.conftest import Champion, client_error
from tests.fakes import lost_reply, throttled

# The registry's calls a fault can hit, and how the fake plans each, as (operation, after) for a throttled
# call (nothing written) and for a lost reply (written, but the caller hears a timeout). A reservation is
# one write on both backends: the counter and the run's reservation move together or not at all.
MEMORY_FAULTS = {
    "reservation read": (("version_for_run", False), None),
    "reservation": (("reserve_version", False), ("reserve_version", True)),
    "registration": (("put_version", False), ("put_version", True)),
    "release": (("release_version", False), ("release_version", True)),
    "run": (("update_run", False), ("update_run", True)),
    "alias": (("set_alias", False), ("set_alias", True)),
    "status": (("set_status", False), ("set_status", True)),
}


def _transaction_with(kind: str, sk_prefix: str) -> Callable[[dict[str, Any]], bool]:
    """A TransactWriteItems call holding a `kind` (Put, Update, Delete) of an item whose sort key starts so."""
    def matches(call: dict[str, Any]) -> bool:
        for action in call["TransactItems"]:
            if kind in action:
                key = action[kind].get("Item") or action[kind].get("Key") or {}
                if str(key.get("sk", "")).startswith(sk_prefix):
                    return True
        return False

    return matches


# The same calls on DynamoDB: (the table or its client, the method, which of its calls).
DYNAMO_CALLS: dict[str, tuple[str, str, Callable[[dict[str, Any]], bool]]] = {
    "reservation read": ("table", "get_item", lambda call: call["Key"]["sk"].startswith("RUNVERSION#")),
    "reservation": ("client", "transact_write_items", _transaction_with("Put", "RUNVERSION#")),
    "registration": ("table", "put_item", lambda call: call["Item"]["sk"].startswith("VERSION#")),
    "release": ("client", "transact_write_items", _transaction_with("Delete", "RUNVERSION#")),
    "run": ("table", "update_item", lambda call: call["Key"]["sk"].startswith("RUN#")),
    "alias": ("client", "transact_write_items", _transaction_with("Update", "ALIAS#")),
    "status": ("client", "transact_write_items", _transaction_with("Update", "VERSION#")),
}


class RegistryBackend:
    """A registry store, and `fail(call)` to make its next such call fail on either backend."""

    def __init__(self, kind: str, store, monkeypatch):
        self.kind, self.store, self._monkeypatch = kind, store, monkeypatch

    def fail(self, call: str, *, reply_lost: bool = False) -> None:
        """The next `call` is throttled (nothing written), or is written and its reply lost (a timeout)."""
        if self.kind == "memory":
            plan = MEMORY_FAULTS[call][reply_lost]
            assert plan is not None, f"{call} writes nothing: no reply of it can be lost"
            operation, after = plan
            self.store.faults.inject(operation, lost_reply() if reply_lost else throttled(), after=after)
        else:
            target, method, matches = DYNAMO_CALLS[call]
            self._fail_once(self.store.table if target == "table" else self.store.table.meta.client, method,
                            matches, reply_lost)

    def _fail_once(self, target, method: str, matches, reply_lost: bool) -> None:
        real = getattr(target, method)
        pending = [True]

        def call(**kwargs):
            if not (pending and matches(kwargs)):
                return real(**kwargs)
            pending.clear()
            if not reply_lost:
                raise client_error("ProvisionedThroughputExceededException", method)
            real(**kwargs)
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

        self._monkeypatch.setattr(target, method, call)


@pytest.fixture
def registry_table(boto_session):
    """The registry table alone in moto: what the store's tests need."""
    from moto import mock_aws

    with mock_aws():
        yield boto_session.resource("dynamodb").create_table(
            TableName="registry",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


@pytest.fixture(params=["memory", "dynamo"])
def backend(request, monkeypatch) -> RegistryBackend:
    if request.param == "memory":
        from tests.fakes import MemoryRegistryStore

        return RegistryBackend("memory", MemoryRegistryStore(), monkeypatch)
    from functions.registry.dynamo import DynamoRegistryStore

    return RegistryBackend("dynamo", DynamoRegistryStore(request.getfixturevalue("registry_table")), monkeypatch)


@pytest.fixture
def churn_v1(churn_champion, stores) -> Champion:
    """Version 1 of churn (the session's champion) in this test's `stores`, registered but with no alias yet."""
    stores.registry.aliases.clear()
    stores.registry.audit.clear()
    stores.registry.trail.clear()
    return churn_champion
