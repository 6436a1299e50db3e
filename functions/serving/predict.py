"""Predicting with a loaded champion: instances checked against its signature, then the model.

The check is strict, so a client's mistake is a 422 that names the instance and the field,
never a silent NaN or a failure further on: exactly the signature's features; numeric values
are finite numbers (not booleans) within MAX_NUMERIC_MAGNITUDE (float32's range: models take
float64 since they convert in double precision, but models registered before take float32, and
training data is held to the same range); categorical values are valid Unicode strings (no lone
UTF-16 surrogate, which no UTF-8 text can hold) of at most MAX_CATEGORY_LENGTH characters.
Accepted instances go straight to the model's typed arrays (shared.instances: the values the
training transformation gives, without pandas), and an answer that is not a finite number (an
extreme input the model overflows on) is refused too: a response never carries NaN or infinity.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from functions.errors import RequestInvalid, shown
from functions.serving.model_cache import LoadedModel
from functions.shared.limits import MAX_CATEGORY_LENGTH, MAX_NUMERIC_MAGNITUDE
from functions.spec import Feature

MAX_REPORTED_PROBLEMS = 10  # a message stays readable when a whole batch is wrong
NUMERIC_RANGE = f"between {-MAX_NUMERIC_MAGNITUDE!r} and {MAX_NUMERIC_MAGNITUDE!r}"


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
        if abs(value) > MAX_NUMERIC_MAGNITUDE:  # exact for ints of any size: no float conversion
            return f"is out of range: the model takes numbers {NUMERIC_RANGE}"
        return None
    if not isinstance(value, str):
        return f"must be a string, not {_json_type(value)}"
    if len(value) > MAX_CATEGORY_LENGTH:
        return f"must be a string of at most {MAX_CATEGORY_LENGTH} characters (got {len(value)})"
    return _text_problem(value)


def _text_problem(value: str) -> str | None:
    """Why a string is not valid Unicode text (None when it is)."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # only a lone surrogate (U+D800-U+DFFF) cannot be encoded
        return (f"must be valid Unicode text: character {error.start} is a lone UTF-16 surrogate "
                f"(U+{ord(value[error.start]):04X})")
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
    """The champion's answers for `instances` (validated here first; RequestInvalid when refused)."""
    validate_instances(instances, loaded.signature)
    predictions, probabilities = loaded.predictor.predict_records(instances)  # the training transformation's values
    not_finite = non_finite_answers(predictions, probabilities)
    if not_finite:
        listed = ", ".join(str(index) for index in not_finite[:MAX_REPORTED_PROBLEMS])
        more = f" and {len(not_finite) - MAX_REPORTED_PROBLEMS} more" if len(not_finite) > MAX_REPORTED_PROBLEMS else ""
        raise RequestInvalid(
            f"the model has no finite answer for instance(s) {listed}{more}: their values are too extreme for it "
            "(it overflows); send values nearer to those it was trained on",
            details={"instances": not_finite[:MAX_REPORTED_PROBLEMS]},
        )
    return Prediction(predictions=predictions, probabilities=probabilities)


def non_finite_answers(predictions: Sequence[Any], probabilities: Sequence[Sequence[float]] | None) -> list[int]:
    """The instances whose prediction or probabilities are not finite numbers (NaN, infinity)."""
    rows = probabilities if probabilities is not None else [()] * len(predictions)
    return [index for index, (label, row) in enumerate(zip(predictions, rows, strict=True))
            if not _finite(label) or not all(_finite(p) for p in row)]


def _finite(value: object) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
