"""Label files: feedback/<model>/<name>.csv or .jsonl, uploaded to the data bucket.

A CSV file has a header naming request_id and label (and index, optional); a JSON lines file holds
one {"request_id", "label", "index"?} object per line. CSV values are text: a label is matched to
the model's classes by its text (a class 1 and a label "1" match), a regression label is parsed
as a number. The whole file is checked first: one bad row and nothing is stored (the result says
which rows). Valid labels are then stored one by one, each once: a row already labelled the same
way is unchanged, one labelled otherwise is reported as a conflict and left as it was. The result
is written to feedback-results/<model>/<name>.json, and a second delivery of the same upload
changes nothing.
"""

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from functions.errors import Conflict, InvalidInput, MlopsError, ObjectTooLarge, PayloadTooLarge, shown
from functions.feedback.labels import LabelIn, checked_label, model_labels
from functions.feedback.store import FeedbackStore, Outcome, StoredLabel
from functions.registry.store import RegistryStore
from functions.spec import is_model_name
from functions.storage.objects import ObjectStore

INPUT_PREFIX = "feedback/"
RESULTS_PREFIX = "feedback-results/"
SUFFIXES = (".csv", ".jsonl", ".json")
MAX_ROWS = 1_000_000
MAX_SHOWN = 20  # rows named in a result
WRITE_THREADS = 8


def file_model(key: str) -> str:
    """The model a label file is for: feedback/<model>/<name>."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != INPUT_PREFIX.rstrip("/") or not parts[2]:
        raise InvalidInput(f"a label file goes under feedback/<model>/<name>.csv|.jsonl (got {shown(key)})")
    if not is_model_name(parts[1]):
        raise InvalidInput(f"no model is named {shown(parts[1])}: model names are lowercase letters, digits and dashes")
    if not parts[2].lower().endswith(SUFFIXES):
        raise InvalidInput(f"a label file is .csv or .jsonl (got {shown(parts[2])})")
    return parts[1]


def result_key(key: str) -> str:
    return RESULTS_PREFIX + key.removeprefix(INPUT_PREFIX) + ".json"


def _rows(data: bytes, key: str) -> list[dict[str, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput("the label file is not UTF-8 text") from error
    if key.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = set(reader.fieldnames or [])
        if not {"request_id", "label"} <= fields:
            raise InvalidInput("the CSV header must name request_id and label (and index, optional)")
        return [{k: v for k, v in row.items() if k in ("request_id", "label", "index") and v != ""}
                for row in reader]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (ValueError, RecursionError):
            rows.append({"_line": number})  # reported as a bad row below
    return rows


def _as_text_label(value: Any, task: str, classes: list[Any] | None) -> Any:
    """A CSV label (text) as the model's class whose text it is, or as a number (regression)."""
    if task == "regression":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return next((c for c in classes or [] if _text(c) == value), None)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def read_label_file(data: bytes, key: str, task: str, classes: list[Any] | None) -> tuple[list[LabelIn], list[str]]:
    """The file's labels, each checked against the model, and what is wrong with the rows that are not."""
    rows = _rows(data, key)
    if len(rows) > MAX_ROWS:
        raise PayloadTooLarge(f"a label file holds at most {MAX_ROWS} rows (got {len(rows)}); split it")
    text = key.lower().endswith(".csv")
    labels: list[LabelIn] = []
    errors: list[str] = []
    seen: dict[tuple[str, int], Any] = {}
    for number, row in enumerate(rows, 1):
        try:
            item = LabelIn.model_validate(row if isinstance(row, dict) else {"_": row})
        except ValidationError as error:
            errors.append(f"row {number}: " + "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}"
                                                         for e in error.errors()[:3]))
            continue
        value = (_as_text_label(item.label, task, classes) if text and isinstance(item.label, str)
                 else checked_label(item.label, task, classes))
        if value is None:
            errors.append(f"row {number}: label {shown(item.label, 32)} is not "
                          + ("a finite number" if task == "regression" else "one of the model's classes"))
            continue
        if item.key in seen and seen[item.key] != value:
            errors.append(f"row {number}: request {shown(item.request_id)} row {item.index} is labelled twice")
            continue
        seen[item.key] = value
        labels.append(item.model_copy(update={"label": value}))
    return labels, errors


def ingest_file(objects: ObjectStore, store: FeedbackStore, registry: RegistryStore, *, key: str,
                version_id: str | None, max_bytes: int, now: datetime | None = None) -> dict[str, Any]:
    """Store the labels of an uploaded file; the result (also written to S3) counts what happened."""
    model = file_model(key)
    result: dict[str, Any] = {"model": model, "key": key, "version_id": version_id}
    try:
        task, classes = model_labels(registry, model)
        labels, errors = read_label_file(objects.get_bytes(key, version_id=version_id, max_bytes=max_bytes), key,
                                         task, classes)
    except ObjectTooLarge as error:
        result.update(status="refused", reason=f"the file is larger than {max_bytes} bytes ({error.size}); split it")
        objects.put_json(result_key(key), result)
        return result
    except MlopsError as error:
        if error.status >= 500:
            raise  # storage trouble: the event is retried
        result.update(status="refused", reason=error.message)
        objects.put_json(result_key(key), result)
        return result
    if errors:
        result.update(status="refused", reason=f"{len(errors)} row(s) are not valid labels; nothing was stored",
                      errors=errors[:MAX_SHOWN])
        objects.put_json(result_key(key), result)
        return result
    at = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
    stored = [StoredLabel(model=model, request_id=x.request_id, index=x.index, label=x.label, received_at=at,
                          source=key) for x in labels]
    conflicts: list[str] = []

    def put(label: StoredLabel) -> Outcome | None:
        try:
            return store.put_label(label)
        except Conflict:
            conflicts.append(f"request {shown(label.request_id)} row {label.index}")
            return None

    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        outcomes = list(pool.map(put, stored))
    result.update(status="stored", rows=len(labels), stored=outcomes.count("stored"),
                  unchanged=outcomes.count("unchanged"), conflicts=len(conflicts),
                  conflicting=sorted(conflicts)[:MAX_SHOWN])
    objects.put_json(result_key(key), result)
    return result
