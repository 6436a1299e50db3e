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


Batch scoring takes the columnar entry, `predict_columns`: whole columns (numpy arrays) are checked
by the same rules with one numpy pass per column (`check_columns`), turned into the same typed
arrays (shared.instances.column_arrays), scored by the same predictor, and the answers stay numpy
arrays; its answers are `predict`'s for the same rows.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from functions.errors import RequestInvalid, shown
from functions.serving.model_cache import LoadedModel
from functions.shared.instances import Coded, column_arrays
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


def check_columns(columns: Mapping[str, Any], signature: Sequence[Feature]) -> tuple[list[Problem], int]:
    """`check_instances` on whole columns (one 1-D array per feature, all of one length): the same rules, found
    with a numpy pass per column (a value at a time only in a bad column). The first problems, in the order
    `check_instances` gives them, and how many there are in all."""
    kinds = {feature.name: feature.type for feature in signature}
    lengths = {len(column) for column in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"the columns are not of one length: {sorted(lengths)}")
    rows = lengths.pop() if lengths else 0
    found: list[tuple[int, int, Problem]] = []  # (instance, position in check_instances' order, problem)
    total = 0
    fields = [*kinds, *(str(name) for name in columns if name not in kinds)]
    for position, name in enumerate(fields):
        given = columns.get(name)
        column = given.decoded() if isinstance(given, Coded) and kinds.get(name) == "numeric" else given
        if column is None or name not in kinds:
            bad: np.ndarray | None = np.ones(rows, dtype=bool)
        elif isinstance(column, Coded):  # the distinct values checked once, then taken by code
            bad_values = _texts_problems(column.values)
            missing = column.codes < 0
            bad = missing | bad_values[column.codes] if bad_values is not None else missing
            bad = bad if bad.any() else None
        else:
            column = np.asarray(column)
            bad = _numbers_problems(column) if kinds[name] == "numeric" else _texts_problems(column)
        if bad is None:
            continue
        where = np.flatnonzero(bad)
        total += len(where)
        for index in where[:MAX_REPORTED_PROBLEMS].tolist():
            if name not in kinds:
                problem = "is not a feature of this model"
            elif column is None:
                problem = "is missing"
            else:
                value = column.value(index) if isinstance(column, Coded) else column[index]
                problem = _value_problem(_python(value), kinds[name]) or "is invalid"
            found.append((index, position, Problem(index, name, problem)))
    return [problem for *_, problem in sorted(found, key=lambda f: f[:2])][:MAX_REPORTED_PROBLEMS], total


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _numbers_problems(column: np.ndarray) -> np.ndarray | None:
    """The rows of a numeric column that `_value_problem` refuses (None when none is)."""
    if column.dtype.kind in "iu":
        return None  # int64 ends far below float32's range
    if column.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(column) <= MAX_NUMERIC_MAGNITUDE)  # NaN compares false: refused with infinity
        return bad if bad.any() else None
    bad = np.fromiter((_value_problem(v, "numeric") is not None for v in column.tolist()), bool, len(column))
    return bad if bad.any() else None


def _texts_problems(column: np.ndarray) -> np.ndarray | None:
    """The rows of a categorical column that `_value_problem` refuses (None when none is)."""
    values = column.tolist()
    try:
        text = "".join(values)  # TypeError unless every value is a string
    except TypeError:
        text = None
    if text is not None:
        lengths = np.fromiter(map(len, values), np.int64, len(values))
        if not (lengths > MAX_CATEGORY_LENGTH).any() and (text.isascii() or _text_problem(text) is None):
            return None
    bad = np.fromiter((_value_problem(v, "categorical") is not None for v in values), bool, len(values))
    return bad if bad.any() else None


def validate_instances(instances: Sequence[Any], signature: Sequence[Feature]) -> None:
    """Raise RequestInvalid naming the first problems when the instances miss the signature."""
    refuse(check_instances(instances, signature), signature)


def refuse(problems: list[Problem], signature: Sequence[Feature], total: int | None = None) -> None:
    """Raise RequestInvalid naming the first of `problems` (nothing when there is none)."""
    if not problems:
        return
    shown = "; ".join(str(p) for p in problems[:MAX_REPORTED_PROBLEMS])
    more = (len(problems) if total is None else total) - MAX_REPORTED_PROBLEMS
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
    _refuse_not_finite(non_finite_answers(predictions, probabilities))
    return Prediction(predictions=predictions, probabilities=probabilities)


def _refuse_not_finite(not_finite: list[int]) -> None:
    if not_finite:
        listed = ", ".join(str(index) for index in not_finite[:MAX_REPORTED_PROBLEMS])
        more = f" and {len(not_finite) - MAX_REPORTED_PROBLEMS} more" if len(not_finite) > MAX_REPORTED_PROBLEMS else ""
        raise RequestInvalid(
            f"the model has no finite answer for instance(s) {listed}{more}: their values are too extreme for it "
            "(it overflows); send values nearer to those it was trained on",
            details={"instances": not_finite[:MAX_REPORTED_PROBLEMS]},
        )


@dataclass(frozen=True)
class ColumnPrediction:
    predictions: np.ndarray  # (n,): labels or values
    probabilities: np.ndarray | None  # (n, classes) in the order of the model's classes, when classifying


def predict_columns(loaded: LoadedModel, columns: Mapping[str, Any]) -> ColumnPrediction:
    """`predict` on whole columns (one 1-D array per feature): the same checks, arrays and answers, as arrays."""
    problems, total = check_columns(columns, loaded.signature)
    refuse(problems, loaded.signature, total)
    predictor = loaded.predictor
    arrays = column_arrays(columns, loaded.signature, getattr(predictor, "dtypes", None))
    predictions, probabilities = predictor.predict_arrays(arrays)
    finite = np.ones(len(predictions), dtype=bool)
    if predictions.dtype.kind == "f":
        finite &= np.isfinite(predictions)
    if probabilities is not None:
        finite &= np.isfinite(probabilities).all(axis=1)
    if not finite.all():
        _refuse_not_finite(np.flatnonzero(~finite).tolist())
    return ColumnPrediction(predictions=predictions, probabilities=probabilities)


def non_finite_answers(predictions: Sequence[Any], probabilities: Sequence[Sequence[float]] | None) -> list[int]:
    """The instances whose prediction or probabilities are not finite numbers (NaN, infinity)."""
    rows = probabilities if probabilities is not None else [()] * len(predictions)
    return [index for index, (label, row) in enumerate(zip(predictions, rows, strict=True))
            if not _finite(label) or not all(_finite(p) for p in row)]


def _finite(value: object) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
