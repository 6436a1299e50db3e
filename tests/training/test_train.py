"""Unit tests of training: the pipeline a spec describes, a reproducible split, real fits."""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from functions.errors import DatasetInvalid, SpecInvalid
from functions.shared.transform import model_input
from functions.spec import ModelSpec
from functions.training.train import build_pipeline, fit, seed_for, split


def with_estimator(spec, name, params=None, **changes):
    estimator = spec.estimator.model_copy(update={"name": name, "params": params or {}})
    return spec.model_copy(update={"estimator": estimator, **changes})


def test_the_pipeline_preprocesses_each_feature_type_then_estimates(churn_spec):
    pipeline = build_pipeline(churn_spec, seed=3)
    preprocess, estimator = pipeline.named_steps["preprocess"], pipeline.named_steps["estimator"]
    assert isinstance(preprocess, ColumnTransformer) and isinstance(estimator, LogisticRegression)
    transformers = {name: (steps, columns) for name, steps, columns in preprocess.transformers}
    assert transformers["numeric"][1] == [0, 1, 2] and transformers["categorical"][1] == [3]  # by position
    assert isinstance(transformers["numeric"][0].named_steps["scale"], StandardScaler)
    encoder = transformers["categorical"][0].named_steps["encode"]
    assert isinstance(encoder, OneHotEncoder) and encoder.handle_unknown == "ignore"
    assert estimator.max_iter == 300 and estimator.random_state == 3


def test_a_fit_learns_the_signal_and_handles_gaps_and_unseen_categories(churn_spec, churn_rows):
    rows = churn_rows.astype({"tenure_months": float})
    rows.loc[::10, "tenure_months"] = np.nan
    rows.loc[::7, "plan"] = None
    result = fit(rows, churn_spec, dataset_id="a" * 64)
    assert len(result.holdout) == 40 and len(result.train) == 160
    features = result.holdout[churn_spec.feature_names].assign(plan="enterprise")  # never seen in training
    assert result.pipeline.predict_proba(features).shape == (40, 2)
    assert result.pipeline.score(result.holdout[churn_spec.feature_names], result.holdout["churned"]) > 0.6
    assert result.params["max_iter"] == 300


def test_the_same_data_gives_the_same_split_and_model(churn_spec, churn_rows):
    one, two = fit(churn_rows, churn_spec, "a" * 64), fit(churn_rows, churn_spec, "a" * 64)
    assert one.holdout.index.tolist() == two.holdout.index.tolist()
    np.testing.assert_array_equal(one.pipeline.predict_proba(one.holdout[churn_spec.feature_names]),
                                  two.pipeline.predict_proba(two.holdout[churn_spec.feature_names]))
    other = fit(churn_rows, churn_spec, "b" * 64)
    assert other.holdout.index.tolist() != one.holdout.index.tolist()
    assert seed_for("a" * 64) == one.seed != other.seed


def test_classification_splits_are_stratified(churn_spec, churn_rows):
    spec = churn_spec.model_copy(update={"holdout_fraction": 0.25})
    frame = churn_rows.assign(churned=[1 if i % 10 == 0 else 0 for i in range(len(churn_rows))])  # 10% positives
    train, holdout, stratified = split(frame, spec, seed=1)
    assert stratified and holdout["churned"].sum() == 5 and train["churned"].sum() == 15


def test_a_class_too_rare_to_stratify_falls_back_to_a_plain_split(churn_spec, churn_rows):
    frame = churn_rows.assign(churned=[1 if i == 0 else 0 for i in range(len(churn_rows))])
    _, holdout, stratified = split(frame, churn_spec, seed=1)
    assert not stratified and len(holdout) == 40


def test_regression_and_tree_estimators_fit(churn_spec, churn_rows):
    spec = with_estimator(churn_spec, "gradient_boosting", {"max_iter": 20}, task="regression", metric="rmse",
                          target="monthly_charges", features=churn_spec.features[:1] + churn_spec.features[2:])
    spec = ModelSpec.model_validate(spec.model_dump())
    result = fit(churn_rows, spec, "c" * 64)
    assert isinstance(result.pipeline.named_steps["estimator"], HistGradientBoostingRegressor)
    assert result.pipeline.predict(result.holdout[spec.feature_names]).dtype == np.float64
    forest = fit(churn_rows, with_estimator(churn_spec, "random_forest", {"n_estimators": 10}), "c" * 64)
    assert isinstance(forest.pipeline.named_steps["estimator"], RandomForestClassifier)
    assert forest.pipeline.named_steps["estimator"].random_state == forest.seed


def test_unknown_or_invalid_parameters_are_spec_errors(churn_spec, churn_rows):
    with pytest.raises(SpecInvalid, match="does not take parameter\\(s\\) bogus"):
        build_pipeline(with_estimator(churn_spec, "logistic_regression", {"bogus": 1}))
    with pytest.raises(SpecInvalid, match="'C'"):
        fit(churn_rows, with_estimator(churn_spec, "logistic_regression", {"C": -1.0}), "a" * 64)


