"""The predict API's test setup: a fresh model cache per test, on a clock the test moves."""

import pytest

from functions.serving import handler
from functions.serving.model_cache import ModelCache
from tests.serving.helpers import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def model_cache(monkeypatch, clock) -> ModelCache:
    """The handler's container-wide cache, replaced by an empty one on the test clock (TTL 60 s)."""
    cache = ModelCache(clock=clock)
    monkeypatch.setattr(handler, "models", cache)
    monkeypatch.setenv("MODEL_CACHE_TTL_SECONDS", "60")
    return cache
