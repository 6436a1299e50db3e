"""Predicting with a loaded champion: instances checked against its signature, then the model.

The check is strict, so a client's mistake is a 422 that names the instance and the field,
never a silent NaN: exactly the signature's features; numeric values are finite numbers
(not booleans); categorical values are strings of at most MAX_CATEGORY_LENGTH characters.
Accepted instances go through the one feature transformation shared with training.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from functions.errors import RequestInvalid, shown
from functions.serving.model_cache import LoadedModel
from functions.spec import Feature

MAX_CATEGORY_LENGTH = 256
MAX_REPORTED_PROBLEMS = 10  # a message stays readable when a whole batch is wrong


@dataclass(frozen=True)
class Problem:
    instance: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"instance {self.instance}: field {shown(self.field)} {self.problem}"


def _value_problem(value: object, kind: str) -> str | None:
    if kind == "numeric":
        # bool is an int in Python, but True is not a number a client means to send
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, not {_json_type(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number (NaN and infinity are not allowed)"
        if isinstance(value, int) and abs(value) > 2**53:
            return "is too large to be a number the model can use"
        return None
    if not isinstance(value, str):
        return f"must be a string, not {_json_type(value)}"
    if len(value) > MAX_CATEGORY_LENGTH:
        return f"must be a string of at most {MAX_CATEGORY_LENGTH} characters (got {len(value)})"
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "an unsupported value"


def check_instances(instances: Sequence[Any], signature: Sequence[Feature]) -> list[Problem]:
    """Every way the instances miss the signature (empty when they match it)."""
    kinds = {feature.name: feature.type for feature in signature}
    problems: list[Problem] = []
    for index, instance in enumerate(instances):
        if not isinstance(instance, Mapping):
            problems.append(Problem(index, "*", f"must be an object of features, not {_json_type(instance)}"))
            continue
        for name, kind in kinds.items():
            if name not in instance:
                problems.append(Problem(index, name, "is missing"))
            else:
                problem = _value_problem(instance[name], kind)
                if problem:
                    problems.append(Problem(index, name, problem))
        for name in instance:
            if name not in kinds:
                problems.append(Problem(index, str(name), "is not a feature of this model"))
    return problems


def validate_instances(instances: Sequence[Any], signature: Sequence[Feature]) -> None:
    """Raise RequestInvalid naming the first problems when the instances miss the signature."""
    problems = check_instances(instances, signature)
    if not problems:
        return
    shown = "; ".join(str(p) for p in problems[:MAX_REPORTED_PROBLEMS])
    more = len(problems) - MAX_REPORTED_PROBLEMS
    suffix = f"; and {more} more problem(s)" if more > 0 else ""
    expected = ", ".join(f"{f.name} ({f.type})" for f in signature)
    raise RequestInvalid(
        f"the instances do not match the signature of the model [{expected}]: {shown}{suffix}",
        details={"problems": [p.__dict__ for p in problems[:MAX_REPORTED_PROBLEMS]]},
    )


@dataclass(frozen=True)
class Prediction:
    predictions: list
    probabilities: list[list[float]] | None


def predict(loaded: LoadedModel, instances: Sequence[Mapping]) -> Prediction:
    """The champion's answers for `instances` (validated here first)."""
    validate_instances(instances, loaded.signature)
    names = [feature.name for feature in loaded.signature]
    frame = pd.DataFrame.from_records(list(instances), columns=names)
    predictions, probabilities = loaded.predictor.predict(frame)  # applies the training transformation
    return Prediction(predictions=predictions, probabilities=probabilities)
