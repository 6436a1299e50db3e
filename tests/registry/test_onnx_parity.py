"""ONNX and scikit-learn give the same answers for every supported estimator, in double precision.

Each pipeline is converted by the registry (save_model: parity checked on the holdout and edge rows
at registration) and its ONNX model then answers request instances through the serving path
(instances straight to arrays), while scikit-learn answers the same rows through the training
transformation (build_features on a DataFrame). The rows mix numeric and categorical features and
hold unseen categories, missing values and extreme numbers.
"""

import numpy as np
import pandas as pd
import pytest

from functions.registry.artifacts import load_predictor, save_model
from functions.shared.limits import MAX_NUMERIC_MAGNITUDE
from functions.shared.transform import build_features
from functions.spec import ModelSpec
from functions.training.train import fit
from tests.conftest import CHURN_SPEC
from tests.fakes import MemoryObjectStore
from tests.registry.test_artifacts import as_version, with_estimator

CLASSIFIERS = [("logistic_regression", {"C": 1.0, "max_iter": 500}), ("random_forest", {"n_estimators": 100}),
               ("gradient_boosting", {"max_iter": 30})]
REGRESSORS = [("linear_regression", {}), ("random_forest", {"n_estimators": 30}),
              ("gradient_boosting", {"max_iter": 30})]
EXTREMES = [MAX_NUMERIC_MAGNITUDE, -MAX_NUMERIC_MAGNITUDE, 3.4e38, 1e12, -1e12, 1e-320, -0.0, 2**70, 0]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    from cli.demo_data import churn_frame

    return churn_frame(rows=300, seed=5)


def probe_rows(spec: ModelSpec, holdout: pd.DataFrame) -> list[dict]:
    """Holdout rows as a client sends them, then each feature of the first one in turn extreme, unseen or missing."""
    base = holdout[spec.feature_names].head(40)
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in base.to_dict("records")]
    first = rows[0]
    for feature in spec.features:
        if feature.type == "numeric":
            rows += [{**first, feature.name: value} for value in [*EXTREMES, None]]
        else:
            rows += [{**first, feature.name: value} for value in ["never seen", "", "é" * 50, None, 3, 2.0]]
    return rows


def served(objects, spec: ModelSpec, rows: pd.DataFrame, prefix: str):
    result = fit(rows, spec, "c" * 64)
    artifacts = save_model(objects, prefix, result.pipeline, spec, result.holdout)
    assert artifacts.format == "onnx", artifacts.onnx_skipped  # parity held at registration
    return result, load_predictor(objects, as_version(artifacts, spec, result), spec)


@pytest.mark.parametrize(("estimator", "params"), CLASSIFIERS, ids=[name for name, _ in CLASSIFIERS])
def test_classifiers_agree_with_scikit_learn_through_the_serving_path(rows, estimator, params):
    spec = with_estimator(ModelSpec.model_validate(CHURN_SPEC), estimator, params)
    result, predictor = served(MemoryObjectStore("b"), spec, rows, f"models/churn/{estimator}")
    probes = probe_rows(spec, result.holdout)

    labels, probabilities = predictor.predict_records(probes)

    features = build_features(pd.DataFrame.from_records(probes, columns=spec.feature_names), spec)
    expected = result.pipeline.predict_proba(features)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    clear = np.abs(expected[:, 1] - expected[:, 0]) > 1e-5  # a near tie may go either way
    assert [a for a, c in zip(labels, clear, strict=True) if c] == \
        [b for b, c in zip(result.pipeline.predict(features).tolist(), clear, strict=True) if c]
    assert predictor.format == "onnx" and all(type(label) is int for label in labels)


@pytest.mark.parametrize(("estimator", "params"), REGRESSORS, ids=[name for name, _ in REGRESSORS])
def test_regressors_agree_with_scikit_learn_through_the_serving_path(rows, estimator, params):
    base = ModelSpec.model_validate(CHURN_SPEC)
    spec = with_estimator(base, estimator, params, task="regression", metric="rmse", target="monthly_charges",
                          features=[f.model_dump() for f in base.features if f.name != "monthly_charges"])
    result, predictor = served(MemoryObjectStore("b"), spec, rows, f"models/charges/{estimator}")
    probes = probe_rows(spec, result.holdout)

    values, probabilities = predictor.predict_records(probes)

    features = build_features(pd.DataFrame.from_records(probes, columns=spec.feature_names), spec)
    expected = result.pipeline.predict(features)
    assert probabilities is None and all(type(v) is float for v in values)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-6 * float(np.abs(expected).max()))


def test_string_classes_and_three_classes_agree(rows):
    spec = ModelSpec.model_validate(CHURN_SPEC)
    labelled = rows.assign(churned=np.where(rows["support_calls"] > 3, "calls", np.where(rows["churned"] == 1,
                                                                                           "leaves", "stays")))
    for estimator, params in CLASSIFIERS:
        each = with_estimator(spec, estimator, params)
        result, predictor = served(MemoryObjectStore("b"), each, labelled, f"models/s/{estimator}")
        probes = probe_rows(each, result.holdout)
        labels, probabilities = predictor.predict_records(probes)
        features = build_features(pd.DataFrame.from_records(probes, columns=each.feature_names), each)
        np.testing.assert_allclose(probabilities, result.pipeline.predict_proba(features), rtol=0, atol=1e-6)
        assert predictor.classes == ["calls", "leaves", "stays"] and set(labels) <= set(predictor.classes)
