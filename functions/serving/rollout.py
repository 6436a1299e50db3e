"""Traffic during a roll-out: which version answers a request, and the challenger scored in the shadows.

The model's ROLLOUT item (registry.rollout) is read with the champion alias, on the same TTL. While a
roll-out runs:

- canary: a request goes to the challenger when the hash of its routing key falls below the roll-out's
  share. The key is the caller's X-Routing-Key header (a user or session id: the same caller keeps seeing
  the same version), else the request id (each request drawn anew). The hash is salted with the roll-out's
  id, so the callers who see a challenger differ from one roll-out to the next.
- shadow: the champion answers; the same hash picks the share of requests the challenger also scores,
  once the champion's answer is ready (in the same invocation: Lambda runs nothing after it answers, so a
  sampled request waits for both). Its answer goes to the capture as variant "shadow", never to the client.

A challenger that cannot answer (its artifact unloadable, a failure in its model) never fails a request
the champion can answer: the champion answers, and the challenger's error is counted. While a roll-out
runs, every scored variant emits its own metrics (ModelLatency, ModelErrors, ModelInstances and, for a binary
classifier, the mean positive-class probability), dimensioned by model and variant and by variant alone: the
roll-out's alarms watch variant=challenger whatever the model. Names are the registry's, never a client's.
"""

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter  # bound here: the handler's own clock (and a test's) is its own
from typing import Any, Generic, Literal, Protocol, TypeVar

from functions.errors import MlopsError, RetryableError
from functions.records import Rollout
from functions.registry.store import RegistryStore
from functions.serving import emf
from functions.serving.model_cache import LoadedModel

logger = logging.getLogger(__name__)

Variant = Literal["champion", "challenger"]
ROUTING_HEADER = "x-routing-key"
MAX_KEY_CHARS = 1024  # a longer key is hashed on its first characters (API Gateway caps headers anyway)


class Answer(Protocol):
    @property
    def predictions(self) -> list: ...

    @property
    def probabilities(self) -> list[list[float]] | None: ...


A = TypeVar("A", bound=Answer)


