"""Hyper-parameter search: the trials a spec's search space gives, a trial's cross-validation, the best trial.

The trials are drawn from the dataset id's seed (train.seed_for), so the same data and spec give the
same trials. A grid tries every combination, estimator by estimator; a random search takes its
estimators in turn (trial i uses estimator i mod n) and samples each parameter: a choice uniformly,
an int range uniformly on its integers, uniform and log-uniform ranges as named; over a finite space
it never repeats a combination, and runs each one once when the budget exceeds them.

A trial cross-validates its candidate on the run's training split only (the holdout stays unseen
until the final model is evaluated), with the split training uses: stratified for classification
when every class allows it, grouped by entity when the spec has an entity id. It records itself as
a child run of the pipeline's run, and a candidate the estimator refuses (or that cannot be fit) is a
FAILED trial with its reason, never a failed search. The best trial is the one with the best mean of
the spec's metric over its folds; ties go to the lowest trial index.
"""

import itertools
import logging
import math
import random
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from functions.errors import DatasetInvalid, MlopsError, NotFound, RetryableError, SpecInvalid
from functions.jsonable import jsonable
from functions.pipeline.state import SearchResult, TrialInput, TrialItem, TrialResult
from functions.records import Run, now_iso
from functions.registry.store import RegistryStore
from functions.shared.models import SkopsPredictor
from functions.shared.scoring import score
from functions.spec import Choices, Distribution, Estimator, ModelSpec, Range, SearchEstimator, SearchSpace
from functions.storage.objects import ObjectStore
from functions.training.train import fit_pipeline, prepare

logger = logging.getLogger(__name__)

MAX_TRIAL_REASON_CHARS = 500
READERS = 16  # SelectBest reads the trials' results this many at a time


# --- the trials ----------------------------------------------------------------------------------


def trials_for(search: SearchSpace, seed: int) -> list[TrialItem]:
    """The search's trials, in order (index 0, 1, ...): the same space and seed give the same trials."""
    if search.strategy == "grid":
        candidates = [(estimator.name, params) for estimator in search.estimators for params in _grid(estimator)]
    else:
        candidates = _random(search, random.Random(seed))
    return [TrialItem(index=index, estimator=name, params=params) for index, (name, params) in enumerate(candidates)]


def _values(distribution: Distribution) -> list[Any]:
    if isinstance(distribution, Choices):
        return list(distribution.values)
    return list(range(int(distribution.low), int(distribution.high) + 1))  # a grid takes int ranges only


def _grid(estimator: SearchEstimator) -> Iterator[dict[str, Any]]:
    distributions = estimator.distributions()
    names = list(distributions)
    for combination in itertools.product(*(_values(distributions[name]) for name in names)):
        yield dict(zip(names, combination, strict=True))


def _sample(distribution: Distribution, rng: random.Random) -> Any:
    if isinstance(distribution, Choices):
        return distribution.values[rng.randrange(len(distribution.values))]
    assert isinstance(distribution, Range)
    if distribution.kind == "int":
        return rng.randint(int(distribution.low), int(distribution.high))
    if distribution.kind == "uniform":
        return rng.uniform(distribution.low, distribution.high)
    return math.exp(rng.uniform(math.log(distribution.low), math.log(distribution.high)))


