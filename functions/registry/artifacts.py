"""A registered version's artifacts: written in safe formats, loaded back only if they verify.

model.skops is always written; model.onnx only when skl2onnx converts the pipeline and
onnxruntime agrees with scikit-learn on a sample (serving then uses it: small, fast, no Python
objects). Each is stored with its sha256 and verified before it is loaded.

The pipeline serializes a model once: Train writes its skops bytes, Evaluate (which loads it to
score it) converts it to ONNX once (`save_served_model`), and RegisterModel copies both files'
bytes, verified by their sha256, to the version (`read_run_model`, `store_run_model`).
"""

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from functions.records import Artifacts, ModelVersion
from functions.shared.models import (
    OnnxPredictor,
    Predictor,
    SkopsPredictor,
    classes_of,
    dumps_skops,
    load_verified_pipeline,
)
from functions.spec import ModelSpec
from functions.storage.objects import ObjectStore

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

# ONNX runs in float32: answers within these tolerances count as the same answer.
PROBABILITY_TOLERANCE = 1e-4
REGRESSION_RTOLERANCE = 1e-4
PARITY_SAMPLE_ROWS = 200  # holdout rows on which ONNX must agree with scikit-learn


def save_model(objects: ObjectStore, key_prefix: str, pipeline: "Pipeline", spec: ModelSpec,
               sample_frame: "pd.DataFrame") -> Artifacts:
    """Write model.skops (and model.onnx when it converts and agrees) under `key_prefix`."""
    skops_bytes, trusted = dumps_skops(pipeline)
    skops_key = f"{key_prefix.rstrip('/')}/model.skops"
    onnx_bytes, reason = _to_onnx(pipeline, spec, sample_frame)
    skops_sha256 = objects.put_bytes(skops_key, skops_bytes)
    if onnx_bytes is None:
        return Artifacts(skops_key=skops_key, skops_sha256=skops_sha256, skops_trusted_types=trusted,
                         onnx_skipped=reason)
    onnx_key = f"{key_prefix.rstrip('/')}/model.onnx"
    onnx_sha256 = objects.put_bytes(onnx_key, onnx_bytes)
    return Artifacts(skops_key=skops_key, skops_sha256=skops_sha256, skops_trusted_types=trusted,
                     onnx_key=onnx_key, onnx_sha256=onnx_sha256, onnx_inputs=onnx_input_names(spec))


def save_served_model(objects: ObjectStore, key: str, pipeline: "Pipeline", spec: ModelSpec,
                      sample_frame: "pd.DataFrame") -> tuple[str | None, str | None, str]:
    """Convert the pipeline to ONNX once and store it under `key` when it converts and agrees with scikit-learn
    on the sample: (key, sha256, "") or (None, None, why not)."""
    onnx_bytes, reason = _to_onnx(pipeline, spec, sample_frame)
    if onnx_bytes is None:
        return None, None, reason
    return key, objects.put_bytes(key, onnx_bytes), ""


@dataclass(frozen=True)
class RunModel:
    """A run's trained model as its steps stored it, read back and verified: what a version's files will hold."""

    skops: bytes
    trusted_types: list[str]
    onnx: bytes | None
    onnx_skipped: str


def read_run_model(objects: ObjectStore, *, skops_key: str, skops_sha256: str, trusted_types: list[str],
                   onnx_key: str | None, onnx_sha256: str | None, onnx_skipped: str) -> RunModel:
    """The run's skops (and ONNX) bytes, only if they match their recorded sha256 (IntegrityError otherwise)."""
    skops = objects.get_verified(skops_key, skops_sha256)
    onnx = objects.get_verified(onnx_key, onnx_sha256) if onnx_key else None
    return RunModel(skops, list(trusted_types), onnx, onnx_skipped if onnx is None else "")


def store_run_model(objects: ObjectStore, key_prefix: str, model: RunModel, spec: ModelSpec) -> Artifacts:
    """Write the run's model files, byte for byte, as model.skops (and model.onnx) under `key_prefix`."""
    prefix = key_prefix.rstrip("/")
    skops_key = f"{prefix}/model.skops"
    skops_sha256 = objects.put_bytes(skops_key, model.skops)
    if model.onnx is None:
        return Artifacts(skops_key=skops_key, skops_sha256=skops_sha256, skops_trusted_types=model.trusted_types,
                         onnx_skipped=model.onnx_skipped)
    onnx_key = f"{prefix}/model.onnx"
    return Artifacts(skops_key=skops_key, skops_sha256=skops_sha256, skops_trusted_types=model.trusted_types,
                     onnx_key=onnx_key, onnx_sha256=objects.put_bytes(onnx_key, model.onnx),
                     onnx_inputs=onnx_input_names(spec))


