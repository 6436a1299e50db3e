"""Serving: the whole predict handler against the naive scikit-learn Lambda handler, on the same model.

The model is trained in-process with the project's own code (functions.training.train.fit on the
demo's churn data, its spec with logistic regression, then with a 100-tree random forest) and
registered with functions.registry.artifacts.save_model (ONNX when it converts and passes parity,
else skops), in small in-memory stand-ins of the registry and the bucket.

ours:      functions.serving.handler.handler(event, context): an API Gateway REST proxy event in
           (one row), the response dict out: Powertools resolver, body size check and parse,
           the model cache (warm: no storage call within its TTL), the signature check, the
           instances straight to arrays, ONNX Runtime, the capture (whatever form handler.py gives
           it: a log line today), metrics and the log line. Every line is written: capture and EMF to
           /dev/null (sys.stdout), the logger's to the bench's stderr (the stream it holds).
baseline:  the naive handler a user writes in an afternoon: json.loads(event["body"]) ->
           pandas.DataFrame(instances) -> the same scikit-learn pipeline's predict_proba ->
           labels from the probabilities -> json.dumps, in a response dict.
Both take the same event. p50 and p99 come from single calls, the two sides interleaved.

handler_added_us:  the whole handler against onnxruntime's session.run on the prepared arrays of
           the same row (the model's own time): the goal is that the handler adds at most 50 us.
predict_path_added_us: a part's figure: functions.serving.predict.predict (check, arrays, session.run,
           answers) against the same session.run.
cold_start_ms:     a fresh `python` process that imports the handler, creates the S3 client and the
           registry table it reads with, loads the champion (ONNX bytes from the stand-in bucket) and
           answers its first event, against one that imports the naive handler's modules, creates the S3
           client it would fetch its pickle with, loads the pipeline (pickle, from a local file) and
           answers the same event; medians of interleaved runs. Neither side goes over the network.
"""

import gc
import io
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.churn import MODEL, churn_spec, instances, training_frame
from bench.measure import emit, note
from bench.serving_standins import CONTEXT, ENVIRONMENT, Objects, Registry
from functions.spec import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
WARM_CALLS = 2_000
COLD_RUNS = 7
def event_for(rows: list[dict]) -> dict:
    body = json.dumps({"instances": rows})
    path = f"/v1/models/{MODEL}/predict"
    return {"resource": "/v1/models/{name}/predict", "path": path, "httpMethod": "POST",
            "headers": {"Content-Type": "application/json"}, "multiValueHeaders": {},
            "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": {"name": MODEL}, "stageVariables": None, "body": body, "isBase64Encoded": False,
            "requestContext": {"resourcePath": "/v1/models/{name}/predict", "httpMethod": "POST",
                               "path": f"/prod{path}", "stage": "prod", "requestId": "bench-request",
                               "accountId": "123456789012", "apiId": "bench", "identity": {"sourceIp": "127.0.0.1"}}}


def naive_handler(pipeline: Any) -> Callable[[dict, Any], dict]:
    """JSON -> DataFrame -> predict_proba: what a user writes first (labels from the same probabilities)."""
    import numpy as np
    import pandas as pd

    def handle(event: dict, context: Any) -> dict:
        rows = json.loads(event["body"])["instances"]
        proba = pipeline.predict_proba(pd.DataFrame(rows))
        labels = pipeline.classes_[np.argmax(proba, axis=1)]
        return {"statusCode": 200, "body": json.dumps({"predictions": labels.tolist(),
                                                       "probabilities": proba.tolist()})}

    return handle


def registered(spec: ModelSpec) -> tuple[Registry, Objects, Any]:
    from functions.records import ModelVersion
    from functions.registry.artifacts import save_model
    from functions.registry.promotion import SAMPLE_ROWS
    from functions.shared.models import classes_of
    from functions.storage.objects import sha256
    from functions.training.train import fit

    frame = training_frame()
    csv = io.BytesIO()
    frame.to_csv(csv, index=False)
    result = fit(frame, spec, dataset_id=sha256(csv.getvalue()))
    objects = Objects()
    store: Any = objects  # the two calls save_model makes of an ObjectStore
    artifacts = save_model(store, f"models/{MODEL}/v1", result.pipeline, spec, result.holdout.head(SAMPLE_ROWS))
    record = ModelVersion(model=MODEL, version=1, run_id="bench", dataset_id="bench", task=spec.task,
                          target=spec.target, signature=spec.signature, classes=classes_of(result.pipeline, spec),
                          metric=spec.metric, artifacts=artifacts, estimator=spec.estimator.name, code_version="bench",
                          holdout_key="bench")
    if artifacts.onnx_skipped:
        note(f"serving: {spec.estimator.name}: no ONNX artifact ({artifacts.onnx_skipped}); ours serves skops")
    return Registry(record, spec), objects, result.pipeline


