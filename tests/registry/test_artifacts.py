"""Model artifacts: skops always, ONNX when it agrees; hashes and type allow-lists enforced on load."""

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from functions.errors import IntegrityError
from functions.registry.artifacts import OnnxPredictor, load_predictor, loads_skops, save_model
from functions.spec import ModelSpec
from functions.training.train import fit


def with_estimator(spec, name, params=None, **changes):
    return ModelSpec.model_validate({**spec.model_dump(), **changes,
                                     "estimator": {"name": name, "params": params or {}}})


@pytest.fixture
def trained(churn_spec, churn_rows):
    return fit(churn_rows, churn_spec, "a" * 64)


def test_a_linear_model_is_served_as_onnx_that_agrees_with_scikit_learn(pipeline_aws, churn_spec, trained):
    artifacts = save_model(pipeline_aws.s3, pipeline_aws.bucket, "models/churn/v1/", trained.pipeline, churn_spec,
                           trained.holdout)
    assert artifacts["onnx_key"] == "models/churn/v1/model.onnx" and artifacts["skops_key"] == "models/churn/v1/model.skops"
    assert artifacts["classes"] == [0, 1] and artifacts["skops_trusted_types"] == ["numpy.dtype"]
    predictor = load_predictor(pipeline_aws.s3, pipeline_aws.bucket, artifacts, churn_spec)
    assert predictor.format == "onnx" and predictor.classes == [0, 1]
    labels, probabilities = predictor.predict(trained.holdout)
    expected = trained.pipeline.predict_proba(trained.holdout[churn_spec.feature_names])
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert all(type(label) is int for label in labels) and all(type(p) is float for p in probabilities[0])


def test_raw_instances_with_gaps_and_unseen_categories_predict(pipeline_aws, churn_spec, trained):
    artifacts = save_model(pipeline_aws.s3, pipeline_aws.bucket, "models/churn/v1", trained.pipeline, churn_spec,
                           trained.holdout)
    predictor = load_predictor(pipeline_aws.s3, pipeline_aws.bucket, artifacts, churn_spec)
    rows = pd.DataFrame([
        {"tenure_months": 2, "monthly_charges": 120.0, "support_calls": 6, "plan": "basic"},
        {"tenure_months": None, "monthly_charges": "30", "support_calls": 0, "plan": "never-seen"},
        {"tenure_months": 60.0, "monthly_charges": 30.0, "support_calls": 0, "plan": None},
    ])
    labels, probabilities = predictor.predict(rows)
    assert len(labels) == 3 and all(abs(sum(p) - 1) < 1e-5 for p in probabilities)
    assert probabilities[0][1] > probabilities[2][1]  # the short-tenure, many-calls customer is likelier to leave
    assert predictor.predict(rows.iloc[0:0]) == ([], [])


def test_a_model_skl2onnx_cannot_convert_is_served_from_skops(pipeline_aws, churn_spec, churn_rows):
    spec = with_estimator(churn_spec, "gradient_boosting", {"max_iter": 20})
    result = fit(churn_rows, spec, "a" * 64)
    artifacts = save_model(pipeline_aws.s3, pipeline_aws.bucket, "models/churn/v2", result.pipeline, spec,
                           result.holdout)
    assert "onnx_key" not in artifacts and artifacts["onnx_skipped"].startswith("conversion failed")
    predictor = load_predictor(pipeline_aws.s3, pipeline_aws.bucket, artifacts, spec)
    assert predictor.format == "skops"
    labels, probabilities = predictor.predict(result.holdout)
    assert labels == result.pipeline.predict(result.holdout[spec.feature_names]).tolist()
    np.testing.assert_allclose(probabilities, result.pipeline.predict_proba(result.holdout[spec.feature_names]))


def test_regression_models_predict_plain_floats(pipeline_aws, churn_spec, churn_rows):
    spec = with_estimator(churn_spec, "linear_regression", task="regression", metric="rmse", target="monthly_charges",
                          features=[f.model_dump() for f in churn_spec.features if f.name != "monthly_charges"])
    result = fit(churn_rows, spec, "b" * 64)
    artifacts = save_model(pipeline_aws.s3, pipeline_aws.bucket, "models/r/v1", result.pipeline, spec, result.holdout)
    predictor = load_predictor(pipeline_aws.s3, pipeline_aws.bucket, artifacts, spec)
    values, probabilities = predictor.predict(result.holdout)
    assert predictor.format == "onnx" and predictor.classes is None and probabilities is None
    assert all(type(v) is float for v in values)
    np.testing.assert_allclose(values, result.pipeline.predict(result.holdout[spec.feature_names]), rtol=1e-4)


