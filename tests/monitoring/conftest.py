"""The drift check's test setup: the scheduled handler over this test's in-memory stores."""

import pytest

from functions.monitoring import handler
from tests.conftest import Stores


@pytest.fixture
def memory_handler(stores: Stores, monkeypatch):
    """The drift check handler reading and writing this test's in-memory stores (no moto)."""
    monkeypatch.setattr(handler, "registry_store", lambda: stores.registry)
    monkeypatch.setattr(handler, "dataset_store", lambda: stores.datasets)
    monkeypatch.setattr(handler, "data_objects", lambda: stores.objects)
    return handler.check_drift
