"""The registry store on both backends (the fake and DynamoDB under moto), able to fail the same way;
and version 1 of churn, trained once, registered but not yet promoted."""

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from tests.conftest import Champion, client_error
from tests.fakes import lost_reply, throttled

# The registry's writes a fault can hit, and how the fake plans each, as (operation, after) for a throttled
# call (nothing written) and for a lost reply (written, but the caller hears a timeout). The fake reserves
# a version in one call: a refused counter fails it before anything moves, a refused reservation after
# the counter moved.
MEMORY_FAULTS = {
    "counter": (("version_for_run", False), ("next_version", True)),
    "reservation": (("next_version", True), ("version_for_run", True)),
    "run": (("update_run", False), ("update_run", True)),
    "alias": (("set_alias", False), ("set_alias", True)),
}
# The same writes as DynamoDB calls: (table method, which of its calls).
DYNAMO_CALLS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "counter": ("update_item", lambda call: call["Key"]["sk"] == "COUNTER"),
    "reservation": ("put_item", lambda call: call["Item"]["sk"].startswith("RUNVERSION#")),
    "run": ("update_item", lambda call: call["Key"]["sk"].startswith("RUN#")),
}


class RegistryBackend:
    """A registry store, and `fail(write)` to make its next such write fail on either backend."""

    def __init__(self, kind: str, store, monkeypatch):
        self.kind, self.store, self._monkeypatch = kind, store, monkeypatch

    def fail(self, write: str, *, reply_lost: bool = False) -> None:
        """The next `write` is throttled (nothing written), or is written and its reply lost (a timeout)."""
        if self.kind == "memory":
            operation, after = MEMORY_FAULTS[write][reply_lost]
            self.store.faults.inject(operation, lost_reply() if reply_lost else throttled(), after=after)
        elif write == "alias":
            self._fail_once(self.store.table.meta.client, "transact_write_items", lambda call: True, reply_lost)
        else:
            method, matches = DYNAMO_CALLS[write]
            self._fail_once(self.store.table, method, matches, reply_lost)

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
    return churn_champion
