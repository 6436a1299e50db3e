"""Model artifacts: saving a trained pipeline in safe formats, and loading it back to predict.

Two formats, never raw pickle: skops (the scikit-learn object, always written) and ONNX
(for serving: small, fast, no Python objects), written only when skl2onnx converts the
pipeline and onnxruntime agrees with scikit-learn on a sample. Every artifact is stored with
its sha256 and verified before it is loaded; skops loads trust only the types recorded at
save time, and only from scikit-learn, numpy, scipy and builtins.
"""

import logging

import numpy as np
import pandas as pd
import skops.io as sio

from functions.errors import IntegrityError
from functions.features.transform import build_features
from functions.spec import ModelSpec
from functions.storage import sha256, storage_errors

logger = logging.getLogger(__name__)

TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.", "builtins.")
# ONNX runs in float32: answers within these tolerances count as the same answer.
PROBABILITY_TOLERANCE = 1e-4
REGRESSION_RTOLERANCE = 1e-4


def _key(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}"


def save_model(s3, bucket: str, key_prefix: str, pipeline, spec: ModelSpec, sample_frame: pd.DataFrame) -> dict:
    """Write model.skops (and model.onnx when it converts and agrees); return the `artifacts` record."""
    skops_bytes = sio.dumps(pipeline)
    trusted = sorted(sio.get_untrusted_types(data=skops_bytes))
    refused = [t for t in trusted if not t.startswith(TRUSTED_MODULES)]
    if refused:
        # We would refuse to load it: better to fail the run now than to register it.
        raise IntegrityError(f"the trained model holds types that cannot be loaded safely: {', '.join(refused)}")
    artifacts: dict = {
        "skops_key": _key(key_prefix, "model.skops"),
        "skops_sha256": sha256(skops_bytes),
        "skops_trusted_types": trusted,
        "classes": _classes(pipeline, spec),
    }
    onnx_bytes, reason = _to_onnx(pipeline, spec, sample_frame)
    with storage_errors("saving the model artifacts"):
        s3.put_object(Bucket=bucket, Key=artifacts["skops_key"], Body=skops_bytes,
                      Metadata={"sha256": artifacts["skops_sha256"]})
        if onnx_bytes is not None:
            artifacts["onnx_key"] = _key(key_prefix, "model.onnx")
            artifacts["onnx_sha256"] = sha256(onnx_bytes)
            s3.put_object(Bucket=bucket, Key=artifacts["onnx_key"], Body=onnx_bytes,
                          Metadata={"sha256": artifacts["onnx_sha256"]})
        else:
            artifacts["onnx_skipped"] = reason
    return artifacts


def _classes(pipeline, spec: ModelSpec) -> list | None:
    if spec.task != "classification":
        return None
    return [c.item() if hasattr(c, "item") else c for c in pipeline.classes_]


