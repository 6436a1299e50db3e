"""The champion cache: one load per container, re-checked after its TTL, resilient to busy storage.

In memory: the fakes count what the cache reads (`faults.calls`) and fail on purpose.
"""

import pytest

from functions.errors import NoChampion, RetryableError, UnknownModel
from functions.serving.model_cache import LoadedModel, ModelCache, ModelUnavailable
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


# --- a champion whose artifact cannot be loaded ------------------------------------------------


class LoadFailures(list):
    """The on_load_failure hook: the (model, version) pairs reported."""

    def __call__(self, model: str, version: int) -> None:
        self.append((model, version))


BAD_ARTIFACTS = {
    "missing": lambda stores, key: stores.objects.versions.pop(key),
    "tampered": lambda stores, key: stores.objects.put(key, b"not the model"),  # fails its sha256
}


@pytest.mark.parametrize("damage", BAD_ARTIFACTS)
def test_an_unloadable_champion_is_unavailable_and_not_downloaded_again_within_the_ttl(churn_champion, stores, clock,
                                                                                       damage):
    key = churn_champion.artifacts.onnx_key
    original = stores.objects.versions[key][-1][1]
    BAD_ARTIFACTS[damage](stores, key)
    cache, failures = ModelCache(clock=clock), LoadFailures()

    with pytest.raises(ModelUnavailable) as raised:
        cache.champion(stores.registry, stores.objects, "churn", TTL, failures)
    error = raised.value
    assert (error.status, error.code) == (503, "ModelUnavailable")
    assert error.public_message == "model 'churn' is unavailable: its champion cannot be loaded; try again later"
    assert failures == [("churn", 1)] and artifact_reads(stores) == 1

    clock.advance(TTL - 1)
    with pytest.raises(ModelUnavailable):
        cache.champion(stores.registry, stores.objects, "churn", TTL, failures)
    assert failures == [("churn", 1)] and artifact_reads(stores) == 1  # not downloaded again, not counted again

    # Repaired: once the TTL has passed the champion is loaded, and served.
    stores.objects.put(key, original)
    clock.advance(2)
    assert cache.champion(stores.registry, stores.objects, "churn", TTL, failures).version == 1
    assert failures == [("churn", 1)]


@pytest.mark.parametrize("onnx", [b"", b"\x08\x07garbage that is no ONNX model"], ids=["empty", "unreadable"])
def test_a_new_champion_that_cannot_be_loaded_leaves_the_previous_one_serving(churn_champion, stores, clock, onnx):
    """The new version's artifact verifies (its sha256 was recorded for these bytes) but onnxruntime cannot
    read it: the container keeps the version it has, counts the failure and tries again after the TTL."""
    cache, failures = ModelCache(clock=clock), LoadFailures()
    assert cache.champion(stores.registry, stores.objects, "churn", TTL, failures).version == 1
    promote_new_version(stores, churn_champion, onnx=onnx)

    clock.advance(TTL + 1)
    assert cache.champion(stores.registry, stores.objects, "churn", TTL, failures).version == 1
    assert failures == [("churn", 2)]
    clock.advance(TTL - 1)
    assert cache.champion(stores.registry, stores.objects, "churn", TTL, failures).version == 1
    assert failures == [("churn", 2)] and artifact_reads(stores) == 2  # not at every request

    clock.advance(2)
    assert cache.champion(stores.registry, stores.objects, "churn", TTL, failures).version == 1
    assert failures == [("churn", 2), ("churn", 2)]  # tried again once the TTL had passed, and counted

    # Rolled back to v1 (or a v3 that loads): served without waiting.
    promote_new_version(stores, churn_champion)
    clock.advance(TTL + 1)
    assert cache.champion(stores.registry, stores.objects, "churn", TTL, failures).version == 3
