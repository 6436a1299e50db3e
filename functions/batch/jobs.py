"""Batch inference: a CSV or Parquet file under batch/<model>/ scored into Parquet, part by part.

A job is named after the uploaded object version (a duplicate event starts nothing) and runs in
three steps, each a function of the batch state machine:

- plan: the file is read once (CSV or Parquet, at most `max_bytes`), checked against the
  signature of the model's champion column by column (every feature present, numbers that are
  finite numbers within the model's range, text of at most MAX_CATEGORY_LENGTH characters, no
  empty cell), and split into parts of at most `rows_per_part` rows stored as typed Parquet under
  the job's prefix. The champion's version is pinned here: every part is scored by that version
  even if the champion moves while the job runs.
- score (one Distributed Map item per part): the part's columns go through the columnar predict entry
  (functions.serving.predict.predict_columns: the online rules checked on whole columns, the same typed
  arrays and model as online) with the pinned version loaded as serving loads it (load_predictor,
  sha256-verified); the answers stay numpy arrays and are written by pyarrow as part-NNNNN.parquet
  with the model, version, a request id per row (<job id>:<row>) and the row's index in the input file. A part
  the model refuses writes a report with the reason instead (the job then fails with it).
- complete: every part's report read; all scored -> _SUCCESS (a JSON manifest) written last, so
  a reader that waits for it never reads a half-written job; else the job fails naming the part.

A failure anywhere writes _ERROR.json (job, input, reason) in the job's prefix and fails the
execution with the same reason. Names starting with "_" are skipped by Parquet dataset readers
(pyarrow, pandas, Spark), so `<job prefix>/` read as a dataset holds only the scored parts.
"""

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from pydantic import BaseModel

from functions.errors import DatasetInvalid, NoChampion, NotFound, ObjectTooLarge, RequestInvalid, shown
from functions.pipeline.failures import step_error
from functions.records import ModelVersion
from functions.registry.artifacts import load_predictor
from functions.registry.store import RegistryStore
from functions.serving.model_cache import LoadedModel
from functions.serving.predict import ColumnPrediction, predict_columns
from functions.shared.instances import Coded
from functions.shared.limits import MAX_CATEGORY_LENGTH, MAX_NUMERIC_MAGNITUDE
from functions.spec import Feature, is_model_name
from functions.storage.objects import ObjectStore, read_version, sha256

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from functions.pipeline.executions import Executions

INPUT_PREFIX = "batch/"
OUTPUT_PREFIX = "batch-output/"
SUCCESS = "_SUCCESS"  # the manifest, written last
ERROR_REPORT = "_ERROR.json"
ITEMS = "_items.json"  # the Distributed Map's items: one per part
MAX_REASON_CHARS = 1_000  # a Step Functions cause holds 32 KB; a reason is read by people
MAX_SHOWN_ROWS = 5
PARQUET = "application/vnd.apache.parquet"


class BatchJob(BaseModel):
    """What the batch state machine is started with (and each step reads)."""

    job_id: str
    model: str
    bucket: str
    key: str
    version_id: str | None = None


class Part(BaseModel):
    part: int
    first_row: int  # the part's first row, counted from 0 in the input file
    rows: int
    input_key: str


class BatchPlan(BaseModel):
    job_id: str
    model: str
    version: int
    task: str
    classes: list[Any] | None
    input_key: str
    input_version_id: str | None
    output_prefix: str
    items_key: str
    parts: int
    rows: int


class PartResult(BaseModel):
    part: int
    rows: int
    key: str | None = None  # the scored part (None when the part was refused)
    sha256: str | None = None
    error: str | None = None


class BatchResult(BaseModel):
    job_id: str
    model: str
    version: int
    rows: int
    parts: int
    output_prefix: str
    manifest_key: str


def job_id_for(model: str, bucket: str, key: str, version_id: str | None) -> str:
    """The job an upload starts (its execution's name): the same object version always gives the same id."""
    return f"{model}-{sha256(f'batch:{bucket}/{key}/{version_id}'.encode())[:16]}"