def _to_onnx(pipeline, spec: ModelSpec, sample_frame: pd.DataFrame) -> tuple[bytes | None, str]:
    """ONNX bytes, or None and why not (the skops artifact then serves)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types = [
        (f.name, FloatTensorType([None, 1]) if f.type == "numeric" else StringTensorType([None, 1]))
        for f in spec.features
    ]
    options = {id(pipeline): {"zipmap": False}} if spec.task == "classification" else None
    try:
        model = convert_sklearn(pipeline, initial_types=initial_types, options=options)
        onnx_bytes = model.SerializeToString()
    except Exception as error:  # noqa: BLE001 - skl2onnx fails in many ways on unsupported models
        logger.warning("ONNX conversion failed; serving will use skops", extra={"error": type(error).__name__})
        return None, f"conversion failed ({type(error).__name__})"
    try:
        onnx_predictor = OnnxPredictor(onnx_bytes, spec, _classes(pipeline, spec))
        agrees = _agree(onnx_predictor, SkopsPredictor(pipeline, spec), sample_frame, spec)
    except Exception as error:  # noqa: BLE001 - a model onnxruntime cannot run is not served as ONNX
        logger.warning("ONNX model does not run; serving will use skops", extra={"error": type(error).__name__})
        return None, f"onnxruntime could not run it ({type(error).__name__})"
    if not agrees:
        logger.warning("ONNX model disagrees with scikit-learn; serving will use skops")
        return None, "onnxruntime disagreed with scikit-learn on the sample"
    return onnx_bytes, ""


def _agree(onnx: "Predictor", sk: "Predictor", frame: pd.DataFrame, spec: ModelSpec) -> bool:
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
        clear = proba[:, -1] - proba[:, -2] > 2 * PROBABILITY_TOLERANCE if proba.shape[1] > 1 else np.ones(len(proba), bool)
        return all(a == b for a, b, c in zip(onnx_out, sk_out, clear) if c)
    expected = np.asarray(sk_out, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 1.0
    return bool(np.allclose(onnx_out, expected, rtol=REGRESSION_RTOLERANCE, atol=REGRESSION_RTOLERANCE * max(scale, 1.0)))


class Predictor:
    """A loaded model, whatever its format: raw rows in, plain Python answers out."""

    format: str = ""

    def __init__(self, spec: ModelSpec, classes: list | None):
        self.spec = spec
        self._classes = list(classes) if classes is not None else None

    @property
    def classes(self) -> list | None:
        return self._classes

    def predict(self, frame: pd.DataFrame) -> tuple[list, list[list[float]] | None]:
        """Labels (classification) or values (regression), and class probabilities when classifying.

        The rows go through the feature transformation first, so raw instances or already
        built features give the same answers.
        """
        features = build_features(frame, self.spec)
        if len(features) == 0:
            return [], ([] if self.spec.task == "classification" else None)
        labels, proba = self._predict(features)
        if self.spec.task == "regression":
            return np.asarray(labels, dtype=np.float64).ravel().tolist(), None
        # An object array (string classes) may hold numpy scalars that tolist() leaves as they are.
        predictions = [_plain(v) for v in np.asarray(labels).ravel().tolist()]
        probabilities = None if proba is None else np.asarray(proba, dtype=np.float64).tolist()
        return predictions, probabilities

    def _predict(self, features: pd.DataFrame):
        raise NotImplementedError


class SkopsPredictor(Predictor):
    format = "skops"

    def __init__(self, pipeline, spec: ModelSpec, classes: list | None = None):
        super().__init__(spec, classes if classes is not None else _classes(pipeline, spec))
        self.pipeline = pipeline

    def _predict(self, features: pd.DataFrame):
        labels = self.pipeline.predict(features)
        proba = self.pipeline.predict_proba(features) if self.spec.task == "classification" else None
        return labels, proba


class OnnxPredictor(Predictor):
    format = "onnx"

    def __init__(self, onnx_bytes: bytes, spec: ModelSpec, classes: list | None):
        import onnxruntime

        super().__init__(spec, classes)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # Lambda: one request at a time, few vCPUs
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _predict(self, features: pd.DataFrame):
        feeds = {}
        for feature in self.spec.features:
            column = features[[feature.name]]
            feeds[feature.name] = column.to_numpy(np.float32) if feature.type == "numeric" else column.to_numpy(object)
        results = dict(zip(self.outputs, self.session.run(None, feeds)))
        if self.spec.task == "classification":
            return results["label"], results.get("probabilities")
        return np.asarray(results["variable"], dtype=np.float64), None


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def load_predictor(s3, bucket: str, artifacts: dict, spec: ModelSpec) -> Predictor:
    """The model of a version, verified by sha256; ONNX when there is one, else skops."""
    classes = artifacts.get("classes")
    if artifacts.get("onnx_key"):
        data = read_verified(s3, bucket, artifacts["onnx_key"], artifacts.get("onnx_sha256"))
        return OnnxPredictor(data, spec, classes)
    return SkopsPredictor(load_pipeline(s3, bucket, artifacts), spec, classes)


def load_pipeline(s3, bucket: str, artifacts: dict):
    """The scikit-learn pipeline of a version (skops), verified and loaded with a strict allow-list."""
    data = read_verified(s3, bucket, artifacts["skops_key"], artifacts.get("skops_sha256"))
    return loads_skops(data, artifacts.get("skops_trusted_types") or [])


def loads_skops(data: bytes, recorded_types: list[str]):
    """Load skops bytes trusting only the recorded types from trusted modules (IntegrityError otherwise)."""
    refused = [t for t in recorded_types if not str(t).startswith(TRUSTED_MODULES)]
    if refused:
        raise IntegrityError(f"the model artifact names untrusted types: {', '.join(map(str, refused))}")
    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as error:  # noqa: BLE001 - not a skops file
        raise IntegrityError("the model artifact is not a readable skops file") from error
    unexpected = sorted(set(found) - set(recorded_types))
    if unexpected:
        raise IntegrityError(f"the model artifact holds types that were not recorded: {', '.join(unexpected)}")
    try:
        return sio.loads(data, trusted=list(recorded_types))
    except Exception as error:  # noqa: BLE001 - skops raises several types for untrusted/corrupt content
        raise IntegrityError("the model artifact could not be loaded safely") from error


def read_verified(s3, bucket: str, key: str, expected_sha256: str | None) -> bytes:
    if not expected_sha256:
        raise IntegrityError(f"no sha256 is recorded for {key}; refusing to load it")
    with storage_errors(f"reading the model artifact {key}"):
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if sha256(data) != expected_sha256:
        raise IntegrityError(f"the model artifact {key} does not match its recorded sha256")
    return data