def test_data_that_cannot_train_is_a_dataset_error(churn_spec, churn_rows):
    with pytest.raises(DatasetInvalid, match="too few"):
        fit(churn_rows.head(5), churn_spec, "a" * 64)
    with pytest.raises(DatasetInvalid, match="single class"):
        fit(churn_rows.assign(churned=0), churn_spec, "a" * 64)
    with pytest.raises(DatasetInvalid, match="target column 'churned' is missing"):
        fit(churn_rows.drop(columns=["churned"]), churn_spec, "a" * 64)


def test_a_numeric_feature_empty_in_the_training_rows_is_a_dataset_error(churn_spec, churn_rows):
    rows = churn_rows.reset_index(drop=True)
    train, _, _ = split(model_input(rows, churn_spec).reset_index(drop=True), churn_spec, seed_for("a" * 64))
    rows.loc[train.index, "tenure_months"] = np.nan  # values only in the holdout rows
    with pytest.raises(DatasetInvalid, match="'tenure_months' have no values in the training rows"):
        fit(rows, churn_spec, "a" * 64)


def test_string_labels_train_too(churn_spec, churn_rows):
    rows = churn_rows.assign(churned=churn_rows["churned"].map({0: "stays", 1: "leaves"}))
    result = fit(rows, churn_spec, "a" * 64)
    assert list(result.pipeline.classes_) == ["leaves", "stays"]
    assert pd.Series(result.pipeline.predict(result.holdout[churn_spec.feature_names])).isin(["leaves", "stays"]).all()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_parameters_are_refused_not_stored_as_null(churn_spec, value):
    from pydantic import ValidationError

    raw = {**churn_spec.model_dump(), "estimator": {"name": "logistic_regression", "params": {"C": value}}}
    with pytest.raises(ValidationError, match="'C' must be a finite number"):
        ModelSpec.model_validate(raw)


def test_with_an_entity_id_no_entity_is_on_both_sides_of_the_split(churn_spec, churn_rows):
    # Each customer appears in several rows (later snapshots): a plain split would grade the model on
    # customers it was trained on.
    snapshots = pd.concat([churn_rows.assign(tenure_months=churn_rows["tenure_months"] + i) for i in range(4)],
                          ignore_index=True)
    result = fit(snapshots, churn_spec, "a" * 64)
    train_ids = set(snapshots.loc[result.train.index, "customer_id"])
    holdout_ids = set(snapshots.loc[result.holdout.index, "customer_id"])
    assert result.grouped and train_ids.isdisjoint(holdout_ids)
    assert len(holdout_ids) == 40 and len(result.holdout) == 160  # a fifth of the customers, all their rows
    assert result.stratified  # and both classes in proportion
    assert abs(result.holdout["churned"].mean() - snapshots["churned"].mean()) < 0.05
    regression = ModelSpec.model_validate({**churn_spec.model_dump(), "task": "regression", "metric": "rmse",
                                           "target": "monthly_charges", "features": churn_spec.model_dump()[
                                               "features"][:1] + churn_spec.model_dump()["features"][2:],
                                           "estimator": {"name": "linear_regression"}})
    result = fit(snapshots, regression, "a" * 64)
    assert result.grouped and not result.stratified
    assert set(snapshots.loc[result.train.index, "customer_id"]).isdisjoint(
        snapshots.loc[result.holdout.index, "customer_id"])


def test_unique_entities_split_as_plain_rows_and_one_entity_cannot_be_split(churn_spec, churn_rows):
    assert not fit(churn_rows, churn_spec, "a" * 64).grouped  # one row per customer: nothing to group
    with pytest.raises(DatasetInvalid, match="every row is of one entity"):
        fit(churn_rows.assign(customer_id=7), churn_spec, "a" * 64)


def test_a_class_of_the_spec_left_out_of_the_training_rows_is_a_dataset_error(churn_spec, churn_rows):
    spec = churn_spec.model_copy(update={"classes": [0, 1, 2], "entity_id": None})
    rows = churn_rows.astype({"churned": int}).reset_index(drop=True)
    rows.loc[0, "churned"] = 2  # one row: too few to stratify, so it may land in the holdout
    data = model_input(rows, spec)
    in_holdout = next(d * 64 for d in "0123456789abcdef" if 0 in split(data, spec, seed_for(d * 64))[1].index)
    with pytest.raises(DatasetInvalid, match="class\\(es\\) 2 of the target 'churned' have too few rows"):
        fit(rows, spec, in_holdout)
    in_training = next(d * 64 for d in "0123456789abcdef" if 0 in split(data, spec, seed_for(d * 64))[0].index)
    assert list(fit(rows, spec, in_training).pipeline.classes_) == [0, 1, 2]