def _random(search: SearchSpace, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """`search.size` distinct candidates, the estimators in turn (a finite space smaller than the budget: each
    combination once, in grid order; an estimator whose combinations are all taken gives its turn away)."""
    assert search.trials is not None
    if search.size < search.trials:
        return [(estimator.name, params) for estimator in search.estimators for params in _grid(estimator)]
    spaces = [(estimator.name, estimator.distributions(), estimator.grid_size()) for estimator in search.estimators]
    taken = [0] * len(spaces)
    chosen: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    turn = attempts = 0
    while len(chosen) < search.trials and attempts < search.trials * 50:
        open_turns = [i for i, (_, _, size) in enumerate(spaces) if size is None or taken[i] < size]
        if not open_turns:
            break
        which = open_turns[turn % len(open_turns)]
        name, distributions, _ = spaces[which]
        params = {key: _sample(distribution, rng) for key, distribution in distributions.items()}
        attempts += 1
        key = repr((name, sorted(params.items())))
        if key in seen:  # drawn before: draw again
            continue
        seen.add(key)
        chosen.append((name, params))
        taken[which] += 1
        turn += 1
    return chosen


# --- what every trial reads ----------------------------------------------------------------------


class SearchContext(BaseModel):
    """What PlanTraining writes once for every trial (runs/<model>/<run>/search/search.json)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    spec: ModelSpec
    dataset_id: str
    features_key: str
    results_prefix: str  # <prefix><index>.json: each trial's result
    bucket: str
    key: str
    version_id: str | None = None
    code_version: str


def search_prefix(model: str, run_id: str) -> str:
    return f"runs/{model}/{run_id}/search"


def trial_run_id(run_id: str, index: int) -> str:
    """The child run of trial `index` of run `run_id`."""
    return f"{run_id}-trial-{index:05d}"


def result_key(results_prefix: str, index: int) -> str:
    return f"{results_prefix}{index:05d}.json"


def check_folds(train: pd.DataFrame, spec: ModelSpec, folds: int, groups: pd.Series | None) -> None:
    """DatasetInvalid when the training split is too small for `folds` folds (each fold needs rows to fit)."""
    units = len(train) if groups is None else groups.nunique()
    if units < folds or len(train) < 2 * folds:
        what = f"{units} entities" if groups is not None else f"{len(train)} rows"
        raise DatasetInvalid(f"the training split has {what}: too few for a search of {folds} cross-validation "
                             "folds (lower search.cv_folds, or upload more data)")


# --- one trial -----------------------------------------------------------------------------------


def trial_spec(spec: ModelSpec, trial: TrialItem) -> ModelSpec:
    """The spec with the trial's estimator and parameters."""
    return spec.model_copy(update={"estimator": Estimator(name=trial.estimator, params=trial.params)})


def folds_of(train: pd.DataFrame, spec: ModelSpec, folds: int, seed: int, groups: pd.Series | None) -> list[Any]:
    """(fit rows, validation rows) of each fold: stratified when every class allows it, grouped by entity."""
    y = train[spec.target]
    stratify = spec.task == "classification" and int(y.value_counts().min()) >= folds
    splitter: Any
    if groups is not None:
        splitter = (StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed) if stratify
                    else GroupKFold(n_splits=folds))
        return list(splitter.split(train, y, groups.to_numpy()))
    splitter = (StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed) if stratify
                else KFold(n_splits=folds, shuffle=True, random_state=seed))
    return list(splitter.split(train, y))


def cross_validate(train: pd.DataFrame, spec: ModelSpec, folds: int, seed: int,
                   groups: pd.Series | None) -> list[dict[str, float]]:
    """The spec's metrics on each fold, its pipeline fit on the other folds."""
    scores = []
    for fit_rows, validation_rows in folds_of(train, spec, folds, seed, groups):
        part = train.iloc[fit_rows]
        if spec.task == "classification" and part[spec.target].nunique() < 2:
            raise DatasetInvalid("a cross-validation fold has a single class in its training rows")
        pipeline = fit_pipeline(spec, seed, part)
        scores.append(score(SkopsPredictor(pipeline, spec), train.iloc[validation_rows], spec))
    return scores