def model_of_key(key: str) -> str | None:
    """The model a batch file is for: batch/<model>/<file>; None for any other key."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != INPUT_PREFIX.rstrip("/") or not parts[2] or not is_model_name(parts[1]):
        return None
    return parts[1]


def output_prefix(model: str, key: str, job_id: str) -> str:
    """Where a job writes: batch-output/<model>/<input file name>/<job id>/ (a new upload, a new job)."""
    return f"{OUTPUT_PREFIX}{model}/{unquote_plus(key).rsplit('/', 1)[-1]}/{job_id}/"


def part_key(prefix: str, part: int) -> str:
    return f"{prefix}part-{part:05d}.parquet"


def report_key(prefix: str, part: int) -> str:
    return f"{prefix}_parts/part-{part:05d}.json"


def start_job(executions: "Executions", *, bucket: str, key: str, version_id: str | None) -> dict[str, Any]:
    """Start the job of an uploaded batch file; a duplicate event finds its execution there and starts nothing."""
    model = model_of_key(key)
    if model is None:
        return {"started": False, "reason": f"{key} is not under {INPUT_PREFIX}<model>/<file>"}
    job = BatchJob(job_id=job_id_for(model, bucket, key, version_id), model=model, bucket=bucket, key=key,
                   version_id=version_id)
    return {"started": executions.start(job.job_id, job.model_dump()), "job_id": job.job_id, "model": model}


# --- plan ---------------------------------------------------------------------------------------------


def plan_job(objects: ObjectStore, registry: RegistryStore, job: BatchJob, *, max_bytes: int,
             rows_per_part: int) -> BatchPlan:
    """Check the file against the champion's signature, pin the champion and stage the parts."""
    from functions.shared.tabular import read_dataset

    record = champion_record(registry, job.model)
    spec = record.trained_spec(registry.get_spec(job.model))
    data = _read_input(objects, job, max_bytes)
    frame = read_dataset(data, job.key)  # CSV or Parquet, empty files, nested columns: DatasetInvalid
    name = job.key.rsplit("/", 1)[-1]
    features = typed_features(frame, spec.signature, name)
    prefix = output_prefix(job.model, job.key, job.job_id)
    parts = []
    for number, first in enumerate(range(0, len(features), rows_per_part)):
        chunk = features.iloc[first:first + rows_per_part]
        key = f"{prefix}_input/part-{number:05d}.parquet"
        objects.put_frame(key, chunk.reset_index(drop=True))
        parts.append(Part(part=number, first_row=first, rows=len(chunk), input_key=key))
    items_key = f"{prefix}{ITEMS}"
    objects.put_json(items_key, [p.model_dump() for p in parts])
    return BatchPlan(job_id=job.job_id, model=job.model, version=record.version, task=record.task,
                     classes=record.classes, input_key=job.key, input_version_id=job.version_id,
                     output_prefix=prefix, items_key=items_key, parts=len(parts), rows=len(features))


def champion_record(registry: RegistryStore, model: str) -> ModelVersion:
    version = registry.get_alias(model, "champion")
    if version is None:
        registry.get_spec(model)  # UnknownModel when there is no such model at all
        raise NoChampion(f"model {model!r} has no champion yet: train it before scoring a batch with it")
    return registry.get_version(model, version)


def _read_input(objects: ObjectStore, job: BatchJob, max_bytes: int) -> bytes:
    try:
        return read_version(objects, job.key, job.version_id, max_bytes=max_bytes, what="batch file")
    except ObjectTooLarge as error:
        raise DatasetInvalid(f"the batch file {shown(job.key.rsplit('/', 1)[-1])} holds {error.size} bytes, more "
                             f"than the {max_bytes} a batch job takes: split it into several files") from error


