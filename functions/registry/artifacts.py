"""A registered version's artifacts: written in safe formats, loaded back only if they verify.

model.skops is always written; model.onnx only when the pipeline converts (registry.onnx_conversion:
double precision, as scikit-learn computes) and its answers through the serving path (instances
straight to arrays, then onnxruntime) agree with the pipeline's through the training transformation,
on the holdout and on edge rows (extreme numbers, an unseen category). Serving then uses it: small,
fast, no Python objects. When it does not, the version serves its scikit-learn model and its record
says why (Artifacts.onnx_skipped). Each file is stored with its sha256 and verified before it is loaded.

The pipeline serializes a model once: Train writes its skops bytes, Evaluate (which loads it to
score it) converts it to ONNX once (`save_served_model`), and RegisterModel copies both files'
bytes, verified by their sha256, to the version (`read_run_model`, `store_run_model`).
"""

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from functions.records import Artifacts, ModelVersion
from functions.registry.onnx_conversion import onnx_input_names, to_onnx
from functions.shared.limits import MAX_NUMERIC_MAGNITUDE
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

# ONNX computes in float64 (a tree ensemble's output is float32): answers this close are the same answer.
PROBABILITY_TOLERANCE = 1e-6
REGRESSION_RTOLERANCE = 1e-6
PARITY_SAMPLE_ROWS = 5_000  # holdout rows on which ONNX must agree with scikit-learn
EDGE_NUMBERS = (MAX_NUMERIC_MAGNITUDE, -MAX_NUMERIC_MAGNITUDE, 1e12, -1e12, 0.0)
UNSEEN_CATEGORY = "\x00unseen category"


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


def _to_onnx(pipeline: "Pipeline", spec: ModelSpec, sample_frame: "pd.DataFrame") -> tuple[bytes | None, str]:
    """ONNX bytes, or None and why not (the skops artifact then serves)."""
    try:
        onnx_bytes = to_onnx(pipeline, spec)
    except Exception as error:  # noqa: BLE001 - skl2onnx fails in many ways on unsupported models
        logger.warning("ONNX conversion failed; serving will use skops", extra={"error": type(error).__name__})
        return None, f"conversion failed ({type(error).__name__})"
    try:
        onnx_predictor = OnnxPredictor(onnx_bytes, spec, classes_of(pipeline, spec))
        disagreement = parity(onnx_predictor, SkopsPredictor(pipeline, spec), sample_frame, spec)
    except Exception as error:  # noqa: BLE001 - a model onnxruntime cannot run is not served as ONNX
        logger.warning("ONNX model does not run; serving will use skops", extra={"error": type(error).__name__})
        return None, f"onnxruntime could not run it ({type(error).__name__})"
    if disagreement:
        logger.warning("ONNX model disagrees with scikit-learn; serving will use skops",
                       extra={"reason": disagreement})
        return None, f"onnxruntime disagreed with scikit-learn: {disagreement}"
    return onnx_bytes, ""


def edge_rows(frame: "pd.DataFrame", spec: ModelSpec) -> list[dict[str, Any]]:
    """Rows a client may send and a holdout seldom holds: the first row with one feature at a time set to an
    extreme number (within what the API accepts) or, for a category, one never seen in training."""
    if len(frame) == 0:
        return []
    base = frame[spec.feature_names].iloc[0].to_dict()
    rows: list[dict[str, Any]] = []
    for feature in spec.features:
        values = EDGE_NUMBERS if feature.type == "numeric" else (UNSEEN_CATEGORY,)
        rows.extend({**base, feature.name: value} for value in values)
    return rows


def parity(onnx: Predictor, sk: Predictor, frame: "pd.DataFrame", spec: ModelSpec) -> str:
    """How the ONNX model's answers on `frame`'s rows and the edge rows, through the serving path (instances
    to arrays), miss the pipeline's through the training transformation; empty when they agree."""
    import pandas as pd

    if len(frame) == 0:
        return "no holdout rows to compare on"
    rows = frame[spec.feature_names].to_dict("records") + edge_rows(frame, spec)
    onnx_out, onnx_proba = onnx.predict_records(rows)
    sk_out, sk_proba = sk.predict(pd.DataFrame.from_records(rows, columns=spec.feature_names))
    where = f"the {len(frame)} holdout rows and {len(rows) - len(frame)} edge rows"
    if spec.task == "classification":
        if onnx_proba is None or sk_proba is None:
            wrong = sum(a != b for a, b in zip(onnx_out, sk_out, strict=True))
            return f"{wrong} labels differ on {where}" if wrong else ""
        ours, theirs = np.asarray(onnx_proba, dtype=np.float64), np.asarray(sk_proba, dtype=np.float64)
        apart = ~np.isclose(ours, theirs, atol=PROBABILITY_TOLERANCE, rtol=0, equal_nan=True).all(axis=1)
        if apart.any():
            gap = float(np.nanmax(np.abs(ours - theirs)))
            return (f"probabilities up to {gap:.3g} apart (tolerance {PROBABILITY_TOLERANCE:g}) on "
                    f"{int(apart.sum())} of {where}")
        # A row whose two best classes tie within the tolerance may pick either label.
        ranked = np.sort(theirs, axis=1)
        clear = ranked[:, -1] - ranked[:, -2] > 2 * PROBABILITY_TOLERANCE if ranked.shape[1] > 1 else \
            np.ones(len(rows), dtype=bool)
        wrong = sum(a != b for a, b, c in zip(onnx_out, sk_out, clear, strict=True) if c)
        return f"{wrong} labels differ on {where}" if wrong else ""
    expected = np.asarray(sk_out, dtype=np.float64)
    got = np.asarray(onnx_out, dtype=np.float64)
    holdout = expected[: len(frame)]  # the scale of the usual answers (an edge row's may be huge)
    finite = holdout[np.isfinite(holdout)]
    scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    tolerance = REGRESSION_RTOLERANCE * max(scale, 1.0)
    apart = ~np.isclose(got, expected, rtol=REGRESSION_RTOLERANCE, atol=tolerance, equal_nan=True)
    if apart.any():
        return f"values up to {float(np.nanmax(np.abs(got - expected))):.3g} apart on {int(apart.sum())} of {where}"
    return ""


def load_predictor(objects: ObjectStore, version: ModelVersion, spec: ModelSpec) -> Predictor:
    """The model of a version, verified by sha256; ONNX when there is one, else skops."""
    artifacts = version.artifacts
    if artifacts.onnx_key:
        return OnnxPredictor(objects.get_verified(artifacts.onnx_key, artifacts.onnx_sha256), spec, version.classes)
    return SkopsPredictor(load_pipeline(objects, artifacts), spec, version.classes)


def load_pipeline(objects: ObjectStore, artifacts: Artifacts) -> "Pipeline":
    """The scikit-learn pipeline of a version (skops), verified and loaded with a strict allow-list."""
    return load_verified_pipeline(objects, artifacts.skops_key, artifacts.skops_sha256, artifacts.skops_trusted_types)
