"""The model spec: what to train for a model name.

Registered through the CLI and stored in the registry table, so a new model needs no
redeploy. Every part reads it: data validation (the contract), features, training, serving
(the input signature) and monitoring.
"""

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from functions.errors import UnknownModel, shown

# Estimators a spec may name: a fixed allow-list, never an import path taken from user input.
ESTIMATORS: dict[str, dict[str, str]] = {
    "classification": {
        "logistic_regression": "sklearn.linear_model.LogisticRegression",
        "random_forest": "sklearn.ensemble.RandomForestClassifier",
        "gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
    },
    "regression": {
        "linear_regression": "sklearn.linear_model.Ridge",
        "random_forest": "sklearn.ensemble.RandomForestRegressor",
        "gradient_boosting": "sklearn.ensemble.HistGradientBoostingRegressor",
    },
}

# Promotion metrics per task, and whether a larger value is better.
METRICS: dict[str, dict[str, bool]] = {
    "classification": {"accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True},
    "regression": {"mae": False, "rmse": False, "r2": True},
}

Task = Literal["classification", "regression"]
MAX_CLASSES = 100  # more distinct labels than this is a regression target, or an id

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
# A column name is any text of 1 to MAX_COLUMN_NAME_LENGTH characters, spaces, dots, parentheses and
# any script included, but no control character (line breaks, tabs, NUL) and no lone surrogate (no
# UTF-8 text holds one). Where a store or ONNX needs safe names, the column is mapped to one
# (ONNX inputs are f0, f1, ... in signature order; see registry.artifacts).
MAX_COLUMN_NAME_LENGTH = 128


def check_column_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_COLUMN_NAME_LENGTH:
        raise ValueError(f"a column name has 1 to {MAX_COLUMN_NAME_LENGTH} characters, not {len(name)}")
    if not name.strip():
        raise ValueError("a column name cannot be only spaces")
    unusable = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in {"Cc", "Cs"}})
    if unusable:
        raise ValueError(f"a column name cannot hold control characters or lone surrogates ({', '.join(unusable)})")
    return name


ColumnName = Annotated[str, AfterValidator(check_column_name)]


class Feature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ColumnName
    type: Literal["numeric", "categorical"]


class Estimator(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _plain_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        for key, value in params.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"parameter name {key!r} is not a valid identifier")
            if not isinstance(value, (int, float, str, bool, type(None))):
                raise ValueError(f"parameter {key!r} must be a number, string, boolean or null")
            if isinstance(value, float) and not math.isfinite(value):
                # JSON has no NaN/Infinity: the stored spec would silently say null instead.
                raise ValueError(f"parameter {key!r} must be a finite number")
        return params


# --- hyper-parameter search -------------------------------------------------------------------
#
#   search:
#     strategy: random          # or grid (every combination; no trial budget)
#     trials: 20                # random only: 1 to MAX_TRIALS
#     cv_folds: 3               # folds of the cross-validation on the training split (2 to MAX_CV_FOLDS)
#     estimators:
#       - name: random_forest
#         params: {n_estimators: [50, 100], max_depth: {int: [2, 10]}}
#       - name: logistic_regression
#         params: {C: {log_uniform: [0.01, 10]}, max_iter: 500}
#
# A parameter is a fixed value, a list of choices, {int: [low, high]} (integers, both ends
# included), {uniform: [low, high]} or {log_uniform: [low, high]} (floats; log-uniform needs
# 0 < low). A grid takes fixed values, lists and integer ranges, and at most MAX_TRIALS combinations.

MAX_TRIALS = 10_000
MAX_CV_FOLDS = 10
MAX_SEARCH_ESTIMATORS = 10
MAX_SEARCH_PARAMS = 30
MAX_CHOICES = 1_000
Plain = int | float | str | bool | None
RANGE_KINDS = ("int", "uniform", "log_uniform")


@dataclass(frozen=True)
class Choices:
    """A parameter's values to choose from (a fixed value is one choice)."""

    values: tuple[Plain, ...]

    @property
    def size(self) -> int | None:
        return len(self.values)