def mean_metrics(folds: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the folds where it is defined."""
    names = sorted({name for fold in folds for name in fold})
    return {name: float(np.mean([fold[name] for fold in folds if name in fold])) for name in names}


def refusal(trial: TrialItem, error: Exception) -> str:
    """Why a candidate could not be cross-validated, for its run record (the estimator's own words, one line)."""
    if isinstance(error, MlopsError):
        text = error.message
    else:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        text = f"estimator {trial.estimator!r} refused parameters {jsonable(trial.params)}: {first}"
    return text[:MAX_TRIAL_REASON_CHARS]


# The failures that are the candidate's own: refused parameters, a fit that cannot be done.
CANDIDATE_ERRORS = (SpecInvalid, DatasetInvalid, ValueError, TypeError, ArithmeticError, np.linalg.LinAlgError)


def run_trial(objects: ObjectStore, registry: RegistryStore, trial_input: TrialInput) -> TrialResult:
    """Cross-validate one candidate, record it as a child run and store its result; a refused candidate is
    a FAILED trial (returned, not raised). Storage failures raise (the state machine retries the trial)."""
    trial = trial_input.trial
    context = SearchContext.model_validate(objects.get_json(trial_input.search_key))
    spec = context.spec
    assert spec.search is not None, "a trial of a spec without a search"
    child = trial_run_id(trial_input.run_id, trial.index)
    registry.start_run(Run(  # a retried trial finds its record (no change) and records its end again
        model=spec.name, run_id=child, parent_run_id=trial_input.run_id, trial=trial.index,
        estimator=trial.estimator, params=trial.params, bucket=context.bucket, key=context.key,
        version_id=context.version_id, code_version=context.code_version, dataset_id=context.dataset_id,
    ))
    frame = objects.get_frame(context.features_key)
    try:
        prepared = prepare(frame, spec, context.dataset_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            folds = cross_validate(prepared.train, trial_spec(spec, trial), spec.search.cv_folds, prepared.seed,
                                   prepared.groups)
    except (RetryableError, NotFound):
        raise
    except CANDIDATE_ERRORS as error:
        reason = refusal(trial, error)
        logger.info("trial failed", extra={"run_id": child, "reason": reason})
        result = TrialResult(index=trial.index, run_id=child, estimator=trial.estimator, params=trial.params,
                             status="FAILED", failure_reason=reason)
    else:
        means = mean_metrics(folds)
        result = TrialResult(index=trial.index, run_id=child, estimator=trial.estimator, params=trial.params,
                             status="SUCCEEDED", score=means.get(spec.metric), metrics=means, fold_metrics=folds)
    ended = {"failure_reason": result.failure_reason} if result.failure_reason else {}
    registry.update_run(spec.name, child, status=result.status, ended_at=now_iso(), metrics=result.metrics,
                        fold_metrics=result.fold_metrics, **ended)
    objects.put_json(result_key(context.results_prefix, trial.index), result.model_dump(mode="json"))
    return result


# --- the best trial ------------------------------------------------------------------------------


def _ranked(results: list[TrialResult], higher_is_better: bool) -> list[TrialResult]:
    scored = [(r.score, r) for r in results
              if r.status == "SUCCEEDED" and r.score is not None and math.isfinite(r.score)]
    return [r for _, r in sorted(scored, key=lambda pair: (-pair[0] if higher_is_better else pair[0], pair[1].index))]


def best_trial(results: list[TrialResult], spec: ModelSpec) -> TrialResult:
    """The trial with the best mean metric (ties: the lowest index); SpecInvalid when none has a score."""
    ranked = _ranked(results, spec.higher_is_better)
    if ranked:
        return ranked[0]
    failed = [r for r in results if r.status == "FAILED"]
    example = f": trial {failed[0].index} {failed[0].failure_reason}" if failed else ""
    raise SpecInvalid(f"no trial of the search succeeded with a {spec.metric} score ({len(results)} trials, "
                      f"{len(failed)} failed){example}"[:1000])


def unfinished(registry: RegistryStore, context: SearchContext, run_id: str, trial: TrialItem) -> TrialResult:
    """A trial that left no result (its function failed past its retries): recorded FAILED with why."""
    child = trial_run_id(run_id, trial.index)
    reason = f"the trial did not finish (its function failed or timed out); see the logs of run {run_id}"
    registry.start_run(Run(model=context.spec.name, run_id=child, parent_run_id=run_id, trial=trial.index,
                           estimator=trial.estimator, params=trial.params, bucket=context.bucket, key=context.key,
                           version_id=context.version_id, code_version=context.code_version,
                           dataset_id=context.dataset_id))
    registry.end_run(context.spec.name, child, status="FAILED", ended_at=now_iso(), failure_reason=reason)
    return TrialResult(index=trial.index, run_id=child, estimator=trial.estimator, params=trial.params,
                       status="FAILED", failure_reason=reason)


def select_best(objects: ObjectStore, registry: RegistryStore, *, run_id: str, search_key: str, trials_key: str,
                best_key: str) -> SearchResult:
    """Read every trial's result, record the ones that left none FAILED, and store the best trial (best_key)."""
    context = SearchContext.model_validate(objects.get_json(search_key))
    trials = [TrialItem.model_validate(item) for item in objects.get_json(trials_key)]

    def read(trial: TrialItem) -> TrialResult:
        try:
            return TrialResult.model_validate(objects.get_json(result_key(context.results_prefix, trial.index)))
        except NotFound:
            return unfinished(registry, context, run_id, trial)

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        results = list(pool.map(read, trials))
    best = best_trial(results, context.spec)
    objects.put_json(best_key, best.model_dump(mode="json"))
    failed = sum(r.status == "FAILED" for r in results)
    logger.info("best trial selected", extra={"run_id": run_id, "best": best.index, "score": best.score,
                                              "failed": failed})
    return SearchResult(metric=context.spec.metric, trials=len(results), succeeded=len(results) - failed,
                        failed=failed, best=best, best_key=best_key)
