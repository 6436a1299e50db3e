"""The champion cache: one load per container, re-checked after its TTL, resilient to busy storage.

In memory: the fakes count what the cache reads (`faults.calls`) and fail on purpose.
"""

import pytest

from functions.errors import NoChampion, RetryableError, UnknownModel
from functions.serving.model_cache import LoadedModel, ModelCache
from tests.conftest import Stores
from tests.fakes import throttled
from tests.serving.conftest import TTL
from tests.serving.helpers import promote_new_version


def champion(cache: ModelCache, stores: Stores, model: str = "churn") -> LoadedModel:
    return cache.champion(stores.registry, stores.objects, model, TTL)


def alias_reads(stores: Stores) -> int:
    return stores.registry.faults.calls.count("get_alias")


def artifact_reads(stores: Stores) -> int:
    return stores.objects.faults.calls.count("get_bytes")


def test_within_the_ttl_the_champion_is_neither_reloaded_nor_rechecked(churn_champion, stores, clock):
    cache = ModelCache(clock=clock)
    first = champion(cache, stores)
    clock.advance(TTL - 1)
    second = champion(cache, stores)

    assert second is first and first.version == 1 and first.predictor.format == "onnx"
    assert artifact_reads(stores) == 1 and alias_reads(stores) == 1

    # After the TTL the alias is read again; the same version is not downloaded again.
    clock.advance(2)
    assert champion(cache, stores) is first
    assert artifact_reads(stores) == 1 and alias_reads(stores) == 2
    # ... and that check restarts the TTL.
    clock.advance(TTL - 1)
    champion(cache, stores)
    assert alias_reads(stores) == 2


def test_a_new_champion_is_served_once_the_ttl_has_passed(churn_champion, stores, api, clock):
    assert api.served_version() == 1
    assert promote_new_version(stores, churn_champion) == 2

    clock.advance(TTL - 1)
    assert api.served_version() == 1
    clock.advance(2)
    assert api.served_version() == 2
    assert api.served_version() == 2
    assert artifact_reads(stores) == 2


def test_registry_throttling_keeps_serving_the_cached_model(churn_champion, stores, api, clock):
    assert api.served_version() == 1
    stores.registry.faults.inject("get_alias", throttled(), times=2)

    clock.advance(TTL + 1)
    assert api.served_version() == 1
    assert api.served_version() == 1  # a failed re-check does not restart the TTL: it is tried again
    assert alias_reads(stores) == 3 and artifact_reads(stores) == 1


def test_a_transient_failure_loading_a_new_champion_keeps_serving_the_old_one(churn_champion, stores, clock):
    cache = ModelCache(clock=clock)
    assert champion(cache, stores).version == 1
    promote_new_version(stores, churn_champion)
    stores.objects.faults.inject("get_bytes", throttled())

    clock.advance(TTL + 1)
    assert champion(cache, stores).version == 1

    # Storage is back: the next request loads the new champion, without waiting for another TTL.
    assert champion(cache, stores).version == 2
    assert artifact_reads(stores) == 3


@pytest.mark.parametrize("store, operation", [("objects", "get_bytes"), ("registry", "get_alias")])
def test_without_a_cached_model_a_transient_failure_is_raised(churn_champion, stores, clock, store, operation):
    getattr(stores, store).faults.inject(operation, throttled())
    cache = ModelCache(clock=clock)
    with pytest.raises(RetryableError):
        champion(cache, stores)
    assert champion(cache, stores).version == 1  # nothing wrong was cached: the next request loads it


def test_a_champion_removed_is_no_longer_served(churn_champion, stores, clock):
    cache = ModelCache(clock=clock)
    assert champion(cache, stores).version == 1
    del stores.registry.aliases[("churn", "champion")]

    clock.advance(TTL + 1)
    with pytest.raises(NoChampion):
        champion(cache, stores)
    with pytest.raises(UnknownModel):
        champion(cache, stores, "nosuch")