@dataclass(frozen=True)
class Range:
    """Numbers between `low` and `high` (both included): integers, floats, or floats on a log scale."""

    kind: Literal["int", "uniform", "log_uniform"]
    low: float
    high: float

    @property
    def size(self) -> int | None:
        """How many values a grid takes from it (None: a continuous range, not for a grid)."""
        return int(self.high - self.low) + 1 if self.kind == "int" else None


Distribution = Choices | Range


def _plain_value(name: str, value: Any) -> Plain:
    if not isinstance(value, (int, float, str, bool, type(None))):
        raise ValueError(f"parameter {name!r}: a choice must be a number, string, boolean or null")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"parameter {name!r} must hold finite numbers")
    return value


def distribution(name: str, raw: Any) -> Distribution:
    """The distribution a search parameter declares (ValueError naming the parameter when malformed)."""
    if isinstance(raw, list):
        if not raw:
            raise ValueError(f"parameter {name!r} has an empty list of choices")
        if len(raw) > MAX_CHOICES:
            raise ValueError(f"parameter {name!r} has {len(raw)} choices; at most {MAX_CHOICES}")
        values = tuple(_plain_value(name, value) for value in raw)
        if len({(type(v).__name__, v) for v in values}) != len(values):
            raise ValueError(f"parameter {name!r} lists a choice twice")
        return Choices(values)
    if isinstance(raw, dict):
        if len(raw) != 1 or next(iter(raw)) not in RANGE_KINDS:
            raise ValueError(f"parameter {name!r}: a range is one of {{int: [low, high]}}, {{uniform: [low, high]}} "
                             f"or {{log_uniform: [low, high]}}, not {shown(raw)}")
        (kind, bounds), = raw.items()
        numbers = isinstance(bounds, list) and len(bounds) == 2 and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
        if not numbers:
            raise ValueError(f"parameter {name!r}: {kind} takes [low, high], two finite numbers")
        low, high = bounds
        if kind == "int" and not all(isinstance(b, int) for b in bounds):
            raise ValueError(f"parameter {name!r}: int takes two integers")
        if low > high or (kind != "int" and low == high):
            raise ValueError(f"parameter {name!r}: {kind} needs low < high, not [{low}, {high}]")
        if kind == "log_uniform" and low <= 0:
            raise ValueError(f"parameter {name!r}: log_uniform needs 0 < low, not {low}")
        return Range(kind, low, high)
    return Choices((_plain_value(name, raw),))


@cache
def estimator_parameters(task: Task, name: str) -> frozenset[str]:
    """The parameter names the allow-listed estimator itself takes (its get_params())."""
    import importlib

    module_name, class_name = ESTIMATORS[task][name].rsplit(".", 1)
    return frozenset(getattr(importlib.import_module(module_name), class_name)().get_params())


class SearchEstimator(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict, max_length=MAX_SEARCH_PARAMS)

    @field_validator("params")
    @classmethod
    def _distributions(cls, params: dict[str, Any]) -> dict[str, Any]:
        for key, value in params.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"parameter name {key!r} is not a valid identifier")
            distribution(key, value)
        return params

    def distributions(self) -> dict[str, Distribution]:
        return {key: distribution(key, value) for key, value in self.params.items()}

    def grid_size(self) -> int | None:
        """Its combinations in a grid (None: it has a continuous range)."""
        size = 1
        for value in self.distributions().values():
            if value.size is None:
                return None
            size *= value.size
        return size


