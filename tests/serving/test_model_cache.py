"""The champion cache: one load per container, re-checked after its TTL, resilient to busy storage."""

import functools

import pytest

from functions.errors import NoChampion, RetryableError, UnknownModel
from functions.registry.store import RegistryStore
from functions.serving import handler, model_cache
from functions.serving.model_cache import ModelCache
from tests.serving.helpers import INSTANCE
from tests.serving.events import call

PREDICT = "/v1/models/churn/predict"
TTL = 60.0


class Counting:
    """Wraps a function (or a method, set on its class) and counts its calls."""

    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)

    def __get__(self, instance, owner=None):
        return self if instance is None else functools.partial(self, instance)


@pytest.fixture
def loads(monkeypatch) -> Counting:
    counting = Counting(model_cache.load_predictor)
    monkeypatch.setattr(model_cache, "load_predictor", counting)
    return counting


@pytest.fixture
def alias_reads(monkeypatch) -> Counting:
    counting = Counting(RegistryStore.get_alias)
    monkeypatch.setattr(RegistryStore, "get_alias", counting)
    return counting


@pytest.fixture
def registry(pipeline_aws) -> RegistryStore:
    return RegistryStore(pipeline_aws.tables["registry"])


def champion(cache: ModelCache, registry, aws, model: str = "churn"):
    return cache.champion(registry, aws.s3, aws.bucket, model, TTL)


def served_version(context) -> int:
    status, body, _ = call(handler.handler, context, "POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 200, body
    return body["version"]


def test_within_the_ttl_the_champion_is_neither_reloaded_nor_rechecked(churn_champion, registry, pipeline_aws,
                                                                        clock, loads, alias_reads):
    cache = ModelCache(clock=clock)
    first = champion(cache, registry, pipeline_aws)
    clock.advance(TTL - 1)
    second = champion(cache, registry, pipeline_aws)

    assert second is first and first.version == 1 and first.predictor.format == "onnx"
    assert loads.calls == 1 and alias_reads.calls == 1

    # After the TTL the alias is read again; the same version is not downloaded again.
    clock.advance(2)
    assert champion(cache, registry, pipeline_aws) is first
    assert loads.calls == 1 and alias_reads.calls == 2
    # ... and that check restarts the TTL.
    clock.advance(TTL - 1)
    champion(cache, registry, pipeline_aws)
    assert alias_reads.calls == 2


def test_a_new_champion_is_served_once_the_ttl_has_passed(churn_champion, champion_factory, churn_spec, churn_rows,
                                                          lambda_context, clock, loads):
    assert served_version(lambda_context) == 1
    champion_factory(churn_spec, churn_rows.sample(frac=0.8, random_state=1))  # version 2 becomes champion

    clock.advance(TTL - 1)
    assert served_version(lambda_context) == 1
    clock.advance(2)
    assert served_version(lambda_context) == 2
    assert served_version(lambda_context) == 2
    assert loads.calls == 2


def test_a_transient_registry_failure_keeps_serving_the_cached_model(churn_champion, lambda_context, clock,
                                                                      monkeypatch):
    assert served_version(lambda_context) == 1

    def busy(self, model, alias="champion"):
        raise RetryableError(f"reading the {alias} of model {model!r}: storage is busy, try again")

    monkeypatch.setattr(RegistryStore, "get_alias", busy)
    clock.advance(TTL + 1)
    assert served_version(lambda_context) == 1
    assert served_version(lambda_context) == 1


def test_a_transient_failure_loading_a_new_champion_keeps_serving_the_old_one(
        churn_champion, champion_factory, churn_spec, churn_rows, registry, pipeline_aws, clock, monkeypatch):
    cache = ModelCache(clock=clock)
    assert champion(cache, registry, pipeline_aws).version == 1
    champion_factory(churn_spec, churn_rows.sample(frac=0.8, random_state=2))
    load_predictor = model_cache.load_predictor

    def busy(*args, **kwargs):
        raise RetryableError("reading the model artifact: storage is busy, try again")

    monkeypatch.setattr(model_cache, "load_predictor", busy)
    clock.advance(TTL + 1)
    assert champion(cache, registry, pipeline_aws).version == 1

    # Storage is back: the next request loads the new champion, without waiting for another TTL.
    monkeypatch.setattr(model_cache, "load_predictor", load_predictor)
    assert champion(cache, registry, pipeline_aws).version == 2


def test_without_a_cached_model_a_transient_failure_is_raised(churn_champion, registry, pipeline_aws, clock,
                                                              monkeypatch):
    def busy(*args, **kwargs):
        raise RetryableError("reading the model artifact: storage is busy, try again")

    monkeypatch.setattr(model_cache, "load_predictor", busy)
    with pytest.raises(RetryableError):
        champion(ModelCache(clock=clock), registry, pipeline_aws)


def test_a_champion_removed_is_no_longer_served(churn_champion, registry, pipeline_aws, clock):
    cache = ModelCache(clock=clock)
    assert champion(cache, registry, pipeline_aws).version == 1
    registry.table.delete_item(Key={"pk": "MODEL#churn", "sk": "ALIAS#champion"})

    clock.advance(TTL + 1)
    with pytest.raises(NoChampion):
        champion(cache, registry, pipeline_aws)
    with pytest.raises(UnknownModel):
        champion(cache, registry, pipeline_aws, "nosuch")
