"""The drift check's test setup: the scheduled handler over this test's in-memory stores."""

import pytest

from functions.monitoring import handler, loop
from tests.conftest import Stores
from tests.fakes import MemoryAlarms, MemoryEventPublisher


@pytest.fixture
def monitor_outputs(monkeypatch):
    """The drift check's events and alarms, in memory (what it sends to EventBridge and CloudWatch)."""
    events, alarms = MemoryEventPublisher(), MemoryAlarms()
    monkeypatch.setattr(loop, "monitoring_events", lambda: events)
    monkeypatch.setattr(loop, "cloudwatch_alarms", lambda: alarms)
    loop.reset()
    yield events, alarms
    loop.reset()


@pytest.fixture
def memory_handler(stores: Stores, monkeypatch, monitor_outputs):
    """The drift check handler reading and writing this test's in-memory stores (no moto)."""
    monkeypatch.setattr(handler, "registry_store", lambda: stores.registry)
    monkeypatch.setattr(handler, "dataset_store", lambda: stores.datasets)
    monkeypatch.setattr(handler, "data_objects", lambda: stores.objects)
    return handler.check_drift