class SearchSpace(BaseModel):
    """The hyper-parameter search of a spec: which estimators and parameters its trials take."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["grid", "random"]
    trials: int | None = None  # random: the trial budget
    cv_folds: int = 3
    estimators: list[SearchEstimator] = Field(min_length=1, max_length=MAX_SEARCH_ESTIMATORS)

    @model_validator(mode="after")
    def _bounded(self) -> "SearchSpace":
        if not 2 <= self.cv_folds <= MAX_CV_FOLDS:
            raise ValueError(f"cv_folds is {self.cv_folds}: it must be between 2 and {MAX_CV_FOLDS}")
        if self.strategy == "random":
            if self.trials is None:
                raise ValueError(f"a random search needs a trial budget: trials between 1 and {MAX_TRIALS:,}")
            if not 1 <= self.trials <= MAX_TRIALS:
                raise ValueError(f"a trial budget of {self.trials:,}: trials must be between 1 and {MAX_TRIALS:,}")
            return self
        if self.trials is not None:
            raise ValueError("a grid search tries every combination: trials is for strategy random")
        for estimator in self.estimators:
            continuous = [k for k, v in estimator.distributions().items() if v.size is None]
            if continuous:
                raise ValueError(f"a grid takes lists and int ranges; {estimator.name}'s {', '.join(continuous)} "
                                 "is a continuous range: use strategy random with a trial budget")
        size = self.grid_size()
        if size > MAX_TRIALS:
            raise ValueError(f"the grid has {size:,} combinations, more than the {MAX_TRIALS:,} trials a search may "
                             "run: narrow it, or use strategy random with a trial budget")
        return self

    def grid_size(self) -> int:
        return sum(estimator.grid_size() or 0 for estimator in self.estimators)

    @property
    def size(self) -> int:
        """How many trials the search runs (a random search over fewer combinations runs each once)."""
        if self.strategy == "grid":
            return self.grid_size()
        assert self.trials is not None
        sizes = [estimator.grid_size() for estimator in self.estimators]
        if all(size is not None for size in sizes):
            return min(self.trials, sum(size or 0 for size in sizes))
        return self.trials


Backend = Literal["lambda", "sagemaker"]


DEFAULT_DRIFT_PVALUE = 0.01  # the deployment's DRIFT_KS_PVALUE, when neither it nor the spec says otherwise
DEFAULT_PSI_THRESHOLD = 0.2


class MonitoringSpec(BaseModel):
    """How the drift checks of a model decide (functions.monitoring.drift); every field has a default.

    pvalue and psi_threshold left out take the deployment's (DRIFT_KS_PVALUE, DRIFT_PSI_THRESHOLD).
    """

    model_config = ConfigDict(extra="forbid")

    # At or below this many values on either side: p-value tests (KS, chi-squared); above: distances.
    small_sample: int = Field(1000, ge=1, le=10_000_000)
    numeric_test: Literal["auto", "ks", "wasserstein", "psi"] = "auto"
    categorical_test: Literal["auto", "chisquare", "jensenshannon", "psi"] = "auto"
    # Family-wise: a column drifts when p < pvalue / (columns decided by a p-value test), Bonferroni.
    pvalue: float | None = Field(None, gt=0, lt=1)
    wasserstein_threshold: float = Field(0.1, gt=0)  # distance / reference standard deviation
    jensenshannon_threshold: float = Field(0.1, gt=0, le=1)
    psi_threshold: float | None = Field(None, gt=0)  # when a column's test is psi
    drift_share: float = Field(0.5, gt=0, le=1)  # dataset drift: this share of the features drifted
    min_samples: int = Field(30, ge=1, le=10_000_000)  # fewer live values: reported, not decided
    # Drift or decay starts a retrain (functions.monitoring.retrain); false: the event is sent, nothing retrains.
    retrain: bool = True
    # The spec's metric on labelled predictions (the quality check): below this (accuracy, f1, roc_auc) or above
    # it (mae, rmse) the model's quality alarm fires and the check sends Model Quality Degraded. None: not watched.
    quality_threshold: float | None = None

    def with_defaults(self, *, pvalue: float, psi_threshold: float) -> "MonitoringSpec":
        """This section with what it leaves out taken from the deployment's settings."""
        return self.model_copy(update={"pvalue": self.pvalue if self.pvalue is not None else pvalue,
                                       "psi_threshold": self.psi_threshold if self.psi_threshold is not None
                                       else psi_threshold})


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    task: Task
    target: ColumnName
    features: list[Feature] = Field(min_length=1, max_length=500)
    # The estimator to train; with a `search` it may be left out (the best trial's is trained).
    estimator: Estimator
    metric: str
    search: SearchSpace | None = None
    # Where the model is trained: a Lambda step, or a SageMaker training job (None: by dataset size,
    # past the stack's sagemaker_threshold_cells).
    backend: Backend | None = None
    entity_id: ColumnName | None = None
    # Classification: the labels the model predicts (its output shape). Validation refuses rows of
    # other labels, and a dataset that lacks one; unset, the dataset's labels decide.
    classes: list[bool | int | float | str] | None = Field(None, min_length=2, max_length=MAX_CLASSES)
    holdout_fraction: float = Field(0.2, gt=0.05, lt=0.5)
    # auto: a version that passes the promotion gate is Approved and becomes champion; manual: it becomes the
    # challenger, PendingManualApproval, until a person approves it and promotes it (`mlops models approve|promote`).
    approval: Literal["auto", "manual"] = "auto"
    description: str = Field("", max_length=1000)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)

    @model_validator(mode="before")
    @classmethod
    def _estimator_of_the_search(cls, raw: Any) -> Any:
        """A spec with a search may leave out `estimator`: its first estimator stands in (the search decides)."""
        if isinstance(raw, dict) and raw.get("estimator") is None and isinstance(raw.get("search"), dict):
            estimators = raw["search"].get("estimators")
            if isinstance(estimators, list) and estimators and isinstance(estimators[0], dict):
                return {**raw, "estimator": {"name": estimators[0].get("name")}}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.target in names:
            raise ValueError("the target column cannot also be a feature")
        if self.entity_id is not None and (self.entity_id in names or self.entity_id == self.target):
            raise ValueError("entity_id must be a column of its own")
        for estimator in self.search.estimators if self.search else []:
            if estimator.name not in ESTIMATORS[self.task]:
                allowed = ", ".join(sorted(ESTIMATORS[self.task]))
                raise ValueError(f"search estimator {estimator.name!r} is not one of {allowed} for {self.task}")
            unknown = sorted(set(estimator.params) - estimator_parameters(self.task, estimator.name))
            if unknown:
                raise ValueError(f"search estimator {estimator.name!r} does not take parameter(s) {', '.join(unknown)}")
        if self.estimator.name not in ESTIMATORS[self.task]:
            allowed = ", ".join(sorted(ESTIMATORS[self.task]))
            raise ValueError(f"estimator {self.estimator.name!r} is not one of {allowed} for {self.task}")
        if self.classes is not None:
            if self.task != "classification":
                raise ValueError("classes are for classification; a regression target has none")
            labels = [label_text(c) for c in self.classes]
            if len(set(labels)) != len(labels):
                raise ValueError("classes must be distinct")
            if any(isinstance(c, float) and not math.isfinite(c) for c in self.classes):
                raise ValueError("classes must be finite numbers or strings")
        if self.metric not in METRICS[self.task]:
            allowed = ", ".join(sorted(METRICS[self.task]))
            raise ValueError(f"metric {self.metric!r} is not one of {allowed} for {self.task}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == "numeric"]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.task][self.metric]

    @property
    def signature(self) -> list[Feature]:
        """The input a version of this model takes: its features, in order."""
        return list(self.features)

    def trained_as(self, signature: list[Feature], task: Task) -> "ModelSpec":
        """This spec with the signature and task a registered version was trained with."""
        return self.model_copy(update={"features": list(signature) or self.features, "task": task})


def label_text(value: object) -> str:
    """The canonical text of a class label: 1, 1.0 and "1" are one class, as in the feature transformation."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def is_model_name(name: object) -> bool:
    return isinstance(name, str) and re.fullmatch(NAME_PATTERN, name) is not None


def check_model_name(name: str) -> None:
    """UnknownModel for a name no spec can have: no storage read, and never echoed whole."""
    if not is_model_name(name):
        raise UnknownModel(f"no model named {shown(name)}: model names are lowercase letters, digits and dashes")
