"""Training: the scikit-learn pipeline a spec describes, a reproducible holdout split, the fit.

Preprocessing is part of the fitted pipeline (imputation, scaling, one-hot encoding), so the
artifact carries it to serving. The estimator comes from the spec's allow-list, never from an
import path taken from input. Everything random is seeded from the dataset id: the same data
gives the same split and the same model.
"""

import importlib
import logging
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from functions.errors import DatasetInvalid, SpecInvalid
from functions.jsonable import jsonable
from functions.shared.transform import MISSING, category, model_input
from functions.spec import ESTIMATORS, ModelSpec
from functions.storage.objects import sha256

logger = logging.getLogger(__name__)

MIN_TRAIN_ROWS = 5


@dataclass
class TrainResult:
    pipeline: Pipeline
    train: pd.DataFrame  # features + target
    holdout: pd.DataFrame  # features + target
    params: dict
    seed: int
    stratified: bool
    grouped: bool = False  # split by entity: no entity on both sides


def seed_for(dataset_id: str) -> int:
    """A 31-bit seed from the dataset id (the sha256 of its content)."""
    return int(sha256(dataset_id.encode())[:8], 16) % (2**31 - 1)


def estimator_for(spec: ModelSpec, seed: int) -> Any:
    """The allow-listed estimator with the spec's parameters (and our seed unless it sets one)."""
    module_name, class_name = ESTIMATORS[spec.task][spec.estimator.name].rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), class_name)
    estimator = cls()
    accepted = estimator.get_params()
    unknown = sorted(set(spec.estimator.params) - set(accepted))
    if unknown:
        raise SpecInvalid(
            f"estimator {spec.estimator.name!r} does not take parameter(s) {', '.join(unknown)}"
        )
    params = dict(spec.estimator.params)
    if "random_state" in accepted and params.get("random_state") is None:
        params["random_state"] = seed
    estimator.set_params(**params)
    return estimator


def build_pipeline(spec: ModelSpec, seed: int = 0) -> Pipeline:
    """Preprocessing per feature type, then the estimator.

    The pipeline takes the features in the spec's order and selects them by position, not by
    name: a column name may be any text, and the ONNX model of the pipeline names its inputs
    f0, f1, ... (registry.artifacts).
    """
    positions = {feature.name: index for index, feature in enumerate(spec.features)}
    transformers = []
    if spec.numeric_features:
        numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        transformers.append(("numeric", numeric, [positions[name] for name in spec.numeric_features]))
    if spec.categorical_features:
        # Missing categories arrive as the MISSING string (see shared.transform); the imputer
        # replaces them with the most frequent one (a string marker also converts to ONNX).
        categorical = Pipeline([
            ("impute", SimpleImputer(strategy="most_frequent", missing_values=MISSING)),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ])
        transformers.append(("categorical", categorical, [positions[name] for name in spec.categorical_features]))
    preprocess = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0)
    return Pipeline([("preprocess", preprocess), ("estimator", estimator_for(spec, seed))])


def entity_groups(frame: pd.DataFrame, spec: ModelSpec) -> pd.Series | None:
    """The entity of each row (a row without an id is its own), or None when no entity has several rows."""
    if not spec.entity_id or spec.entity_id not in frame.columns:
        return None
    codes = pd.Series(pd.factorize(frame[spec.entity_id])[0], index=frame.index)
    missing = codes < 0
    codes[missing] = -np.arange(1, int(missing.sum()) + 1)  # each its own group
    if codes.nunique() == len(codes):
        return None
    return codes