def _trained(spec: ModelSpec) -> tuple[Any, Any]:
    """The registered model loaded as the predict function loads it, and its scikit-learn pipeline (bench.batch)."""
    from functions.registry.artifacts import load_predictor
    from functions.serving.model_cache import LoadedModel

    registry, objects, pipeline = registered(spec)
    served = registry.record.trained_spec(spec)
    store: Any = objects
    predictor = load_predictor(store, registry.record, served)
    return LoadedModel(model=MODEL, version=1, spec=served, predictor=predictor), pipeline


def interleaved(ours: Callable[[], object], baseline: Callable[[], object],
                calls: int) -> tuple[list[float], list[float]]:
    """Microseconds of each single call of both, alternating which goes first; the collector paused per pair."""
    clock = time.perf_counter
    ours_us: list[float] = []
    base_us: list[float] = []
    for _ in range(50):
        ours()
        baseline()
    gc.collect()
    for i in range(calls):
        gc.disable()
        try:
            pairs = ((ours, ours_us), (baseline, base_us)) if i % 2 else ((baseline, base_us), (ours, ours_us))
            for fn, samples in pairs:
                started = clock()
                fn()
                samples.append((clock() - started) * 1e6)
        finally:
            gc.enable()
    return ours_us, base_us


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def warm(name: str, spec: ModelSpec, row: list[dict]) -> list[dict]:
    from functions.serving import handler
    from functions.serving.model_cache import ModelCache
    from functions.serving.predict import predict
    from functions.shared.instances import feature_arrays

    registry, objects, pipeline = registered(spec)
    handler.registry_store = lambda: registry  # type: ignore[assignment]
    handler.data_objects = lambda: objects  # type: ignore[assignment]
    handler.models = ModelCache()
    event = event_for(row)
    naive = naive_handler(pipeline)
    ours_answer, base_answer = handler.handler(event, CONTEXT), naive(event, CONTEXT)
    assert ours_answer["statusCode"] == 200, ours_answer
    ours_body, base_body = json.loads(ours_answer["body"]), json.loads(base_answer["body"])
    assert abs(ours_body["probabilities"][0][1] - base_body["probabilities"][0][1]) < 1e-6, (ours_body, base_body)
    loaded = handler.models.champion(registry, objects, MODEL, 60)  # type: ignore[arg-type]
    note(f"serving: {name} ({spec.estimator.name}) served as {loaded.predictor.format}")

    lines = []
    ours_us, base_us = interleaved(lambda: handler.handler(event, CONTEXT), lambda: naive(event, CONTEXT), WARM_CALLS)
    lines.append(emit("serving", f"handler_{name}_one_row_p50_ms", statistics.median(ours_us) / 1000,
                      statistics.median(base_us) / 1000, "<= 0.25" if name == "lr" else "<= 0.05"))
    lines.append(emit("serving", f"handler_{name}_one_row_p99_ms", percentile(ours_us, 99) / 1000,
                      percentile(base_us, 99) / 1000, "none (p99 reported)"))
    predictor = loaded.predictor
    if predictor.format == "onnx":
        session = predictor.session  # type: ignore[attr-defined]
        feeds = dict(zip(predictor.inputs, feature_arrays(row, spec.features, predictor.dtypes),  # type: ignore[attr-defined]
                         strict=True))
        ours_us, bare_us = interleaved(lambda: handler.handler(event, CONTEXT), lambda: session.run(None, feeds),
                                       WARM_CALLS)
        ours_p50, bare_p50 = statistics.median(ours_us), statistics.median(bare_us)
        lines.append(emit("serving", f"handler_added_{name}_us", ours_p50, bare_p50,
                          f"ours - baseline <= 50 us (here {ours_p50 - bare_p50:.0f} us)"))
        part_us, bare_us = interleaved(lambda: predict(loaded, row), lambda: session.run(None, feeds), WARM_CALLS)
        part_p50, bare_p50 = statistics.median(part_us), statistics.median(bare_us)
        lines.append(emit("serving", f"predict_path_added_{name}_us", part_p50, bare_p50,
                          f"a part: ours - baseline = {part_p50 - bare_p50:.0f} us"))
    return lines


