"""The data contract of a model, checked before training, with a readable report.

`check_frame` lists every problem at once (a user fixes a file in one go, not one error per
upload); `validate` builds the report, stores it, and fails with all problems in its message.
"""

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from functions.errors import DatasetInvalid, shown
from functions.pipeline.state import DatasetResult, ValidationResult
from functions.shared.limits import MAX_CATEGORY_LENGTH, MAX_NUMERIC_MAGNITUDE
from functions.shared.tabular import read_dataset, read_frame, read_upload
from functions.shared.transform import categories, category
from functions.spec import MAX_CLASSES, ModelSpec
from functions.storage.objects import ObjectStore

MIN_ROWS = 20
WARN_MISSING_FRACTION = 0.5
# Exact copies of a row are reported; past this share of the rows the dataset is refused: a model
# graded on copies of its training rows looks far better than it is.
MAX_DUPLICATE_FRACTION = 0.5


def _not_numbers(series: pd.Series) -> pd.Series:
    """The present values of `series` that are not numbers."""
    if pd.api.types.is_numeric_dtype(series):  # booleans included
        return series.iloc[0:0]
    present = series[series.notna()]
    parsed = pd.to_numeric(present, errors="coerce")
    return present[parsed.isna()]


def _not_numeric(what: str, series: pd.Series) -> str | None:
    """The problem of a column that should be numeric, or None when it is."""
    bad = _not_numbers(series)
    if not len(bad):
        return None
    return f"{what} should be numeric but {len(bad)} value(s) are not numbers (e.g. {shown(bad.iloc[0], 40)})"


def _as_numbers(series: pd.Series, parse_text: bool) -> pd.Series:
    """The numbers of `series` as floats (numbers written as text count when `parse_text`); empty for booleans."""
    if pd.api.types.is_bool_dtype(series) or not (parse_text or pd.api.types.is_numeric_dtype(series)):
        return pd.Series([], dtype="float64")
    if not pd.api.types.is_numeric_dtype(series):
        series = pd.to_numeric(series[series.notna()], errors="coerce")
    return series.astype("float64")


def _infinite(series: pd.Series, parse_text: bool) -> int:
    """How many values of `series` are +-inf (numbers written as text count when `parse_text`)."""
    return int((_as_numbers(series, parse_text).abs() == float("inf")).sum())


def _out_of_range(what: str, series: pd.Series) -> str | None:
    """The problem of numbers that are infinite or too large for a served model (float32), or None."""
    magnitude = _as_numbers(series, parse_text=True).abs()
    infinite = int((magnitude == float("inf")).sum())
    too_large = int(((magnitude > MAX_NUMERIC_MAGNITUDE) & (magnitude != float("inf"))).sum())
    found = [f"{infinite} infinite value(s)"] * bool(infinite) + [
        f"{too_large} value(s) beyond +-{MAX_NUMERIC_MAGNITUDE:.7g}"] * bool(too_large)
    if not found:
        return None
    return (f"{what} has {' and '.join(found)}: numbers must be finite and within +-{MAX_NUMERIC_MAGNITUDE:.7g}, "
            "the range of the served model (float32)")


def _too_long(what: str, series: pd.Series, kind: str) -> str | None:
    """The problem of text values longer than MAX_CATEGORY_LENGTH characters, or None."""
    if pd.api.types.is_numeric_dtype(series):  # a number's text is short
        return None
    present = series[series.notna()]
    if pd.api.types.infer_dtype(present, skipna=False) == "string":  # text: measured without a call per value
        lengths = present.str.len()
    else:
        lengths = present.map(lambda value: len(str(value)))
    long = int((lengths > MAX_CATEGORY_LENGTH).sum())
    if not long:
        return None
    return (f"{what} has {long} {kind}(s) longer than {MAX_CATEGORY_LENGTH} characters "
            f"(the longest {int(lengths.max())}); at most {MAX_CATEGORY_LENGTH} are supported")


def _label(value: object) -> str:
    """A label as a message shows it: text quoted (and cut), numbers as they are."""
    value = value.item() if isinstance(value, np.generic) else value
    return shown(value, 20) if isinstance(value, str) else repr(value)


