"""The predict API's test setup: a fresh model cache per test on a clock the test moves, its settings,
and the API over this test's in-memory stores."""

import json
import os
import sys
from collections.abc import Callable

import pytest

from functions.serving import capture, handler
from functions.serving.model_cache import ModelCache
from functions.settings import Settings
from tests.conftest import Stores
from tests.serving.helpers import Api, Clock

TTL = 60.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def model_cache(monkeypatch, clock) -> ModelCache:
    """The handler's container-wide cache, replaced by an empty one on the test clock."""
    cache = ModelCache(clock=clock)
    monkeypatch.setattr(handler, "models", cache)
    return cache


@pytest.fixture(autouse=True)
def configure(monkeypatch) -> Callable[..., None]:
    """The handler's settings (a cache TTL of 60 s); `configure(max_instances=3)` changes them for this test.

    settings() is parsed once per process, as on Lambda: the test patches what the handler reads.
    """
    base = Settings.from_environment({**os.environ, "MODEL_CACHE_TTL_SECONDS": str(TTL)})

    def apply(**fields) -> None:
        changed = Settings.model_validate({**base.model_dump(), **fields})
        monkeypatch.setattr(handler, "settings", lambda: changed)

    apply()
    return apply


@pytest.fixture(autouse=True)
def captures(monkeypatch) -> list[dict]:
    """The capture records the handler writes (still written to stdout, as on Lambda), in order."""
    records: list[dict] = []

    def spy(**fields) -> int:
        def write(text: str) -> None:
            records.extend(json.loads(line) for line in text.splitlines())
            sys.stdout.write(text)

        return capture.emit_capture(**fields, write=write)

    monkeypatch.setattr(handler, "emit_capture", spy)
    return records


@pytest.fixture
def churn_champion(churn_champion, stores: Stores):
    """The session's champion, with the calls its training made forgotten: a test counts its own."""
    for fake in vars(stores).values():
        fake.faults.calls.clear()
    return churn_champion


@pytest.fixture
def api(stores: Stores, monkeypatch, lambda_context) -> Api:
    """The predict API over this test's in-memory stores (no moto: the fast bulk of the handler tests)."""
    monkeypatch.setattr(handler, "registry_store", lambda: stores.registry)
    monkeypatch.setattr(handler, "data_objects", lambda: stores.objects)
    return Api(lambda_context)


@pytest.fixture
def aws_api(lambda_context) -> Api:
    """The predict API over its real adapters (boto3 against moto): request the AWS fixtures with it."""
    return Api(lambda_context)