COLD_OURS = """
import json, sys, time
from functions.serving import handler
from bench.serving_standins import CONTEXT, Objects, Registry
import pickle
given = pickle.load(open(sys.argv[1] + ".ours", "rb"))
registry, objects = Registry(given["record"], given["spec"]), Objects()
objects.files = given["files"]
# What a first request makes before it reads the registry and the bucket (the stand-ins answer in their place).
from functions import aws
aws.s3(), aws.table(handler.settings().registry_table)
handler.registry_store = lambda: registry
handler.data_objects = lambda: objects
answer = handler.handler(given["event"], CONTEXT)
assert answer["statusCode"] == 200, answer
print(json.dumps({"answered_at": time.time()}), file=sys.stderr, flush=True)
"""

COLD_NAIVE = """
import json, sys, time
import pickle
import numpy as np
import pandas as pd
given = pickle.load(open(sys.argv[1] + ".naive", "rb"))
import boto3
boto3.client("s3")  # the client it would fetch its pickle with (the bytes come from the file here)
pipeline = pickle.loads(given["pickle"])
event = given["event"]
rows = json.loads(event["body"])["instances"]
proba = pipeline.predict_proba(pd.DataFrame(rows))
labels = pipeline.classes_[np.argmax(proba, axis=1)]
answer = {"statusCode": 200, "body": json.dumps({"predictions": labels.tolist(), "probabilities": proba.tolist()})}
print(json.dumps({"answered_at": time.time()}), file=sys.stderr, flush=True)
"""


def cold(spec: ModelSpec, row: list[dict]) -> list[dict]:
    """Fresh processes: from spawn to the first answer (interpreter start included on both sides, exit not)."""
    registry, objects, pipeline = registered(spec)
    event = event_for(row)
    ours_given = {"record": registry.record, "spec": spec, "files": objects.files, "event": event}
    naive_given = {"event": event, "pickle": pickle.dumps(pipeline)}
    env = {**ENVIRONMENT, **os.environ, "PYTHONPATH": str(ROOT)}

    def spawn(script: str, path: str) -> float:
        started = time.time()  # the child's answer is stamped with the same clock
        done = subprocess.run([sys.executable, "-c", script, path], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return (json.loads(done.stderr.strip().splitlines()[-1])["answered_at"] - started) * 1000

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "given")
        for suffix, given in ((".ours", ours_given), (".naive", naive_given)):
            with open(path + suffix, "wb") as file:
                pickle.dump(given, file)
        spawn(COLD_OURS, path)  # the first run fills the OS file cache for both sides' modules
        spawn(COLD_NAIVE, path)
        ours: list[float] = []
        naive: list[float] = []
        for i in range(COLD_RUNS):
            for script, samples in ((COLD_OURS, ours), (COLD_NAIVE, naive)) if i % 2 else \
                    ((COLD_NAIVE, naive), (COLD_OURS, ours)):
                samples.append(spawn(script, path))
    return [emit("serving", "cold_start_ms", statistics.median(ours), statistics.median(naive), "<= 0.3")]


def run() -> list[dict]:
    for name, value in ENVIRONMENT.items():  # before the handler's module reads it (its Metrics, its settings)
        os.environ.setdefault(name, value)
    base = churn_spec()
    forest = ModelSpec.model_validate({**base.model_dump(), "estimator": {"name": "random_forest",
                                                                          "params": {"n_estimators": 100}}})
    row = instances(base, 1)
    lines = []
    stdout = sys.stdout
    with open(os.devnull, "w") as sink:
        sys.stdout = sink  # the function's log lines (capture, logs, EMF): written, but not to a terminal
        try:
            lines += warm("lr", base, row)
            lines += warm("rf100", forest, row)
        finally:
            sys.stdout = stdout
    lines += cold(base, row)
    return lines
