"""Serving: our predict path against the scikit-learn pipeline's predict_proba on a DataFrame.

The model is trained in-process with the project's own code (functions.training.train.fit on
the demo's churn data), saved with functions.registry.artifacts.save_model (ONNX when
skl2onnx converts it, else skops) to a moto S3 bucket, and loaded back with load_predictor,
as the serving function does on a cold start.

ours:      functions.serving.predict.predict(loaded, instances): signature checks of every
           value, the shared feature transformation, then the loaded predictor (ONNX Runtime,
           one thread, as on Lambda).
baseline:  what MLflow's pyfunc does with the same request: pandas.DataFrame(instances), then
           the trained scikit-learn pipeline's predict_proba. (pyfunc also enforces its schema;
           leaving that out makes the baseline a little faster than MLflow, never slower.)
Both start from the same instances as JSON gives them (lists of dicts).
"""

import functools
import io
from typing import TYPE_CHECKING, Any

import boto3

from bench.churn import MODEL, churn_spec, instances, training_frame
from bench.measure import compare, emit, note
from functions.spec import ModelSpec

if TYPE_CHECKING:
    from functions.serving.model_cache import LoadedModel

BUCKET = "bench-models"
GOAL = "<= 1.0"


def _trained(spec: ModelSpec) -> tuple["LoadedModel", Any]:
    from functions.records import ModelVersion
    from functions.registry.artifacts import load_pipeline, load_predictor, save_model
    from functions.registry.promotion import SAMPLE_ROWS
    from functions.serving.model_cache import LoadedModel
    from functions.shared.models import classes_of
    from functions.storage.objects import sha256
    from functions.storage.s3 import S3ObjectStore
    from functions.training.train import fit

    frame = training_frame()
    csv = io.BytesIO()
    frame.to_csv(csv, index=False)
    result = fit(frame, spec, dataset_id=sha256(csv.getvalue()))
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    objects = S3ObjectStore(s3, BUCKET)
    artifacts = save_model(objects, f"models/{MODEL}/v1", result.pipeline, spec, result.holdout.head(SAMPLE_ROWS))
    record = ModelVersion(model=MODEL, version=1, run_id="bench", dataset_id="bench", task=spec.task,
                          target=spec.target, signature=spec.signature, classes=classes_of(result.pipeline, spec),
                          metric=spec.metric, artifacts=artifacts, estimator=spec.estimator.name, code_version="bench",
                          holdout_key="bench")
    served = record.trained_spec(spec)
    loaded = LoadedModel(model=MODEL, version=1, spec=served, predictor=load_predictor(objects, record, served))
    pipeline = load_pipeline(objects, artifacts)  # the registered scikit-learn model, as MLflow would load it
    if artifacts.onnx_skipped:
        note(f"serving: no ONNX artifact ({artifacts.onnx_skipped}); ours serves skops")
    return loaded, pipeline


def run() -> list[dict]:
    import pandas as pd
    from moto import mock_aws

    from functions.serving.predict import predict

    spec = churn_spec()
    with mock_aws():
        loaded, pipeline = _trained(spec)
    note(f"serving: {spec.estimator.name} trained on {len(training_frame())} rows, served as {loaded.predictor.format}")

    lines = []
    for figure, rows, number in (("predict_one_row_ms", 1, 20), ("predict_batch_100_ms", 100, 5)):
        batch = instances(spec, rows)
        ours_answer = predict(loaded, batch)
        base_answer = pipeline.predict_proba(pd.DataFrame(batch))
        assert len(ours_answer.predictions) == len(base_answer) == rows
        ours, baseline = compare(functools.partial(predict, loaded, batch),
                                 functools.partial(pipeline.predict_proba, pd.DataFrame(batch)),
                                 repeat=21, number=number, warmup=5)
        lines.append(emit("serving", figure, ours, baseline, GOAL))
    return lines
