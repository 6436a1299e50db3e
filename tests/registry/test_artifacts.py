"""Model artifacts: skops always, ONNX when it agrees; hashes and type allow-lists enforced on load."""

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from functions.errors import IntegrityError, RetryableError
from functions.records import Artifacts, ModelVersion
from functions.registry.artifacts import load_predictor, save_model
from functions.shared.models import OnnxPredictor, classes_of, loads_skops
from functions.spec import ModelSpec
from functions.storage.objects import sha256
from functions.training.train import TrainResult, fit
from tests.conftest import CHURN_SPEC
from tests.fakes import MemoryObjectStore, throttled


def with_estimator(spec: ModelSpec, name: str, params=None, **changes) -> ModelSpec:
    estimator = {"name": name, "params": params or {}}
    return ModelSpec.model_validate({**spec.model_dump(), **changes, "estimator": estimator})


def as_version(artifacts: Artifacts, spec: ModelSpec, trained: TrainResult) -> ModelVersion:
    """A registered version holding `artifacts` (load_predictor reads its artifacts and classes)."""
    return ModelVersion(model=spec.name, version=1, run_id="r1", dataset_id="a" * 64, task=spec.task,
                        target=spec.target, signature=spec.signature, classes=classes_of(trained.pipeline, spec),
                        metric=spec.metric, artifacts=artifacts, estimator=spec.estimator.name, code_version="c",
                        holdout_key="runs/churn/r1/holdout.parquet")


def saved(objects, prefix: str, trained: TrainResult, spec: ModelSpec) -> Artifacts:
    return save_model(objects, prefix, trained.pipeline, spec, trained.holdout)


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return ModelSpec.model_validate(CHURN_SPEC)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    from cli.demo_data import churn_frame

    return churn_frame(rows=200, seed=11)


@pytest.fixture(scope="module")
def trained(spec, rows) -> TrainResult:
    """The churn pipeline, fitted once: the tests only read it."""
    return fit(rows, spec, "a" * 64)


@pytest.fixture
def objects() -> MemoryObjectStore:
    return MemoryObjectStore("mlops-test-data")


def test_a_linear_model_is_served_as_onnx_that_agrees_with_scikit_learn(objects, spec, trained):
    artifacts = saved(objects, "models/churn/v1/", trained, spec)
    assert artifacts.onnx_key == "models/churn/v1/model.onnx" and artifacts.skops_key == "models/churn/v1/model.skops"
    assert artifacts.skops_trusted_types == ["numpy.dtype"] and artifacts.format == "onnx"
    assert artifacts.onnx_sha256 == sha256(objects.get_bytes(artifacts.onnx_key))
    assert artifacts.skops_sha256 == sha256(objects.get_bytes(artifacts.skops_key))
    predictor = load_predictor(objects, as_version(artifacts, spec, trained), spec)
    assert predictor.format == "onnx" and predictor.classes == [0, 1]
    labels, probabilities = predictor.predict(trained.holdout)
    expected = trained.pipeline.predict_proba(trained.holdout[spec.feature_names])
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert all(type(label) is int for label in labels) and all(type(p) is float for p in probabilities[0])


def test_raw_instances_with_gaps_and_unseen_categories_predict(objects, spec, trained):
    predictor = load_predictor(objects, as_version(saved(objects, "models/churn/v1", trained, spec), spec, trained),
                               spec)
    rows = pd.DataFrame([
        {"tenure_months": 2, "monthly_charges": 120.0, "support_calls": 6, "plan": "basic"},
        {"tenure_months": None, "monthly_charges": "30", "support_calls": 0, "plan": "never-seen"},
        {"tenure_months": 60.0, "monthly_charges": 30.0, "support_calls": 0, "plan": None},
    ])
    labels, probabilities = predictor.predict(rows)
    assert len(labels) == 3 and all(abs(sum(p) - 1) < 1e-5 for p in probabilities)
    assert probabilities[0][1] > probabilities[2][1]  # the short-tenure, many-calls customer is likelier to leave
    assert predictor.predict(rows.iloc[0:0]) == ([], [])


