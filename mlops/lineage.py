"""Lineage, both ways: from a model version to its run, dataset version, features and parent search; from a
dataset version to every run and model version that used it. Read from the stores, never written.

Both ways rest on links the records keep: a version names its run and dataset (ModelVersion.run_id,
dataset_id), a run its dataset, version and parent search (Run.dataset_id, model_version,
parent_run_id), a dataset version the runs that used it (DatasetVersion.runs). `problems` checks that
they agree for every version of a model: each is reachable from its dataset, and back.
"""

from dataclasses import dataclass, field

from functions.data.store import DatasetStore
from functions.errors import InvalidInput, NotFound, shown
from functions.records import ALIASES, AliasName, DatasetVersion, ModelVersion, Run
from functions.registry.store import RegistryStore

MIN_PREFIX = 6  # a dataset id may be given by its first characters, as the CLI prints it
ALL_RUNS = 100_000


@dataclass
class VersionLineage:
    version: ModelVersion
    aliases: list[AliasName]  # the aliases that point at it now
    run: Run | None  # None: its run's record is missing
    parent: Run | None  # the search the run is a trial of, when it is one
    trials: list[Run]  # the run's own trials, when it is a search
    dataset: DatasetVersion | None  # None: its dataset's record is missing
    missing: list[str] = field(default_factory=list)  # links that lead nowhere


@dataclass
class DatasetLineage:
    dataset: DatasetVersion
    runs: list[Run]  # every run that used it, oldest first
    versions: list[ModelVersion]  # every version trained on it
    aliases: dict[int, list[AliasName]]  # version -> the aliases that point at it now
    missing: list[str] = field(default_factory=list)


def _aliases(registry: RegistryStore, model: str) -> dict[int, list[AliasName]]:
    held: dict[int, list[AliasName]] = {}
    for alias in ALIASES:
        version = registry.get_alias(model, alias)
        if version is not None:
            held.setdefault(version, []).append(alias)
    return held


def version_lineage(registry: RegistryStore, datasets: DatasetStore, model: str, version: int) -> VersionLineage:
    """Version `version` of `model` and what it came from (NotFound for an unknown version)."""
    record = registry.get_version(model, version)
    missing = []
    try:
        run: Run | None = registry.get_run(model, record.run_id)
    except NotFound:
        run, missing = None, [f"run {record.run_id} (the record of the run that registered v{version})"]
    parent = None
    if run is not None and run.parent_run_id:
        try:
            parent = registry.get_run(model, run.parent_run_id)
        except NotFound:
            missing.append(f"run {run.parent_run_id} (the search run {run.run_id} is a trial of)")
    trials = sorted((r for r in registry.list_runs(model, limit=ALL_RUNS) if r.parent_run_id == record.run_id),
                    key=lambda r: (r.trial is None, r.trial or 0, r.started_at))
    try:
        dataset: DatasetVersion | None = datasets.get_dataset(model, record.dataset_id)
    except NotFound:
        dataset = None
        missing.append(f"dataset {record.dataset_id[:12]} (the data v{version} was trained on)")
    return VersionLineage(version=record, aliases=_aliases(registry, model).get(version, []), run=run,
                          parent=parent, trials=trials, dataset=dataset, missing=missing)


def find_dataset(datasets: DatasetStore, model: str, dataset_id: str) -> DatasetVersion:
    """A dataset version of `model` by its id or the id's first characters (at least 6)."""
    wanted = dataset_id.strip().lower()
    if len(wanted) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in wanted):
        raise InvalidInput(f"a dataset id is hexadecimal (its sha256), given whole or by its first {MIN_PREFIX} "
                           f"characters at least, not {shown(dataset_id)}")
    if len(wanted) == 64:
        return datasets.get_dataset(model, wanted)
    found = [d for d in datasets.list_datasets(model) if d.dataset_id.startswith(wanted)]
    if not found:
        raise NotFound(f"model {model!r} has no dataset {wanted}")
    if len(found) > 1:
        ids = ", ".join(d.dataset_id[:16] for d in found)
        raise InvalidInput(f"dataset {wanted} of model {model!r} is ambiguous ({ids}): give more of its id")
    return found[0]


def dataset_lineage(registry: RegistryStore, datasets: DatasetStore, model: str, dataset_id: str) -> DatasetLineage:
    """A dataset version of `model` and every run and version that used it."""
    dataset = find_dataset(datasets, model, dataset_id)
    all_runs = registry.list_runs(model, limit=ALL_RUNS)
    by_id = {r.run_id: r for r in all_runs}
    missing = [f"run {run_id} (listed by the dataset)" for run_id in sorted(dataset.runs - set(by_id))]
    used = {r.run_id for r in all_runs if r.dataset_id == dataset.dataset_id} | (dataset.runs & set(by_id))
    # A search's trials trained on their parent's data.
    used |= {r.run_id for r in all_runs if r.parent_run_id in used}
    runs = sorted((by_id[run_id] for run_id in used), key=lambda r: (r.started_at, r.run_id))
    versions = [v for v in registry.list_versions(model) if v.dataset_id == dataset.dataset_id]
    return DatasetLineage(dataset=dataset, runs=runs, versions=versions, aliases=_aliases(registry, model),
                          missing=missing)


def problems(registry: RegistryStore, datasets: DatasetStore, model: str) -> list[str]:
    """Where the lineage of `model` is broken: every version must be reachable from its dataset, and back
    (the version names its run and dataset, the run names them both, the dataset lists the run)."""
    found = []
    for version in registry.list_versions(model):
        v = f"v{version.version}"
        try:
            dataset = datasets.get_dataset(model, version.dataset_id)
        except NotFound:
            found.append(f"{v}: its dataset {version.dataset_id[:12]} is not recorded")
            continue
        try:
            run = registry.get_run(model, version.run_id)
        except NotFound:
            found.append(f"{v}: its run {version.run_id} is not recorded")
            continue
        if run.model_version != version.version:
            found.append(f"{v}: its run {run.run_id} names version {run.model_version}")
        if run.dataset_id != version.dataset_id:
            found.append(f"{v}: its run {run.run_id} names dataset {(run.dataset_id or '-')[:12]}")
        lineage = dataset_lineage(registry, datasets, model, dataset.dataset_id)
        if run.run_id not in dataset.runs:
            found.append(f"{v}: dataset {dataset.dataset_id[:12]} does not list its run {run.run_id}")
        if version.version not in {x.version for x in lineage.versions}:
            found.append(f"{v}: not reachable from dataset {dataset.dataset_id[:12]}")
    return found