def _class_problems(name: str, classes: list, target: pd.Series) -> list[str]:
    """The labels of `target` against the spec's classes: none other, and each of them present."""
    present = target[target.notna()]
    texts = categories(present)
    counts = texts.value_counts()
    first = dict(zip(texts.iloc[::-1], present.iloc[::-1], strict=True))  # each label as the file writes it
    expected = {category(label) for label in classes}
    listed = ", ".join(map(_label, classes))
    problems = []
    other = counts[~counts.index.isin(list(expected))]
    if len(other):
        found = ", ".join(f"{_label(first[text])} ({count} rows)" for text, count in other.iloc[:5].items())
        more = f" and {len(other) - 5} more" if len(other) > 5 else ""
        problems.append(f"the target {name!r} has label(s) that are not among the spec's classes [{listed}]: "
                        f"{found}{more}")
    absent = [label for label in classes if category(label) not in counts.index]
    if absent:
        problems.append(f"the target {name!r} has no rows of the spec's class(es) {', '.join(map(_label, absent))}: "
                        "a model must learn every class it predicts")
    return problems


def check_frame(frame: pd.DataFrame, spec: ModelSpec, min_rows: int = MIN_ROWS) -> tuple[list[str], list[str]]:
    """(problems, warnings) of `frame` against the spec's data contract."""
    problems: list[str] = []
    warnings: list[str] = []
    columns = set(frame.columns)
    if len(frame) < min_rows:
        problems.append(f"the dataset has {len(frame)} row(s); at least {min_rows} are needed")
    if spec.target not in columns:
        problems.append(f"the target column {spec.target!r} is missing")
    missing = [name for name in spec.feature_names if name not in columns]
    if missing:
        problems.append(f"missing feature column(s): {', '.join(missing)}")
    if spec.entity_id and spec.entity_id not in columns:
        problems.append(f"the entity id column {spec.entity_id!r} is missing")

    if duplicated := int(frame.duplicated().sum()):
        share = f"{duplicated} of {len(frame)} rows ({duplicated / len(frame):.1%}) are exact duplicates of another row"
        if duplicated / len(frame) > MAX_DUPLICATE_FRACTION:
            problems.append(f"{share}; at most {MAX_DUPLICATE_FRACTION:.0%} may be: remove the repeated rows")
        else:
            warnings.append(share)

    for feature in spec.features:
        if feature.name not in columns:
            continue
        series = frame[feature.name]
        present = int(series.notna().sum())
        if present == 0:
            problems.append(f"feature {feature.name!r} has no values")
            continue
        if feature.type == "numeric":
            if problem := (_not_numeric(f"feature {feature.name!r}", series)
                           or _out_of_range(f"feature {feature.name!r}", series)):
                problems.append(problem)
        elif problem := _too_long(f"feature {feature.name!r}", series, "value"):
            problems.append(problem)
        if len(frame) and (len(frame) - present) / len(frame) > WARN_MISSING_FRACTION:
            warnings.append(f"feature {feature.name!r} is missing in {len(frame) - present} of {len(frame)} rows")

    if spec.entity_id in columns and (
            problem := _too_long(f"the entity id {spec.entity_id!r}", frame[spec.entity_id], "value")):
        problems.append(problem)

    if spec.target in columns:
        target = frame[spec.target]
        absent = int(target.isna().sum())
        if absent:
            problems.append(f"the target {spec.target!r} is missing in {absent} row(s)")
        if spec.task == "regression":
            if problem := (_not_numeric(f"the target {spec.target!r}", target)
                           or _out_of_range(f"the target {spec.target!r}", target)):
                problems.append(problem)
        else:
            # A float label of inf is no class scikit-learn accepts (text labels "inf" are fine).
            if infinite := _infinite(target, parse_text=False):
                problems.append(f"the target {spec.target!r} has {infinite} infinite value(s)")
            if problem := _too_long(f"the target {spec.target!r}", target, "label"):
                problems.append(problem)
            if spec.classes is not None:
                problems.extend(_class_problems(spec.target, spec.classes, target))
            classes = target.dropna().nunique()
            if classes < 2 and len(frame):
                problems.append(f"the target {spec.target!r} has {classes} class(es); classification needs at least 2")
            elif classes > MAX_CLASSES:
                problems.append(
                    f"the target {spec.target!r} has {classes} distinct values; more than {MAX_CLASSES} classes "
                    "suggests a regression target or an id column"
                )
    return problems, warnings