def test_a_model_skl2onnx_cannot_convert_is_served_from_skops_predicting_once(objects, spec, rows, monkeypatch):
    from functions.registry import artifacts as module

    def unsupported(pipeline, spec):
        raise RuntimeError("Unable to find a shape calculator")

    monkeypatch.setattr(module, "to_onnx", unsupported)
    boosted = with_estimator(spec, "gradient_boosting", {"max_iter": 20})
    result = fit(rows, boosted, "a" * 64)
    artifacts = saved(objects, "models/churn/v2", result, boosted)
    assert artifacts.onnx_key is None and artifacts.onnx_skipped == "conversion failed (RuntimeError)"
    assert objects.keys("models/churn/v2/") == ["models/churn/v2/model.skops"]
    predictor = load_predictor(objects, as_version(artifacts, boosted, result), boosted)
    assert predictor.format == "skops"
    expected_labels = result.pipeline.predict(result.holdout[boosted.feature_names]).tolist()
    expected = result.pipeline.predict_proba(result.holdout[boosted.feature_names])
    calls = []
    monkeypatch.setattr(type(predictor.pipeline), "predict", lambda *a, **k: calls.append("predict"))
    labels, probabilities = predictor.predict(result.holdout)
    assert labels == expected_labels and calls == []  # the labels come from the probabilities: one pass
    np.testing.assert_allclose(probabilities, expected)
    records = result.holdout[boosted.feature_names].to_dict("records")
    assert predictor.predict_records(records) == (labels, probabilities)


def test_regression_models_predict_plain_floats(objects, spec, rows):
    regression = with_estimator(spec, "linear_regression", task="regression", metric="rmse", target="monthly_charges",
                                features=[f.model_dump() for f in spec.features if f.name != "monthly_charges"])
    result = fit(rows, regression, "b" * 64)
    predictor = load_predictor(objects, as_version(saved(objects, "models/r/v1", result, regression), regression,
                                                   result), regression)
    values, probabilities = predictor.predict(result.holdout)
    assert predictor.format == "onnx" and predictor.classes is None and probabilities is None
    assert all(type(v) is float for v in values)
    np.testing.assert_allclose(values, result.pipeline.predict(result.holdout[regression.feature_names]), rtol=1e-4)


def test_string_classes_survive_onnx(objects, spec, rows):
    result = fit(rows.assign(churned=rows["churned"].map({0: "stays", 1: "leaves"})), spec, "a" * 64)
    predictor = load_predictor(objects, as_version(saved(objects, "models/s/v1", result, spec), spec, result), spec)
    labels, _ = predictor.predict(result.holdout)
    assert predictor.format == "onnx" and predictor.classes == ["leaves", "stays"]
    assert set(labels) <= {"leaves", "stays"}


def test_onnx_that_disagrees_with_scikit_learn_is_not_stored(objects, spec, trained, monkeypatch):
    real = OnnxPredictor._run

    def drifting(self, feeds):
        labels, proba = real(self, feeds)
        return labels, proba + 0.01  # an ONNX graph that answers differently

    monkeypatch.setattr(OnnxPredictor, "_run", drifting)
    artifacts = saved(objects, "models/churn/v3", trained, spec)
    assert artifacts.onnx_key is None
    # The record says why, with what was measured on which rows.
    assert artifacts.onnx_skipped == (f"onnxruntime disagreed with scikit-learn: probabilities up to 0.01 apart "
                                      f"(tolerance 1e-06) on {len(trained.holdout) + 16} of the "
                                      f"{len(trained.holdout)} holdout rows and 16 edge rows")
    assert objects.keys("models/churn/v3/") == ["models/churn/v3/model.skops"]


@pytest.mark.parametrize("which", ["onnx", "skops"])
def test_a_tampered_artifact_is_refused(objects, spec, trained, which):
    artifacts = saved(objects, "models/churn/v1", trained, spec)
    if which == "skops":  # a version without ONNX is served from skops
        artifacts = artifacts.model_copy(update={"onnx_key": None, "onnx_sha256": None})
    objects.put(getattr(artifacts, f"{which}_key"), b"tampered")
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        load_predictor(objects, as_version(artifacts, spec, trained), spec)