def onnx_input_names(spec: ModelSpec) -> list[str]:
    """The ONNX model's input of each signature feature: f0, f1, ... (whatever the column names are)."""
    return [f"f{index}" for index in range(len(spec.features))]


def _to_onnx(pipeline: "Pipeline", spec: ModelSpec, sample_frame: "pd.DataFrame") -> tuple[bytes | None, str]:
    """ONNX bytes, or None and why not (the skops artifact then serves)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    # Safe input names, one per feature in signature order (skl2onnx would mangle "monthly charges ($)").
    initial_types = [
        (name, FloatTensorType([None, 1]) if f.type == "numeric" else StringTensorType([None, 1]))
        for name, f in zip(onnx_input_names(spec), spec.features, strict=True)
    ]
    options = {id(pipeline): {"zipmap": False}} if spec.task == "classification" else None
    try:
        onnx_bytes = convert_sklearn(pipeline, initial_types=initial_types, options=options).SerializeToString()
    except Exception as error:  # noqa: BLE001 - skl2onnx fails in many ways on unsupported models
        logger.warning("ONNX conversion failed; serving will use skops", extra={"error": type(error).__name__})
        return None, f"conversion failed ({type(error).__name__})"
    try:
        onnx_predictor = OnnxPredictor(onnx_bytes, spec, classes_of(pipeline, spec))
        agrees = _agree(onnx_predictor, SkopsPredictor(pipeline, spec), sample_frame, spec)
    except Exception as error:  # noqa: BLE001 - a model onnxruntime cannot run is not served as ONNX
        logger.warning("ONNX model does not run; serving will use skops", extra={"error": type(error).__name__})
        return None, f"onnxruntime could not run it ({type(error).__name__})"
    if not agrees:
        logger.warning("ONNX model disagrees with scikit-learn; serving will use skops")
        return None, "onnxruntime disagreed with scikit-learn on the sample"
    return onnx_bytes, ""


def _agree(onnx: Predictor, sk: Predictor, frame: "pd.DataFrame", spec: ModelSpec) -> bool:
    if len(frame) == 0:
        return False
    onnx_out, onnx_proba = onnx.predict(frame)
    sk_out, sk_proba = sk.predict(frame)
    if spec.task == "classification":
        if onnx_proba is None or sk_proba is None:
            return onnx_out == sk_out
        if not np.allclose(onnx_proba, sk_proba, atol=PROBABILITY_TOLERANCE, rtol=0):
            return False
        # A row whose two best classes tie within float32 noise may pick either label.
        proba = np.sort(np.asarray(sk_proba), axis=1)
        if proba.shape[1] < 2:
            return onnx_out == sk_out
        clear = proba[:, -1] - proba[:, -2] > 2 * PROBABILITY_TOLERANCE
        return all(a == b for a, b, c in zip(onnx_out, sk_out, clear, strict=True) if c)
    expected = np.asarray(sk_out, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 1.0
    tolerance = REGRESSION_RTOLERANCE * max(scale, 1.0)
    return bool(np.allclose(onnx_out, expected, rtol=REGRESSION_RTOLERANCE, atol=tolerance))


def load_predictor(objects: ObjectStore, version: ModelVersion, spec: ModelSpec) -> Predictor:
    """The model of a version, verified by sha256; ONNX when there is one, else skops."""
    artifacts = version.artifacts
    if artifacts.onnx_key:
        return OnnxPredictor(objects.get_verified(artifacts.onnx_key, artifacts.onnx_sha256), spec, version.classes)
    return SkopsPredictor(load_pipeline(objects, artifacts), spec, version.classes)


def load_pipeline(objects: ObjectStore, artifacts: Artifacts) -> "Pipeline":
    """The scikit-learn pipeline of a version (skops), verified and loaded with a strict allow-list."""
    return load_verified_pipeline(objects, artifacts.skops_key, artifacts.skops_sha256, artifacts.skops_trusted_types)
