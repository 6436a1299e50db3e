"""Batch inference: the batch job's own domain code, in-process, against plain scikit-learn on the same rows.

The model is the serving bench's (bench.serving._trained: the demo's churn spec, trained with the project's
code, saved and loaded as the pipeline registers and serves it). The rows are BATCH_ROWS synthetic customers.
Storage is an in-memory object store (the functions' S3 adapter on AWS), so the figures are the code's.

batch_score_<n>_rows_ms
    ours:     functions.batch.jobs.score_part over the job's staged parts (read the part's Parquet with pyarrow,
              the columnar predict entry predict_columns: the online rules checked on whole columns, the typed
              arrays, the ONNX model; the answers' arrays written as Parquet with pyarrow, hashed)
    baseline: the registered scikit-learn pipeline's predict on the same rows, already in a DataFrame
batch_job_<n>_rows_ms
    ours:     the whole job from the uploaded CSV's bytes: plan_job (read, column checks, parts staged),
              score_part for each part, complete_job (the manifest)
    baseline: the script a user writes instead: pandas.read_csv, the pipeline's predict and predict_proba,
              DataFrame.to_parquet
The end-to-end time of one job on the local cloud is measured by the e2e test's timing (stderr), not here.
"""

import functools
import io
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from bench.churn import MODEL, churn_spec
from bench.measure import compare, emit, note
from functions.errors import NotFound, ObjectTooLarge
from functions.storage.objects import ObjectHead, ObjectStore, sha256

BATCH_ROWS = int(os.environ.get("MLOPS_BENCH_BATCH_ROWS", "100000"))
ROWS_PER_PART = 100_000
GOAL = "<= 1.0"


class MemoryObjects(ObjectStore):
    """A bucket in memory: the ObjectStore port without S3."""

    def __init__(self) -> None:
        super().__init__("bench-batch")
        self.objects: dict[str, bytes] = {}

    def get_bytes(self, key: str, *, version_id: str | None = None, max_bytes: int | None = None) -> bytes:
        if key not in self.objects:
            raise NotFound(key)
        data = self.objects[key]
        if max_bytes is not None and len(data) > max_bytes:
            raise ObjectTooLarge(key, size=len(data))
        return data

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        self.objects[key] = bytes(data)
        return sha256(data)

    def list_keys(self, prefix: str) -> Iterator[str]:
        yield from sorted(k for k in self.objects if k.startswith(prefix))

    def head(self, key: str, *, version_id: str | None = None) -> ObjectHead:
        return ObjectHead(size=len(self.get_bytes(key)), metadata={})


class PinnedRegistry:
    """The registry reads a batch job makes (the champion alias, its version, the spec), answered from memory."""

    def __init__(self, record: Any, spec: Any):
        self.record, self.spec = record, spec

    def get_alias(self, model: str, alias: str = "champion") -> int:
        return int(self.record.version)

    def get_version(self, model: str, version: int) -> Any:
        return self.record

    def get_spec(self, model: str) -> Any:
        return self.spec


def run() -> list[dict]:
    import pandas as pd

    from bench.serving import _trained
    from cli.demo_data import churn_frame
    from functions.batch import jobs

    spec = churn_spec()
    loaded, pipeline = _trained(spec)  # in-memory stand-ins of the stores: no AWS
    # What plan_job reads of the champion's record: its number, task, classes and the spec it was trained with.
    record = SimpleNamespace(version=loaded.version, task=spec.task, classes=loaded.predictor.classes,
                             trained_spec=lambda _: loaded.spec)
    registry: Any = PinnedRegistry(record, spec)
    rows = churn_frame(rows=BATCH_ROWS, seed=13)[spec.feature_names]
    data = rows.to_csv(index=False).encode()
    note(f"batch: {BATCH_ROWS} rows ({len(data) / 2**20:.1f} MB of CSV), {spec.estimator.name} served as "
         f"{loaded.predictor.format}")

    def job(objects: MemoryObjects) -> jobs.BatchResult:
        key = f"batch/{MODEL}/bench.csv"
        objects.put_bytes(key, data)
        started = jobs.BatchJob(job_id=f"{MODEL}-bench", model=MODEL, bucket=objects.bucket, key=key)
        plan = jobs.plan_job(objects, registry, started, max_bytes=2**31, rows_per_part=ROWS_PER_PART)
        for item in objects.get_json(plan.items_key):
            jobs.score_part(objects, loaded, plan.job_id, plan.output_prefix, jobs.Part.model_validate(item))
        return jobs.complete_job(objects, plan)

    staged = MemoryObjects()
    result = job(staged)
    assert result.rows == BATCH_ROWS
    parts = [jobs.Part.model_validate(item) for item in staged.get_json(f"{result.output_prefix}{jobs.ITEMS}")]

    def score() -> None:
        for part in parts:
            jobs.score_part(staged, loaded, result.job_id, result.output_prefix, part)

    def script() -> None:
        frame = pd.read_csv(io.BytesIO(data))
        out = pd.DataFrame({"prediction": pipeline.predict(frame)})
        out["probabilities"] = list(pipeline.predict_proba(frame))
        out.to_parquet(io.BytesIO(), index=False)

    frame = rows.copy()
    lines = []
    ours, baseline = compare(score, functools.partial(pipeline.predict, frame), repeat=5, number=1, warmup=1)
    note(f"batch: scoring {BATCH_ROWS / ours * 1000:,.0f} rows/s, scikit-learn predict "
         f"{BATCH_ROWS / baseline * 1000:,.0f} rows/s")
    lines.append(emit("batch", f"batch_score_{BATCH_ROWS}_rows_ms", ours, baseline, GOAL))
    ours, baseline = compare(lambda: job(MemoryObjects()), script, repeat=5, number=1, warmup=1)
    note(f"batch: whole job {BATCH_ROWS / ours * 1000:,.0f} rows/s, the user's script "
         f"{BATCH_ROWS / baseline * 1000:,.0f} rows/s")
    lines.append(emit("batch", f"batch_job_{BATCH_ROWS}_rows_ms", ours, baseline, GOAL))
    return lines