def typed_features(frame: "pd.DataFrame", signature: list[Feature], name: str) -> "pd.DataFrame":
    """The signature's columns, numbers as float64 and text as str, or DatasetInvalid naming every bad column.

    The rules are the predict API's, checked on whole columns (a CSV has no types: a categorical
    column of digits is text, as its values would be in JSON).
    """
    import pandas as pd

    from functions.shared.transform import categories

    missing = [f.name for f in signature if f.name not in frame.columns]
    if missing:
        expected = ", ".join(f"{f.name} ({f.type})" for f in signature)
        raise DatasetInvalid(f"the batch file {shown(name)} lacks the model's feature column(s) "
                             f"{', '.join(shown(m, 40) for m in missing)}; the model takes [{expected}]")
    problems: list[str] = []
    columns = {}
    for feature in signature:
        column = frame[feature.name]
        empty = column.isna().to_numpy()
        if empty.any():
            problems.append(f"column {shown(feature.name, 40)} has empty cells at {_rows(empty)}")
            continue
        if feature.type == "numeric":
            problem, values = _numbers(column)
            if problem:
                problems.append(f"column {shown(feature.name, 40)} {problem}")
                continue
            columns[feature.name] = values
        else:
            text = categories(column)
            too_long = text.str.len().to_numpy() > MAX_CATEGORY_LENGTH
            if too_long.any():
                problems.append(f"column {shown(feature.name, 40)} has text longer than {MAX_CATEGORY_LENGTH} "
                                f"characters at {_rows(too_long)}")
                continue
            columns[feature.name] = text
    if problems:
        raise DatasetInvalid(f"the batch file {shown(name)} does not match the model's signature: "
                             + "; ".join(problems))
    return pd.DataFrame(columns)[[f.name for f in signature]]


def _numbers(column: "pd.Series") -> tuple[str | None, Any]:
    import numpy as np
    import pandas as pd

    if column.dtype == bool or not pd.api.types.is_numeric_dtype(column.dtype):
        numeric = pd.to_numeric(column, errors="coerce") if column.dtype != bool else column.isna()
        not_numbers = numeric.isna().to_numpy() if column.dtype != bool else np.ones(len(column), dtype=bool)
        first = int(np.flatnonzero(not_numbers)[0])
        return (f"must hold numbers, not text or booleans, at {_rows(not_numbers)} "
                f"(row {first}: {shown(column.iloc[first], 40)})"), None
    values = column.to_numpy(dtype=np.float64)
    # An int64 past float32's range, or an infinite float: what the online API refuses too.
    out_of_range = ~np.isfinite(values) | (np.abs(values) > MAX_NUMERIC_MAGNITUDE)
    if out_of_range.any():
        return (f"holds values that are infinite or beyond the model's range (+-{MAX_NUMERIC_MAGNITUDE!r}) at "
                f"{_rows(out_of_range)}"), None
    return None, values


def _rows(mask: Any, offset: int = 0) -> str:
    """Rows of the input file (counted from 0, the header not counted) where `mask` is true, the first few."""
    import numpy as np

    where = np.flatnonzero(mask)
    shown_rows = ", ".join(str(offset + int(i)) for i in where[:MAX_SHOWN_ROWS])
    more = f" and {len(where) - MAX_SHOWN_ROWS} more" if len(where) > MAX_SHOWN_ROWS else ""
    return f"row{'s' if len(where) > 1 else ''} {shown_rows}{more}"


# --- score --------------------------------------------------------------------------------------------


@dataclass
class VersionCache:
    """Model versions loaded once per execution environment: a version never changes, so no TTL."""

    loaded: dict[tuple[str, int], LoadedModel] = field(default_factory=dict)

    def get(self, registry: RegistryStore, objects: ObjectStore, model: str, version: int) -> LoadedModel:
        cached = self.loaded.get((model, version))
        if cached is None:
            record = registry.get_version(model, version)
            served = record.trained_spec(registry.get_spec(model))
            cached = LoadedModel(model=model, version=version, spec=served,
                                 predictor=load_predictor(objects, record, served))
            self.loaded = {(model, version): cached}  # one model at a time: a part never needs two
        return cached


