"""The model spec: what to train for a model name.

Registered through the CLI and stored in the registry table, so a new model needs no
redeploy. Every part reads it: data validation (the contract), features, training, serving
(the input signature) and monitoring.
"""

import math
import re
import unicodedata
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


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    task: Task
    target: ColumnName
    features: list[Feature] = Field(min_length=1, max_length=500)
    estimator: Estimator
    metric: str
    entity_id: ColumnName | None = None
    # Classification: the labels the model predicts (its output shape). Validation refuses rows of
    # other labels, and a dataset that lacks one; unset, the dataset's labels decide.
    classes: list[bool | int | float | str] | None = Field(None, min_length=2, max_length=MAX_CLASSES)
    holdout_fraction: float = Field(0.2, gt=0.05, lt=0.5)
    # auto: a version that passes the promotion gate is Approved and becomes champion; manual: it becomes the
    # challenger, PendingManualApproval, until a person approves it and promotes it (`mlops models approve|promote`).
    approval: Literal["auto", "manual"] = "auto"
    description: str = Field("", max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.target in names:
            raise ValueError("the target column cannot also be a feature")
        if self.entity_id is not None and (self.entity_id in names or self.entity_id == self.target):
            raise ValueError("entity_id must be a column of its own")
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