def bucket(rollout_id: str, key: str) -> float:
    """Where a routing key falls in [0, 1) for this roll-out: uniform, and the same for the same key."""
    digest = hashlib.blake2b(f"{rollout_id}\x00{key[:MAX_KEY_CHARS]}".encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


def takes(rollout: Rollout, key: str) -> bool:
    """Whether the challenger scores this request: serves it (canary) or scores it beside the champion (shadow)."""
    return bucket(rollout.rollout_id, key) < rollout.share


def routing_key(headers: Mapping[str, str] | None, request_id: str) -> str:
    """The caller's routing key (X-Routing-Key, any case), else the request id."""
    for name, value in (headers or {}).items():
        if name.lower() == ROUTING_HEADER and isinstance(value, str) and value.strip():
            return value.strip()
    return request_id


class Rollouts:
    """The running roll-out of each model, read again once its entry is older than the TTL (per container)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._entries: dict[str, tuple[Rollout | None, float]] = {}

    def clear(self) -> None:
        self._entries.clear()

    def running(self, registry: RegistryStore, model: str, ttl_seconds: float) -> Rollout | None:
        now = self._clock()
        cached = self._entries.get(model)
        if cached is not None and now - cached[1] < ttl_seconds:
            return cached[0]
        try:
            current = registry.get_rollout(model)
        except RetryableError:  # the registry is busy: keep routing as before rather than fail the request
            logger.warning("roll-out re-check failed; routing as before", extra={"model": model})
            return cached[0] if cached is not None else None
        running = current if current is not None and current.running else None
        self._entries[model] = (running, now)
        return running


@dataclass(frozen=True)
class Scored(Generic[A]):
    """One version's answer to a request: the variant it ran as ('shadow' when it was not returned)."""

    variant: Literal["champion", "challenger", "shadow"]
    loaded: LoadedModel
    result: A
    latency_ms: float


@dataclass(frozen=True)
class Served(Generic[A]):
    answer: Scored[A]  # what the client gets
    shadow: Scored[A] | None = None
    challenger_errors: list[str] = field(default_factory=list)


Observer = Callable[[str, Variant, float, Answer | None], None]  # (model, variant, latency ms, answer or None)


def serve(instances: Sequence[Any], *, champion: LoadedModel, rollout: Rollout | None, key: str,
          challenger: Callable[[int], LoadedModel], predict: Callable[[LoadedModel, Sequence[Any]], A],
          observe: Observer) -> Served[A]:
    """The answer to a request, from the champion or (canary) the challenger, and the shadow's when it scored.

    The champion's own errors are the request's (a 422 for a bad instance, a 503...); the challenger's are
    counted and never returned: the champion answers instead."""
    if rollout is None or rollout.challenger == champion.version:  # no roll-out: no metrics of variants either
        return Served(_score("champion", champion, instances, predict, None))
    if not takes(rollout, key):
        return Served(_score("champion", champion, instances, predict, observe))
    errors: list[str] = []
    if rollout.mode == "canary":
        tried = _challenger(rollout, instances, challenger, predict, errors, "challenger")
        if tried is not None:
            observe(tried.loaded.model, "challenger", tried.latency_ms, tried.result)
            return Served(tried)
        answer = _score("champion", champion, instances, predict, observe)  # the champion's errors are the client's
        observe(champion.model, "challenger", 0.0, None)  # the champion could answer: the challenger failed
        return Served(answer, challenger_errors=errors)
    answer = _score("champion", champion, instances, predict, observe)
    shadow = _challenger(rollout, instances, challenger, predict, errors, "shadow")
    if shadow is None:
        observe(champion.model, "challenger", 0.0, None)
    else:
        observe(shadow.loaded.model, "challenger", shadow.latency_ms, shadow.result)
    return Served(answer, shadow, errors)


def _score(variant: Literal["champion"], loaded: LoadedModel, instances: Sequence[Any],
           predict: Callable[[LoadedModel, Sequence[Any]], A], observe: Observer | None) -> Scored[A]:
    started = perf_counter()
    result = predict(loaded, instances)
    scored = Scored(variant, loaded, result, (perf_counter() - started) * 1000)
    if observe is not None:
        observe(loaded.model, "champion", scored.latency_ms, result)
    return scored


def _challenger(rollout: Rollout, instances: Sequence[Any], challenger: Callable[[int], LoadedModel],
                predict: Callable[[LoadedModel, Sequence[Any]], A], errors: list[str],
                variant: Literal["challenger", "shadow"]) -> Scored[A] | None:
    """The challenger's answer, or None (logged, its reason in `errors`) when it could not give one."""
    try:
        started = perf_counter()
        loaded = challenger(rollout.challenger)
        result = predict(loaded, instances)
        return Scored(variant, loaded, result, (perf_counter() - started) * 1000)
    except MlopsError as error:
        reason = f"{error.code}: {error.message}"
    except Exception as error:  # noqa: BLE001 - a challenger's failure, whatever it is, must not reach the client
        reason = type(error).__name__
    logger.warning("the challenger could not answer", extra={"model": rollout.model, "version": rollout.challenger,
                                                             "rollout_id": rollout.rollout_id, "reason": reason})
    errors.append(reason)
    return None


def positive_share(answer: Answer) -> float | None:
    """The mean probability of the positive (second) class of a binary classifier's answer (None otherwise)."""
    rows = answer.probabilities
    if not rows or any(len(row) != 2 for row in rows):
        return None
    return sum(row[1] for row in rows) / len(rows)


def emit_metrics(model: str, variant: Variant, latency_ms: float, answer: Answer | None,
                 namespace: str | None = None) -> None:
    """One EMF document of a scored variant: by model and variant, and by variant alone (what the alarms read)."""
    values: dict[str, tuple[str, float]] = {"ModelErrors": ("Count", 0 if answer is not None else 1)}
    if answer is not None:
        values.update(ModelLatency=("Milliseconds", round(latency_ms, 3)),
                      ModelInstances=("Count", len(answer.predictions)))
        share = positive_share(answer)
        if share is not None:
            values["PositiveClassProbability"] = ("None", round(share, 6))
    emf.write(namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE"), os.environ.get("POWERTOOLS_SERVICE_NAME"),
              [["model", "variant"], ["variant"]], {"model": model, "variant": variant}, values)