def score_part(objects: ObjectStore, loaded: LoadedModel, job_id: str, prefix: str, part: Part,
               predict_rows: Callable[[LoadedModel, Mapping[str, Any]], ColumnPrediction] = predict_columns,
               ) -> PartResult:
    """Score one part with the columnar predict entry; a part the model refuses reports why (not an error)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Categorical columns as their dictionary (codes and distinct values): no Python string per row.
    categorical = [f.name for f in loaded.signature if f.type == "categorical"]
    table = pq.ParquetFile(pa.BufferReader(objects.get_bytes(part.input_key)), read_dictionary=categorical).read()
    columns = part_columns(table)
    try:
        answer = predict_rows(loaded, columns)
    except RequestInvalid as error:
        result = PartResult(part=part.part, rows=part.rows, error=_refusal(error, part))
        objects.put_json(report_key(prefix, part.part), result.model_dump())
        return result
    table = answers_table(loaded, job_id, part.first_row, answer.predictions,
                          answer.probabilities if loaded.spec.task == "classification" else None)
    key = part_key(prefix, part.part)
    digest = objects.put_bytes(key, parquet_bytes(table), content_type=PARQUET)
    result = PartResult(part=part.part, rows=table.num_rows, key=key, sha256=digest)
    objects.put_json(report_key(prefix, part.part), result.model_dump())
    return result


def part_columns(table: "pa.Table") -> dict[str, Any]:
    """A part's columns for predict_columns: numbers as numpy arrays, dictionary columns as Coded."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.unify_dictionaries()  # one dictionary per column, whatever the chunks
    columns: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        if not pa.types.is_dictionary(column.type):
            columns[name] = column.to_numpy()
            continue
        chunks = column.chunks
        codes = [pc.fill_null(chunk.indices, -1).to_numpy() for chunk in chunks]
        values = chunks[0].dictionary.to_numpy(zero_copy_only=False) if chunks else np.array([], dtype=object)
        columns[name] = Coded(codes=np.concatenate(codes) if codes else np.zeros(0, np.int64), values=values)
    return columns


def _refusal(error: RequestInvalid, part: Part) -> str:
    """The refusal in rows of the input file (the predict entry counts instances from 0 within the part)."""
    problems = error.details.get("problems") or []
    if problems and all(isinstance(p, dict) and "instance" in p for p in problems):
        listed = "; ".join(f"row {part.first_row + int(p['instance'])}: field {shown(p.get('field'), 40)} "
                           f"{p.get('problem')}" for p in problems[:MAX_SHOWN_ROWS])
        return f"the model refused rows of part {part.part}: {listed}"
    instances = error.details.get("instances")
    if instances:
        rows = ", ".join(str(part.first_row + int(i)) for i in instances[:MAX_SHOWN_ROWS])
        return f"the model has no finite answer for row(s) {rows}: their values are too extreme for it"
    return f"the model refused part {part.part} (rows {part.first_row} to {part.first_row + part.rows - 1})"


