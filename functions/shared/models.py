"""Model formats, never raw pickle: skops for the scikit-learn object, ONNX for serving.

skops bytes are loaded trusting only the types recorded when they were saved, and only from
scikit-learn, numpy, scipy and builtins. A `Predictor` answers for a loaded model whatever its
format: raw rows in, plain Python labels (or values) and class probabilities out.

Predicting on request instances (`predict_records`) with an ONNX model imports neither pandas nor
scikit-learn: the instances go straight to typed arrays (shared.instances) and into the session.
The scikit-learn fallback (a model that did not convert, or disagreed with scikit-learn at
registration) imports them when it is first used, and predicts once: labels are the classes of
the highest probabilities, as scikit-learn's own predict does.
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from functions.errors import IntegrityError
from functions.jsonable import jsonable
from functions.shared.instances import feature_arrays
from functions.spec import ModelSpec
from functions.storage.objects import ObjectStore

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.", "builtins.")

Answers = tuple[list[Any], list[list[float]] | None]
ArrayAnswers = tuple[np.ndarray, np.ndarray | None]  # labels or values (n,), probabilities (n, classes)
RUN_ROWS = 8_192  # the rows of one session.run when predicting whole columns
ONNX_DTYPES: dict[str, Any] = {"tensor(double)": np.float64, "tensor(float)": np.float32, "tensor(string)": object}


def dumps_skops(pipeline: "Pipeline") -> tuple[bytes, list[str]]:
    """The pipeline as skops bytes, and the types a load must trust (IntegrityError if one is not trusted)."""
    import skops.io as sio

    data = sio.dumps(pipeline)
    types = sorted(sio.get_untrusted_types(data=data))
    refused = [t for t in types if not t.startswith(TRUSTED_MODULES)]
    if refused:
        # We would refuse to load it: better to fail the run now than to register it.
        raise IntegrityError(f"the trained model holds types that cannot be loaded safely: {', '.join(refused)}")
    return data, types


def loads_skops(data: bytes, recorded_types: list[str]) -> "Pipeline":
    """Load skops bytes trusting only the recorded types from trusted modules (IntegrityError otherwise)."""
    import skops.io as sio

    refused = [t for t in recorded_types if not str(t).startswith(TRUSTED_MODULES)]
    if refused:
        raise IntegrityError(f"the model artifact names untrusted types: {', '.join(map(str, refused))}")
    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as error:
        raise IntegrityError("the model artifact is not a readable skops file") from error
    unexpected = sorted(set(found) - set(recorded_types))
    if unexpected:
        raise IntegrityError(f"the model artifact holds types that were not recorded: {', '.join(unexpected)}")
    try:
        return sio.loads(data, trusted=list(recorded_types))
    except Exception as error:
        raise IntegrityError("the model artifact could not be loaded safely") from error


def load_verified_pipeline(objects: ObjectStore, key: str, sha256: str | None, trusted_types: list[str]) -> "Pipeline":
    """A stored skops pipeline, verified by its sha256 and loaded trusting its recorded types only."""
    return loads_skops(objects.get_verified(key, sha256), trusted_types)


def classes_of(pipeline: "Pipeline", spec: ModelSpec) -> list[Any] | None:
    return jsonable(list(pipeline.classes_)) if spec.task == "classification" else None


class Predictor:
    """A loaded model, whatever its format."""

    format: str = ""

    def __init__(self, spec: ModelSpec, classes: list[Any] | None):
        self.spec = spec
        self.classes = list(classes) if classes is not None else None

    def predict(self, frame: "pd.DataFrame") -> Answers:
        """Labels (classification) or values (regression), and class probabilities when classifying.

        The rows go through the feature transformation first, so raw instances or already
        built features give the same answers.
        """
        return self._answers(*self.predict_columns(frame))

    def predict_columns(self, frame: "pd.DataFrame") -> ArrayAnswers:
        """As `predict`, as numpy arrays (scoring a holdout: no Python object per row)."""
        from functions.shared.transform import build_features

        features = build_features(frame, self.spec)
        if len(features) == 0:
            return self._arrays([], [] if self.spec.task == "classification" else None)
        return self._arrays(*self._predict(features))

    def predict_records(self, instances: Sequence[Mapping[str, Any]]) -> Answers:
        """The answers for request instances (objects of feature values): the same as `predict` on their frame,
        the values transformed once (shared.instances), not again by build_features."""
        return self._answers(*self.predict_arrays(feature_arrays(instances, self.spec.features)))

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> ArrayAnswers:
        """The answers as numpy arrays for the typed input arrays (shared.instances: one (n, 1) per feature).

        The columnar entry (batch scoring): no Python object per row on the way in or out.
        """
        import pandas as pd

        frame = pd.DataFrame({f.name: a.ravel() for f, a in zip(self.spec.features, arrays, strict=True)},
                             columns=self.spec.feature_names)
        if len(frame) == 0:
            return self._arrays([], [] if self.spec.task == "classification" else None)
        return self._arrays(*self._predict(frame))

    def _arrays(self, labels: Any, proba: Any) -> ArrayAnswers:
        if self.spec.task == "regression":
            return np.asarray(labels, dtype=np.float64).ravel(), None
        if proba is None:
            return np.asarray(labels).ravel(), None
        probabilities = np.asarray(proba, dtype=np.float64).reshape(len(labels), len(self.classes or ()) or -1)
        return np.asarray(labels).ravel(), probabilities

    def _answers(self, labels: Any, proba: Any) -> Answers:
        if self.spec.task == "regression":
            return np.asarray(labels, dtype=np.float64).ravel().tolist(), None
        probabilities = None if proba is None else np.asarray(proba, dtype=np.float64).tolist()
        return jsonable(np.asarray(labels).ravel()), probabilities

    def _predict(self, features: "pd.DataFrame") -> tuple[Any, Any]:
        raise NotImplementedError


class SkopsPredictor(Predictor):
    format = "skops"

    def __init__(self, pipeline: "Pipeline", spec: ModelSpec, classes: list[Any] | None = None):
        super().__init__(spec, classes if classes is not None else classes_of(pipeline, spec))
        self.pipeline = pipeline

    def _predict(self, features: "pd.DataFrame") -> tuple[Any, Any]:
        if self.spec.task == "regression":
            return self.pipeline.predict(features), None
        proba = self.pipeline.predict_proba(features)  # once: the labels are its argmax, as predict's are
        return np.asarray(self.pipeline.classes_).take(np.argmax(proba, axis=1)), proba


class OnnxPredictor(Predictor):
    format = "onnx"

    def __init__(self, onnx_bytes: bytes, spec: ModelSpec, classes: list[Any] | None):
        import onnxruntime

        super().__init__(spec, classes)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # Lambda: one request at a time, few vCPUs
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        # One input per signature feature, in its order: f0, f1, ... (older models: the feature names).
        inputs = self.session.get_inputs()
        self.inputs = [i.name for i in inputs]
        if len(self.inputs) != len(spec.features):
            raise IntegrityError(f"the ONNX model takes {len(self.inputs)} inputs, not the {len(spec.features)} "
                                 "features of its signature")
        # float64 since models convert in double precision; float32 for those registered before.
        self.dtypes = [ONNX_DTYPES.get(i.type, object) for i in inputs]

    def predict_records(self, instances: Sequence[Mapping[str, Any]]) -> Answers:
        if not instances:
            return self._answers([], [] if self.spec.task == "classification" else None)
        arrays = feature_arrays(instances, self.spec.features, self.dtypes)
        return self._answers(*self._run(dict(zip(self.inputs, arrays, strict=True))))

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> ArrayAnswers:
        if len(arrays) == 0 or len(arrays[0]) == 0:
            return self._arrays([], [] if self.spec.task == "classification" else None)
        feeds = {name: np.asarray(array, dtype=dtype).reshape(-1, 1)
                 for name, dtype, array in zip(self.inputs, self.dtypes, arrays, strict=True)}
        rows = len(arrays[0])
        if rows <= RUN_ROWS:
            return self._arrays(*self._run(feeds))
        # In runs of RUN_ROWS rows: the graph's intermediate tensors stay in cache (about 25% faster on 100k rows).
        runs = [self._run({name: array[first:first + RUN_ROWS] for name, array in feeds.items()})
                for first in range(0, rows, RUN_ROWS)]
        labels = np.concatenate([np.asarray(labels).ravel() for labels, _ in runs])
        proba = None if runs[0][1] is None else np.concatenate([np.asarray(p) for _, p in runs])
        return self._arrays(labels, proba)

    def _predict(self, features: "pd.DataFrame") -> tuple[Any, Any]:
        feeds = {name: features.iloc[:, [position]].to_numpy(dtype)
                 for position, (name, dtype) in enumerate(zip(self.inputs, self.dtypes, strict=True))}
        return self._run(feeds)

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[Any, Any]:
        results = dict(zip(self.outputs, self.session.run(None, feeds), strict=True))
        if self.spec.task == "classification":
            return results["label"], results.get("probabilities")
        return np.asarray(results["variable"], dtype=np.float64), None