def split(frame: pd.DataFrame, spec: ModelSpec, seed: int,
          groups: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """Train and holdout frames; stratified by the target for classification when every class allows it.

    With `groups` (the entity of each row) no entity is on both sides, so the holdout measures
    how the model does on entities it never saw: about `holdout_fraction` of the entities go to
    the holdout (classification: one fold of round(1 / holdout_fraction) stratified group folds).
    """
    n = len(frame)
    if groups is not None:
        return _grouped_split(frame, spec, seed, groups)
    n_holdout = max(1, int(np.ceil(n * spec.holdout_fraction)))
    if n - n_holdout < MIN_TRAIN_ROWS:
        raise DatasetInvalid(f"the dataset has {n} rows: too few to keep a holdout and train on the rest")
    stratify = None
    if spec.task == "classification":
        counts = frame[spec.target].value_counts()
        if len(counts) >= 2 and counts.min() >= 2 and n_holdout >= len(counts) and n - n_holdout >= len(counts):
            stratify = frame[spec.target]
    train, holdout = train_test_split(frame, test_size=n_holdout, random_state=seed, shuffle=True, stratify=stratify)
    return train, holdout, stratify is not None


def _grouped_split(frame: pd.DataFrame, spec: ModelSpec, seed: int,
                   groups: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    entities = groups.nunique()
    if entities < 2:
        raise DatasetInvalid(f"every row is of one entity ({spec.entity_id!r}): a holdout of other entities "
                             "needs at least 2")
    folds = max(2, round(1 / spec.holdout_fraction))
    stratified = False
    if spec.task == "classification" and entities >= folds:
        counts = frame[spec.target].value_counts()
        stratified = len(counts) >= 2 and counts.min() >= folds
    if stratified:
        splitter: Any = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        train_rows, holdout_rows = next(splitter.split(frame, frame[spec.target], groups))
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=spec.holdout_fraction, random_state=seed)
        train_rows, holdout_rows = next(splitter.split(frame, groups=groups))
    if len(holdout_rows) == 0 or len(train_rows) < MIN_TRAIN_ROWS:
        raise DatasetInvalid(f"the dataset has {len(frame)} rows of {entities} entities: too few to keep a holdout "
                             "of whole entities and train on the rest")
    return frame.iloc[train_rows], frame.iloc[holdout_rows], stratified


@dataclass
class Prepared:
    """The model input split as training splits it: train and holdout frames, and each train row's entity."""

    train: pd.DataFrame  # features + target
    holdout: pd.DataFrame  # features + target
    seed: int
    stratified: bool
    groups: pd.Series | None  # the entity of each train row (None: rows are independent)


def prepare(frame: pd.DataFrame, spec: ModelSpec, dataset_id: str) -> Prepared:
    """Split `frame` (features + target) into train and holdout; DatasetInvalid when the train part cannot be fit."""
    data = model_input(frame, spec).reset_index(drop=True)
    seed = seed_for(dataset_id)
    groups = entity_groups(frame.reset_index(drop=True), spec)
    train, holdout, stratified = split(data, spec, seed, groups)
    y = train[spec.target]
    if spec.task == "classification" and y.nunique() < 2:
        raise DatasetInvalid(f"the target {spec.target!r} has a single class in the training rows: nothing to learn")
    if spec.classes is not None:
        learned = {category(label) for label in y.unique()}
        lacking = [label for label in spec.classes if category(label) not in learned]
        if lacking:  # the model's output would lack them: another shape than the spec says
            raise DatasetInvalid(f"class(es) {', '.join(map(repr, lacking))} of the target {spec.target!r} have too "
                                 "few rows: none is left in the training rows once the holdout is kept")
    empty = [name for name in spec.numeric_features if train[name].isna().all()]
    if empty:  # the imputer would drop such a column and the scaler then fails on nothing
        raise DatasetInvalid(f"numeric feature(s) {', '.join(map(repr, empty))} have no values in the training rows")
    return Prepared(train, holdout, seed, stratified, None if groups is None else groups.loc[train.index])


def fit_pipeline(spec: ModelSpec, seed: int, train: pd.DataFrame) -> Pipeline:
    """The spec's pipeline fit on `train` (features + target); SpecInvalid when the estimator refuses a parameter."""
    pipeline = build_pipeline(spec, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            pipeline.fit(train[spec.feature_names], train[spec.target])
        except ValueError as error:
            raise _parameter_error(spec, error) from error
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            logger.warning("the estimator did not converge; consider raising max_iter")
            break
    return pipeline


def fit(frame: pd.DataFrame, spec: ModelSpec, dataset_id: str) -> TrainResult:
    """Split `frame` (features + target) and fit the spec's pipeline on the training part."""
    prepared = prepare(frame, spec, dataset_id)
    pipeline = fit_pipeline(spec, prepared.seed, prepared.train)
    params = {k: jsonable(v) for k, v in pipeline.named_steps["estimator"].get_params().items() if _is_plain(v)}
    return TrainResult(pipeline, prepared.train, prepared.holdout, params, prepared.seed, prepared.stratified,
                       grouped=prepared.groups is not None)


def _parameter_error(spec: ModelSpec, error: ValueError) -> Exception:
    """scikit-learn's validation of a parameter value as a spec error naming the parameter."""
    from sklearn.utils._param_validation import InvalidParameterError

    if isinstance(error, InvalidParameterError):
        match = re.search(r"The '(\w+)' parameter", str(error))
        which = f" {match.group(1)!r}" if match else ""
        return SpecInvalid(f"estimator {spec.estimator.name!r} refused the value of parameter{which} in the spec")
    return error


def _is_plain(value: object) -> bool:
    return isinstance(value, (int, float, str, bool, type(None), np.integer, np.floating))

