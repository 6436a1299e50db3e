"""The champion of each model, loaded once per container and kept while it stays champion.

A warm container answers from memory: the champion alias is read again only when the
entry is older than the TTL (MODEL_CACHE_TTL_SECONDS), and the artifact is downloaded and
verified (sha256) only when the alias points at another version. If that re-check (or the
load of a new champion) hits a transient storage error, the container keeps serving the model
it has rather than failing, and tries again at the next request.

A champion whose artifact cannot be loaded (missing, failing its sha256, unreadable) is a model
that is unavailable, not a client's mistake: the container keeps serving the version it has
(and tries the new one again after the TTL), or, with none, answers ModelUnavailable (503,
saying nothing of keys or hashes) without downloading the bad artifact again within the TTL.
Each failed load is reported to the caller's `on_load_failure` (the handler counts it).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from functions.errors import MlopsError, NoChampion, RetryableError
from functions.records import ModelVersion
from functions.registry.artifacts import load_predictor
from functions.registry.store import RegistryStore
from functions.shared.models import Predictor
from functions.spec import Feature, ModelSpec, check_model_name
from functions.storage.objects import ObjectStore

logger = logging.getLogger(__name__)

LoadFailureHook = Callable[[str, int], None]  # (model, version) whose artifact could not be loaded


class ModelUnavailable(MlopsError):
    """The champion (or a given version) exists but cannot be served: its artifact is missing, tampered with or
    unreadable."""

    status = 503
    code = "ModelUnavailable"

    def __init__(self, model: str, version: int | None = None):
        which = "the champion" if version is None else f"version {version}"
        super().__init__(f"{which} of model {model!r} could not be loaded (see the logs)")
        # What the client reads: a name it sent and that exists, nothing of keys, hashes or buckets.
        self.public_message = f"model {model!r} is unavailable: its champion cannot be loaded; try again later"


@dataclass
class LoadedModel:
    model: str
    version: int
    spec: ModelSpec  # the spec the version was trained with (its signature, its task)
    predictor: Predictor
    checked_at: float = field(default=0.0, compare=False)
    signature: list[Feature] = field(init=False, compare=False)  # read on every request: built once

    def __post_init__(self) -> None:
        self.signature = self.spec.signature


def champion_summary(record: ModelVersion) -> dict[str, Any]:
    return record.model_dump(mode="json", include={"version", "metrics", "created_at", "dataset_id", "run_id"})


def describe_model(registry: RegistryStore, model: str) -> dict[str, Any]:
    """What GET /v1/models/{name} answers: the model, its champion (or null) and its signature."""
    check_model_name(model)
    spec = registry.get_spec(model)
    version = registry.get_alias(model, "champion")
    if version is None:
        return {"model": model, "task": spec.task, "champion": None, "signature": _signature(spec)}
    record = registry.get_version(model, version)
    served = record.trained_spec(spec)
    return {"model": model, "task": served.task, "champion": champion_summary(record), "signature": _signature(served)}


def _signature(spec: ModelSpec) -> list[dict[str, str]]:
    return [feature.model_dump() for feature in spec.signature]


class ModelCache:
    """Champions by model name, for the life of the container."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._entries: dict[str, LoadedModel] = {}
        self._failed: dict[str, tuple[int, float]] = {}  # model -> (version that failed to load, when)
        self._versions: dict[str, LoadedModel] = {}  # model -> another version it serves (a challenger)
        self._failed_versions: dict[str, tuple[int, float]] = {}

    def clear(self) -> None:
        self._entries.clear()
        self._failed.clear()
        self._versions.clear()
        self._failed_versions.clear()

    def champion(self, registry: RegistryStore, objects: ObjectStore, model: str, ttl_seconds: float,
                 on_load_failure: LoadFailureHook | None = None) -> LoadedModel:
        """The loaded champion of `model` (UnknownModel, NoChampion, ModelUnavailable, RetryableError)."""
        check_model_name(model)
        now = self._clock()
        entry = self._entries.get(model)
        if entry is not None and now - entry.checked_at < ttl_seconds:
            return entry
        try:
            version = registry.get_alias(model, "champion")
        except RetryableError:
            if entry is None:
                raise
            logger.warning("champion re-check failed; serving the cached version",
                           extra={"model": model, "version": entry.version})
            return entry
        if entry is not None and version == entry.version:
            entry.checked_at = now
            return entry
        if version is None:
            registry.get_spec(model)  # UnknownModel when there is no such model at all
            self._entries.pop(model, None)
            raise NoChampion(f"model {model!r} has no champion yet: train it by uploading a dataset")
        failed = self._failed.get(model)
        if entry is None and failed is not None and failed[0] == version and now - failed[1] < ttl_seconds:
            raise ModelUnavailable(model)  # the bad artifact is not downloaded again before the TTL has passed
        try:
            loaded = self._load(registry, objects, model, version, now)
        except RetryableError:
            if entry is None:
                raise
            # Not marked as checked: the next request tries the new champion again.
            logger.warning("new champion not loaded; serving the cached version",
                           extra={"model": model, "version": entry.version, "champion": version})
            return entry
        except _Unloadable as unloadable:
            self._failed[model] = (version, now)
            logger.error("champion could not be loaded", extra={"model": model, "champion": version,
                                                                 "reason": unloadable.reason})
            if on_load_failure is not None:
                on_load_failure(model, version)
            if entry is None:
                raise ModelUnavailable(model) from unloadable.__cause__
            entry.checked_at = now  # the bad version is tried again after the TTL, not at every request
            logger.warning("serving the cached version instead", extra={"model": model, "version": entry.version,
                                                                         "champion": version})
            return entry
        self._entries[model] = loaded
        self._failed.pop(model, None)
        logger.info("champion loaded", extra={"model": model, "version": version, "format": loaded.predictor.format})
        return loaded

    def version(self, registry: RegistryStore, objects: ObjectStore, model: str, version: int, ttl_seconds: float,
                on_load_failure: LoadFailureHook | None = None) -> LoadedModel:
        """A given version of `model` (a roll-out's challenger), loaded once: a version's artifact never changes.
        One is kept per model besides its champion. ModelUnavailable when it cannot be loaded (not tried again
        before the TTL), RetryableError when storage is busy."""
        now = self._clock()
        entry = self._versions.get(model)
        if entry is not None and entry.version == version:
            return entry
        failed = self._failed_versions.get(model)
        if failed is not None and failed[0] == version and now - failed[1] < ttl_seconds:
            raise ModelUnavailable(model, version)
        try:
            loaded = self._load(registry, objects, model, version, now)
        except _Unloadable as unloadable:
            self._failed_versions[model] = (version, now)
            logger.error("version could not be loaded", extra={"model": model, "version": version,
                                                                "reason": unloadable.reason})
            if on_load_failure is not None:
                on_load_failure(model, version)
            raise ModelUnavailable(model, version) from unloadable.__cause__
        self._versions[model] = loaded
        self._failed_versions.pop(model, None)
        return loaded

    @staticmethod
    def _load(registry: RegistryStore, objects: ObjectStore, model: str, version: int, now: float) -> LoadedModel:
        record = registry.get_version(model, version)  # registry errors are the registry's (404, 500, 503)
        served = record.trained_spec(registry.get_spec(model))
        try:
            predictor = load_predictor(objects, record, served)
        except RetryableError:
            raise
        except MlopsError as error:  # missing (NotFound), tampered (IntegrityError), too large, refused
            raise _Unloadable(error.message) from error
        except Exception as error:  # whatever onnxruntime or skops fail with on bytes they cannot read
            raise _Unloadable(f"the artifact cannot be read ({type(error).__name__})") from error
        return LoadedModel(model=model, version=version, spec=served, predictor=predictor,
                           checked_at=now)


class _Unloadable(Exception):
    """A champion's artifact that cannot be loaded, and why (for the logs)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