def answers_table(loaded: LoadedModel, job_id: str, first_row: int, predictions: "np.ndarray",
                  probabilities: "np.ndarray | None") -> "pa.Table":
    """The part's output, built from the answers' arrays (no Python object per row but the request ids)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    count = len(predictions)
    rows = pa.array(np.arange(first_row, first_row + count, dtype=np.int64))
    columns: dict[str, Any] = {
        # <job id>:<row>: the job's prefix put before each row's digits (a third of a per-row join's time)
        "request_id": pc.binary_replace_slice(rows.cast(pa.string()), start=0, stop=0, replacement=f"{job_id}:"),
        "row": rows,
        "model": pa.DictionaryArray.from_arrays(pa.array(np.zeros(count, dtype=np.int32)), pa.array([loaded.model])),
        "version": pa.array(np.full(count, loaded.version, dtype=np.int64)),
        "prediction": pa.array(predictions),
    }
    if probabilities is not None:
        width = probabilities.shape[1] if probabilities.ndim == 2 else 0
        offsets = pa.array(np.arange(0, count * width + 1, width or 1, dtype=np.int32)[:count + 1])
        columns["probabilities"] = pa.ListArray.from_arrays(offsets, pa.array(probabilities.ravel(), pa.float64()))
    return pa.table(columns)


def parquet_bytes(table: "pa.Table") -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    # Dictionaries only where values repeat: a dictionary tried on the probabilities took two thirds of the write.
    repeated = [name for name in ("model", "version") if name in table.column_names]
    if "probabilities" in table.column_names:  # a classifier's labels repeat too
        repeated.append("prediction")
    # Statistics where a reader filters on them (rows, versions, labels), not on each request id's text.
    statistics = [name for name in table.column_names if name not in {"request_id", "probabilities"}]
    pq.write_table(table, buffer, use_dictionary=repeated, write_statistics=statistics)
    return buffer.getvalue()


# --- complete, or fail --------------------------------------------------------------------------------


def complete_job(objects: ObjectStore, plan: BatchPlan) -> BatchResult:
    """The manifest, once every part is scored (written last); DatasetInvalid naming a refused or missing part."""
    results: list[PartResult] = []
    for number in range(plan.parts):
        try:
            result = PartResult.model_validate(objects.get_json(report_key(plan.output_prefix, number)))
        except NotFound:
            raise DatasetInvalid(f"part {number} of batch job {plan.job_id} was not scored (see the logs of the "
                                 "ScoreBatchPart function)") from None
        if result.error:
            raise DatasetInvalid(result.error)
        results.append(result)
    rows = sum(r.rows for r in results)
    manifest = {
        "job_id": plan.job_id, "status": "SUCCEEDED", "model": plan.model, "version": plan.version,
        "task": plan.task, "classes": plan.classes, "input": {"key": plan.input_key,
                                                              "version_id": plan.input_version_id},
        "rows": rows,
        "columns": ["request_id", "row", "model", "version", "prediction"]
        + (["probabilities"] if plan.task == "classification" else []),
        "parts": [{"key": r.key, "rows": r.rows, "sha256": r.sha256} for r in results],
        "completed_at": datetime.now(UTC).isoformat(),
    }
    manifest_key = f"{plan.output_prefix}{SUCCESS}"
    objects.put_json(manifest_key, manifest)
    return BatchResult(job_id=plan.job_id, model=plan.model, version=plan.version, rows=rows,
                       parts=plan.parts, output_prefix=plan.output_prefix, manifest_key=manifest_key)


def record_failure(objects: ObjectStore, job: BatchJob, error: Mapping[str, Any] | None) -> dict[str, str]:
    """_ERROR.json in the job's prefix (no _SUCCESS is ever written for it); returns the reason."""
    reason = failure_reason(error, job.job_id)
    prefix = output_prefix(job.model, job.key, job.job_id) if is_model_name(job.model) else f"{OUTPUT_PREFIX}_invalid/"
    report_key_ = f"{prefix}{ERROR_REPORT}"
    objects.put_json(report_key_, {"job_id": job.job_id, "status": "FAILED", "model": job.model,
                                   "input": {"key": job.key, "version_id": job.version_id}, "reason": reason,
                                   "failed_at": datetime.now(UTC).isoformat()})
    return {"reason": reason, "report_key": report_key_}


def failure_reason(error: Mapping[str, Any] | None, job_id: str) -> str:
    """Why a job failed, for its user: a domain error's own message, never internal details."""
    failed = step_error(dict(error or {}))
    name, error_type = failed.name, failed.error_type
    if failed.domain_message:
        return failed.domain_message[:MAX_REASON_CHARS]
    if name in {"States.Timeout", "States.HeartbeatTimeout"} or error_type == "Sandbox.Timedout":
        return f"batch job {job_id} timed out; see its execution history"
    if name == "States.ExceedToleratedFailureThreshold":
        return f"parts of batch job {job_id} could not be scored; see the logs of the ScoreBatchPart function"
    return f"internal error in batch job {job_id}; see the logs of its functions"