def test_string_classes_survive_onnx(pipeline_aws, churn_spec, churn_rows):
    rows = churn_rows.assign(churned=churn_rows["churned"].map({0: "stays", 1: "leaves"}))
    result = fit(rows, churn_spec, "a" * 64)
    artifacts = save_model(pipeline_aws.s3, pipeline_aws.bucket, "models/s/v1", result.pipeline, churn_spec,
                           result.holdout)
    predictor = load_predictor(pipeline_aws.s3, pipeline_aws.bucket, artifacts, churn_spec)
    labels, _ = predictor.predict(result.holdout)
    assert predictor.format == "onnx" and predictor.classes == ["leaves", "stays"] and set(labels) <= {"leaves", "stays"}


def test_onnx_that_disagrees_with_scikit_learn_is_not_stored(pipeline_aws, churn_spec, trained, monkeypatch):
    real = OnnxPredictor._predict

    def drifting(self, features):
        labels, proba = real(self, features)
        return labels, proba + 0.01  # an ONNX graph that answers differently

    monkeypatch.setattr(OnnxPredictor, "_predict", drifting)
    artifacts = save_model(pipeline_aws.s3, pipeline_aws.bucket, "models/churn/v3", trained.pipeline, churn_spec,
                           trained.holdout)
    assert "onnx_key" not in artifacts and "disagreed" in artifacts["onnx_skipped"]
    listing = pipeline_aws.s3.list_objects_v2(Bucket=pipeline_aws.bucket, Prefix="models/churn/v3/")
    assert [o["Key"] for o in listing["Contents"]] == ["models/churn/v3/model.skops"]


@pytest.mark.parametrize("which", ["onnx", "skops"])
def test_a_tampered_artifact_is_refused(pipeline_aws, churn_spec, trained, which):
    artifacts = save_model(pipeline_aws.s3, pipeline_aws.bucket, "models/churn/v1", trained.pipeline, churn_spec,
                           trained.holdout)
    if which == "skops":
        artifacts = {k: v for k, v in artifacts.items() if not k.startswith("onnx")}
    pipeline_aws.s3.put_object(Bucket=pipeline_aws.bucket, Key=artifacts[f"{which}_key"], Body=b"tampered")
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        load_predictor(pipeline_aws.s3, pipeline_aws.bucket, artifacts, churn_spec)


def test_an_artifact_without_a_recorded_hash_is_refused(pipeline_aws, churn_spec, trained):
    artifacts = save_model(pipeline_aws.s3, pipeline_aws.bucket, "models/churn/v1", trained.pipeline, churn_spec,
                           trained.holdout)
    with pytest.raises(IntegrityError, match="no sha256"):
        load_predictor(pipeline_aws.s3, pipeline_aws.bucket, {**artifacts, "onnx_sha256": None}, churn_spec)


def test_skops_loads_trust_only_recorded_types_from_trusted_modules(trained):
    data = sio.dumps(trained.pipeline)
    recorded = sio.get_untrusted_types(data=data)
    assert loads_skops(data, recorded).predict(trained.holdout[trained.holdout.columns[:4]]).shape == (40,)
    with pytest.raises(IntegrityError, match="untrusted types: os.system"):
        loads_skops(data, recorded + ["os.system"])
    with pytest.raises(IntegrityError, match="not recorded: numpy.dtype"):
        loads_skops(data, [])
    with pytest.raises(IntegrityError, match="not a readable skops file"):
        loads_skops(b"not a zip", recorded)


def test_a_model_holding_untrusted_types_is_not_saved(pipeline_aws, churn_spec, trained, monkeypatch):
    monkeypatch.setattr(sio, "get_untrusted_types", lambda data: ["numpy.dtype", "mypackage.Evil"])
    with pytest.raises(IntegrityError, match="mypackage.Evil"):
        save_model(pipeline_aws.s3, pipeline_aws.bucket, "models/churn/v9", trained.pipeline, churn_spec,
                   trained.holdout)
    assert "Contents" not in pipeline_aws.s3.list_objects_v2(Bucket=pipeline_aws.bucket, Prefix="models/churn/v9/")