def validate(objects: ObjectStore, *, spec: ModelSpec, key: str, version_id: str | None, dataset_id: str | None,
             run_id: str, data: bytes) -> ValidationResult:
    """Check `data` (the uploaded file) against the contract; store the report; raise DatasetInvalid if it fails."""
    try:
        frame = read_dataset(data, key)
    except DatasetInvalid as error:
        return validate_frame(objects, spec=spec, key=key, version_id=version_id, dataset_id=dataset_id,
                              run_id=run_id, frame=None, unreadable=error.message)
    return validate_frame(objects, spec=spec, key=key, version_id=version_id, dataset_id=dataset_id, run_id=run_id,
                          frame=frame)


def validate_frame(objects: ObjectStore, *, spec: ModelSpec, key: str, version_id: str | None,
                   dataset_id: str | None, run_id: str, frame: pd.DataFrame | None,
                   unreadable: str | None = None) -> ValidationResult:
    """Check the parsed upload (`frame`; None when it could not be parsed, for the reason `unreadable`) against
    the contract; store the report; raise DatasetInvalid if it fails."""
    readable = frame is not None
    if frame is not None:
        problems, warnings = check_frame(frame, spec)
        rows = len(frame)
    else:
        problems, warnings, rows = [unreadable or f"the dataset {key.rsplit('/', 1)[-1]!r} could not be read"], [], 0
    report = {
        "model": spec.name,
        "run_id": run_id,
        "dataset": {"bucket": objects.bucket, "key": key, "version_id": version_id, "dataset_id": dataset_id,
                    "rows": rows},
        "contract": {
            "target": spec.target,
            "task": spec.task,
            "features": [f.model_dump() for f in spec.features],
            "entity_id": spec.entity_id,
            "classes": spec.classes,
            "min_rows": MIN_ROWS,
            "max_duplicate_fraction": MAX_DUPLICATE_FRACTION,
        },
        "passed": not problems,
        "problems": problems,
        "warnings": warnings,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    report_key = f"runs/{spec.name}/{run_id}/validation.json"
    # The report is stored first, so a failed run always has its explanation next to it.
    objects.put_json(report_key, report)
    if not readable:
        raise DatasetInvalid(problems[0], details={"report_key": report_key, "problems": problems})
    if problems:
        raise DatasetInvalid(
            f"the dataset {key.rsplit('/', 1)[-1]!r} does not meet the data contract of model {spec.name!r}: "
            + "; ".join(problems),
            details={"report_key": report_key, "problems": problems},
        )
    return ValidationResult(report_key=report_key, passed=True, warnings=warnings)


def validate_upload(objects: ObjectStore, *, spec: ModelSpec, key: str, version_id: str | None,
                    dataset_id: str | None, run_id: str, dataset: DatasetResult | None = None) -> ValidationResult:
    """Validate the run's upload as RegisterDataset parsed it: its Parquet copy (verified by sha256), or the
    reason it could not be parsed; the upload itself only for a state from before that copy existed."""
    if dataset is not None and dataset.frame_key:
        frame = read_frame(objects, dataset.frame_key, dataset.frame_sha256)
        return validate_frame(objects, spec=spec, key=key, version_id=version_id, dataset_id=dataset_id,
                              run_id=run_id, frame=frame)
    if dataset is not None and dataset.unreadable:
        return validate_frame(objects, spec=spec, key=key, version_id=version_id, dataset_id=dataset_id,
                              run_id=run_id, frame=None, unreadable=dataset.unreadable)
    data = read_upload(objects, key, version_id)
    return validate(objects, spec=spec, key=key, version_id=version_id, dataset_id=dataset_id, run_id=run_id,
                    data=data)