def test_an_artifact_without_a_recorded_hash_is_refused(objects, spec, trained):
    artifacts = saved(objects, "models/churn/v1", trained, spec).model_copy(update={"onnx_sha256": None})
    with pytest.raises(IntegrityError, match="no sha256"):
        load_predictor(objects, as_version(artifacts, spec, trained), spec)


def test_skops_loads_trust_only_recorded_types_from_trusted_modules(spec, trained):
    data = sio.dumps(trained.pipeline)
    recorded = sio.get_untrusted_types(data=data)
    assert loads_skops(data, recorded).predict(trained.holdout[spec.feature_names]).shape == (40,)
    with pytest.raises(IntegrityError, match="untrusted types: os.system"):
        loads_skops(data, recorded + ["os.system"])
    with pytest.raises(IntegrityError, match="not recorded: numpy.dtype"):
        loads_skops(data, [])
    with pytest.raises(IntegrityError, match="not a readable skops file"):
        loads_skops(b"not a zip", recorded)


def test_a_model_holding_untrusted_types_is_not_saved(objects, spec, trained, monkeypatch):
    monkeypatch.setattr(sio, "get_untrusted_types", lambda data: ["numpy.dtype", "mypackage.Evil"])
    with pytest.raises(IntegrityError, match="mypackage.Evil"):
        saved(objects, "models/churn/v9", trained, spec)
    assert objects.keys("models/churn/v9/") == []


def test_a_throttled_artifact_write_is_retryable_and_the_retry_writes_the_same_keys(objects, spec, trained):
    objects.faults.inject("put_bytes", throttled(), after=False)
    with pytest.raises(RetryableError):
        saved(objects, "models/churn/v1", trained, spec)
    artifacts = saved(objects, "models/churn/v1", trained, spec)
    assert objects.keys("models/churn/v1/") == ["models/churn/v1/model.onnx", "models/churn/v1/model.skops"]
    assert load_predictor(objects, as_version(artifacts, spec, trained), spec).format == "onnx"


NAMES = {"tenure_months": "tenure (months)", "monthly_charges": "monthly.charges $",
         "support_calls": "Destek çağrıları", "plan": "план тарифа"}


def test_any_column_names_are_served_as_onnx_through_safe_input_names(objects, spec, rows):
    named = ModelSpec.model_validate({**spec.model_dump(), "target": "churned?", "entity_id": "client id",
                                      "features": [{"name": NAMES[f.name], "type": f.type} for f in spec.features]})
    result = fit(rows.rename(columns={**NAMES, "churned": "churned?", "customer_id": "client id"}), named, "a" * 64)
    artifacts = saved(objects, "models/named/v1", result, named)
    assert artifacts.format == "onnx" and artifacts.onnx_inputs == ["f0", "f1", "f2", "f3"]
    predictor = load_predictor(objects, as_version(artifacts, named, result), named)
    instances = pd.DataFrame([{"tenure (months)": 2, "monthly.charges $": 120.0, "Destek çağrıları": 6,
                               "план тарифа": "basic"}])
    _, probabilities = predictor.predict(instances)
    expected = result.pipeline.predict_proba(instances[named.feature_names].astype({"план тарифа": object}))
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_an_onnx_model_whose_inputs_are_named_after_the_features_still_predicts(objects, spec, trained):
    # Versions registered before inputs were f0, f1, ...: their inputs are the feature names, in the same order.
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.base import clone
    from sklearn.compose import ColumnTransformer

    pipeline = clone(trained.pipeline)
    preprocess = pipeline.named_steps["preprocess"]
    pipeline.set_params(preprocess=ColumnTransformer(
        [(name, step, [spec.feature_names[i] for i in columns]) for name, step, columns in preprocess.transformers],
        sparse_threshold=0))
    pipeline.fit(trained.train[spec.feature_names], trained.train["churned"])
    types = [(f.name, FloatTensorType([None, 1]) if f.type == "numeric" else StringTensorType([None, 1]))
             for f in spec.features]
    legacy = convert_sklearn(pipeline, initial_types=types, options={id(pipeline): {"zipmap": False}})
    predictor = OnnxPredictor(legacy.SerializeToString(), spec, [0, 1])
    assert predictor.inputs == spec.feature_names
    _, probabilities = predictor.predict(trained.holdout)
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(trained.holdout[spec.feature_names]), atol=1e-4)
