"""Delayed labels for served predictions: checked against the model, then stored once.

A label names the request it answers (`request_id`, as the predict answer gives it), the row of that
request (`index`, 0 for the first or only instance) and the true outcome: one of the champion's
classes for classification, a finite number for regression. Labels are checked all together
before anything is written: one bad label refuses the whole body, naming it.

Whether a request id was ever served cannot be known here: captures reach S3 through Firehose
minutes later. Labels are accepted as given; the quality check joins them with the captures and
counts those that match no captured prediction (`unmatched` in the report).
"""

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions.errors import Conflict, InvalidInput, NoChampion, PayloadTooLarge, RequestInvalid, shown
from functions.feedback.store import FeedbackStore, Outcome, StoredLabel
from functions.registry.store import RegistryStore
from functions.spec import check_model_name

MAX_LABELS = 100  # per request: one DynamoDB transaction, so a body is stored whole or not at all
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
MAX_INDEX = 100_000
MAX_LABEL_CHARS = 256


class LabelIn(BaseModel):
    """One label as a client sends it."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(pattern=REQUEST_ID_PATTERN,
                            description="The request_id of the predict answer this label is for.")
    index: int = Field(0, ge=0, lt=MAX_INDEX, description="The row of that request (0: the first instance).")
    label: bool | int | float | Annotated[str, Field(max_length=MAX_LABEL_CHARS)] = Field(
        description="The true outcome: one of the model's classes, or a finite number for a regression model.")

    @property
    def key(self) -> tuple[str, int]:
        return self.request_id, self.index


class LabelBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[LabelIn] = Field(min_length=1, description=f"At most {MAX_LABELS} labels, stored together or "
                                                            "not at all.")


def parse_labels(document: Any) -> list[LabelIn]:
    """The labels of a body: {"request_id", "label", "index"?} or {"labels": [...]} (at most MAX_LABELS)."""
    if isinstance(document, dict) and "labels" in document:
        if isinstance(document["labels"], list) and len(document["labels"]) > MAX_LABELS:
            raise PayloadTooLarge(f"a request may carry at most {MAX_LABELS} labels (got "
                                  f"{len(document['labels'])}); split them, or upload a file under feedback/<model>/")
        try:
            return LabelBatch.model_validate(document).labels
        except ValidationError as error:
            raise InvalidInput(f"the body must be {{\"labels\": [{{\"request_id\", \"label\"}}, ...]}}: "
                               f"{_problems(error)}") from error
    try:
        return [LabelIn.model_validate(document)]
    except ValidationError as error:
        raise InvalidInput(f"the body must be {{\"request_id\": ..., \"label\": ...}} or {{\"labels\": [...]}}: "
                           f"{_problems(error)}") from error


def _problems(error: ValidationError) -> str:
    # The location and pydantic's message only: never the value a client sent (it may be anything).
    return "; ".join(f"{'.'.join(str(p)[:64] for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:5])


def same_value(a: Any, b: Any) -> bool:
    """Equal as JSON values: True is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def checked_label(value: Any, task: str, classes: list[Any] | None) -> Any:
    """The label as stored: the model's own class value (classification), a float (regression); else None."""
    if task == "regression":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        try:
            number = float(value)
        except OverflowError:  # an integer beyond a double
            return None
        return number if math.isfinite(number) else None
    return next((c for c in classes or [] if same_value(c, value)), None)


def check_labels(items: list[LabelIn], task: str, classes: list[Any] | None) -> list[tuple[LabelIn, Any]]:
    """Each label with its stored value; RequestInvalid naming the first few that do not fit the model."""
    checked, bad = [], []
    for position, item in enumerate(items):
        value = checked_label(item.label, task, classes)
        if value is None:
            bad.append(f"labels[{position}] ({shown(item.label, 32)})")
        checked.append((item, value))
    if bad:
        expected = ("a finite number" if task == "regression"
                    else f"one of the model's classes {', '.join(shown(c, 32) for c in (classes or [])[:20])}")
        raise RequestInvalid(f"{len(bad)} label(s) are not {expected}: {', '.join(bad[:5])}")
    seen: dict[tuple[str, int], Any] = {}
    unique = []
    for item, value in checked:
        key = (item.request_id, item.index)
        if key in seen:
            if not same_value(seen[key], value):
                raise InvalidInput(f"request {shown(item.request_id)} row {item.index} has two different labels "
                                   "in this body")
            continue
        seen[key] = value
        unique.append((item, value))
    return unique


def model_labels(registry: RegistryStore, model: str) -> tuple[str, list[Any] | None]:
    """The task and classes labels of `model` are checked against: its champion's."""
    check_model_name(model)
    spec = registry.get_spec(model)  # UnknownModel first
    version = registry.get_alias(model, "champion")
    if version is None:
        raise NoChampion(f"model {model!r} has no champion: it has served no prediction to label")
    record = registry.get_version(model, version)
    return spec.task, record.classes


def record_labels(store: FeedbackStore, registry: RegistryStore, model: str, items: list[LabelIn], *,
                  source: str = "api", now: datetime | None = None) -> dict[str, Any]:
    """Check `items` against the model and store them together. Returns the counts: received, stored (new),
    unchanged (the same label was already there). Raises RequestInvalid / InvalidInput (nothing written),
    Conflict (a row already holds another label: nothing written)."""
    task, classes = model_labels(registry, model)
    unique = check_labels(items, task, classes)
    at = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
    labels = [StoredLabel(model=model, request_id=item.request_id, index=item.index, label=value, received_at=at,
                          source=source) for item, value in unique]
    outcomes = store.put_labels(labels)
    return {"model": model, "received": len(items), **counts(outcomes)}


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    return {"stored": outcomes.count("stored"), "unchanged": outcomes.count("unchanged")}


def conflict(rows: list[tuple[str, int]]) -> Conflict:
    named = ", ".join(f"{shown(request_id)} row {index}" for request_id, index in rows[:5])
    return Conflict(f"{len(rows)} label(s) were already given another value: {named}; a label is written once "
                    "(nothing of this body was stored)")
