"""A registry with roll-outs on both backends: the in-memory twin and DynamoDB under moto."""

import pytest

from functions.spec import ModelSpec
from tests.fakes import MemoryEventPublisher, MemoryRegistryStore
from tests.registry.conftest import registry_table  # noqa: F401 - the moto table, as the registry tests make it
from tests.registry.test_store import version

ME = "arn:aws:sts::123456789012:assumed-role/ml-lead/alice"
SPEC = ModelSpec.model_validate({"name": "m", "task": "regression", "target": "y",
                                 "features": [{"name": "x", "type": "numeric"}],
                                 "estimator": {"name": "linear_regression"}, "metric": "rmse"})


def seeded(store):
    """Model m: v1 the champion, v2 and v3 approved, v4 pending."""
    from functions.registry.lifecycle import approve, promote

    store.put_spec(SPEC)
    for number in range(1, 5):
        store.put_version(version(number))
    for number in (1, 2, 3):
        approve(store, "m", number, actor=ME)
    promote(store, "m", 1, actor=ME)
    return store


@pytest.fixture(params=["memory", "dynamo"])
def registry(request):
    if request.param == "memory":
        return seeded(MemoryRegistryStore())
    from functions.registry.dynamo import DynamoRegistryStore

    return seeded(DynamoRegistryStore(request.getfixturevalue("registry_table")))


@pytest.fixture
def events() -> MemoryEventPublisher:
    return MemoryEventPublisher()
