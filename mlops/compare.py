"""Runs of one model side by side: their parameters and metrics, the best first by the spec's metric."""

import statistics
from dataclasses import dataclass
from typing import Any

from functions.errors import InvalidInput, UnknownModel
from functions.records import Run
from functions.registry.store import RegistryStore
from functions.spec import ModelSpec, check_model_name

MAX_RUNS = 50
ALL_RUNS = 100_000


@dataclass
class Comparison:
    model: str
    metric: str | None  # the spec's metric (None: the model has no spec any more)
    higher_is_better: bool
    runs: list[Run]  # the best first; runs without the metric last, the latest first
    params: list[str]  # the parameters whose values differ between the runs
    same_params: dict[str, Any]  # the parameters every run has with the same value
    metrics: list[str]  # the spec's metric first, then the others by name

    def score(self, run: Run) -> float | None:
        return run.metrics.get(self.metric) if self.metric else None

    def folds(self, run: Run) -> tuple[float, float] | None:
        """(mean, standard deviation) of the spec's metric over the run's cross-validation folds, if it has any."""
        values = [fold[self.metric] for fold in run.fold_metrics if self.metric and self.metric in fold]
        if not values:
            return None
        return statistics.fmean(values), statistics.pstdev(values)


def compare_runs(registry: RegistryStore, model: str, run_ids: list[str] | None = None,
                 limit: int = 10, search: str | None = None) -> Comparison:
    """The given runs of `model` (by default its latest `limit`; with `search`, the best `limit` trials of that
    search run), best first by the spec's metric.

    UnknownModel when the model has neither a spec nor runs; NotFound naming a run it does not have.
    """
    check_model_name(model)
    if not 1 <= limit <= MAX_RUNS:
        raise InvalidInput(f"compare 1 to {MAX_RUNS} runs at a time")
    spec: ModelSpec | None
    try:
        spec = registry.get_spec(model)
    except UnknownModel:
        spec = None
    if search is not None and run_ids:
        raise InvalidInput("compare chosen runs or the trials of a search, not both")
    if search is not None:
        registry.get_run(model, search)  # NotFound for a search run the model does not have
        runs = [r for r in registry.list_runs(model, limit=ALL_RUNS) if r.parent_run_id == search]
    elif run_ids:
        wanted = list(dict.fromkeys(run_ids))
        if len(wanted) > MAX_RUNS:
            raise InvalidInput(f"compare at most {MAX_RUNS} runs at a time, not {len(wanted)}")
        runs = [registry.get_run(model, run_id) for run_id in wanted]  # NotFound names the first unknown one
    else:
        runs = registry.list_runs(model, limit=limit)
        if not runs and spec is None:
            raise UnknownModel(f"no model named {model!r}: it has neither a spec nor runs")
    metric = spec.metric if spec else None
    higher = spec.higher_is_better if spec else True

    def rank(run: Run) -> tuple[int, float, str]:
        value = run.metrics.get(metric) if metric else None
        if value is None:
            return (1, 0.0, _inverse(run.started_at))
        return (0, -value if higher else value, _inverse(run.started_at))

    ordered = sorted(runs, key=rank)
    if search is not None:
        ordered = ordered[:limit]  # the best trials
        runs = ordered
    names = sorted({name for run in runs for name in run.params})
    same = {}
    differing = []
    for name in names:
        values = [run.params.get(name, _ABSENT) for run in runs]
        if len(runs) > 1 and all(_same(v, values[0]) for v in values) and values[0] is not _ABSENT:
            same[name] = values[0]
        else:
            differing.append(name)
    metrics = sorted({name for run in runs for name in run.metrics}, key=lambda m: (m != metric, m))
    return Comparison(model=model, metric=metric, higher_is_better=higher, runs=ordered, params=differing,
                      same_params=same, metrics=metrics)


_ABSENT = object()


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _inverse(text: str) -> str:
    """A key that sorts `text` (an ISO time) latest first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text)
