"""The columnar predict entry (what batch scoring uses) against the online one on the same rows.

predict_columns takes one array per feature; its checks, typed arrays and answers must be predict's
for the rows those columns hold: mixed numeric and categorical columns, categories never seen in
training, missing values, hostile values, the ONNX model in several runs and the scikit-learn fallback.
"""

import math

import numpy as np
import pytest

from functions.errors import RequestInvalid
from functions.serving.model_cache import LoadedModel
from functions.serving.predict import check_columns, check_instances, predict, predict_columns
from functions.shared import instances, models
from functions.shared.models import SkopsPredictor


def records(columns: dict) -> list[dict]:
    """The same rows as JSON objects (numpy scalars as Python values, as a request's JSON holds them)."""
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*(np.asarray(columns[n]).tolist() for n in names),
                                                                   strict=True)]


def mixed_columns(rows) -> dict:
    """Numbers as int64 and float64 columns, the plan as text with categories training never saw."""
    plans = rows["plan"].astype(str).to_numpy(dtype=object)
    plans[::7] = "enterprise-2030"  # unseen: the model's one-hot encoder ignores it, online and here
    plans[3] = "ünïcode ☃"
    return {
        "tenure_months": rows["tenure_months"].to_numpy(dtype=np.int64),
        "monthly_charges": rows["monthly_charges"].to_numpy(dtype=np.float64, copy=True),
        "support_calls": rows["support_calls"].to_numpy(dtype=np.float64),
        "plan": plans,
    }


def fallback(champion) -> LoadedModel:
    return LoadedModel(model="churn", version=1, spec=champion.record.trained_spec(champion.spec),
                       predictor=SkopsPredictor(champion.pipeline, champion.spec))


def onnx(champion, stores) -> LoadedModel:
    from functions.batch.jobs import VersionCache

    return VersionCache().get(stores.registry, stores.objects, "churn", 1)


@pytest.mark.parametrize("served", [onnx, "onnx in runs of 7 rows", "skops"])
def test_columns_get_the_online_answers_for_the_same_rows(churn_champion, stores, churn_rows, served, monkeypatch):
    if served == "skops":
        loaded = fallback(churn_champion)
    else:
        loaded = onnx(churn_champion, stores)
        assert loaded.predictor.format == "onnx"
        if served != onnx:
            monkeypatch.setattr(models, "RUN_ROWS", 7)  # 200 rows in 29 session runs, put together again
    columns = mixed_columns(churn_rows)

    answer = predict_columns(loaded, columns)
    online = predict(loaded, records(columns))

    assert isinstance(answer.predictions, np.ndarray) and answer.predictions.shape == (200,)
    assert answer.predictions.tolist() == online.predictions
    assert answer.probabilities is not None and answer.probabilities.shape == (200, 2)
    assert answer.probabilities.tolist() == online.probabilities


def test_the_typed_arrays_of_columns_are_those_of_records(churn_champion, churn_rows):
    features = churn_champion.spec.features
    columns = mixed_columns(churn_rows)
    columns["support_calls"] = np.array([None, "3", 2.0, math.inf, True] * 40, dtype=object)  # unchecked values
    columns["plan"] = np.array([None, 2.0, 3, "basic", np.nan] * 40, dtype=object)
    by_column = instances.column_arrays(columns, features)
    by_record = instances.feature_arrays(records(columns), features)
    for feature, ours, theirs in zip(features, by_column, by_record, strict=True):
        assert ours.shape == theirs.shape == (200, 1) and ours.dtype == theirs.dtype, feature.name
        np.testing.assert_array_equal(ours, theirs)


def hostile(rows: int = 12) -> dict:
    """Every way a column can break the signature, a few rows each (the others good)."""
    numbers = np.linspace(0, 50, rows)
    numbers[[1, 2, 3, 4]] = [np.nan, np.inf, -3.5e38, 3.5e38]
    text = np.array(["basic"] * rows, dtype=object)
    text[[0, 5, 6, 7]] = [None, "x" * 257, "bad \ud800 surrogate", 7]
    mixed = np.array([1, 2.5, "3", True, None, 10**400, -(10**39), 4] + [0] * (rows - 8), dtype=object)
    return {"tenure_months": numbers, "monthly_charges": mixed, "support_calls": np.zeros(rows, dtype=bool),
            "plan": text}


@pytest.mark.parametrize("change", [
    lambda c: c,
    lambda c: {k: v for k, v in c.items() if k != "plan"},  # a column missing
    lambda c: {**c, "extra": np.arange(len(c["plan"]))},  # a column the model does not take
    lambda c: {k: v[:1] for k, v in c.items()},
    lambda c: {k: v[:0] for k, v in c.items()},
])
def test_column_checks_find_what_the_row_checks_find(churn_champion, change):
    signature = churn_champion.spec.signature
    columns = change(hostile())
    problems, total = check_columns(columns, signature)
    expected = check_instances(records(columns), signature)
    assert problems == expected[:10] and total == len(expected)


def test_missing_values_and_hostile_columns_are_refused_naming_rows_as_online(churn_champion, stores, churn_rows):
    loaded = onnx(churn_champion, stores)
    columns = mixed_columns(churn_rows.head(20))
    columns["monthly_charges"][4] = np.nan  # a missing number (an empty cell)
    columns["plan"][9] = None  # a missing category
    with pytest.raises(RequestInvalid) as refused:
        predict_columns(loaded, columns)
    with pytest.raises(RequestInvalid) as online:
        predict(loaded, records(columns))
    assert refused.value.message == online.value.message
    assert refused.value.details == online.value.details
    assert [(p["instance"], p["field"]) for p in refused.value.details["problems"]] == [(4, "monthly_charges"),
                                                                                          (9, "plan")]


def test_columns_of_different_lengths_are_a_programming_error(churn_champion):
    with pytest.raises(ValueError, match="not of one length"):
        check_columns({"tenure_months": np.zeros(2), "plan": np.array(["a"], dtype=object)},
                      churn_champion.spec.signature)


def test_no_columns_no_rows(churn_champion, stores):
    loaded = onnx(churn_champion, stores)
    empty = {f.name: np.zeros(0, dtype=np.float64 if f.type == "numeric" else object) for f in loaded.signature}
    answer = predict_columns(loaded, empty)
    assert answer.predictions.shape == (0,)
    assert answer.probabilities is not None and answer.probabilities.shape == (0, 2)


def test_a_coded_column_is_checked_and_converted_as_its_values(churn_champion, stores, churn_rows):
    """A Parquet dictionary column (codes into distinct values, -1 missing) gives what its decoded values give."""
    loaded = onnx(churn_champion, stores)
    columns = mixed_columns(churn_rows.head(30))
    values, codes = np.unique(columns["plan"].astype(str), return_inverse=True)
    coded = {**columns, "plan": instances.Coded(codes=codes, values=values.astype(object))}
    assert predict_columns(loaded, coded).probabilities.tolist() == predict(loaded, records(columns)).probabilities

    hostile_values = np.array(["basic", "x" * 300, 4, "bad \udfff"], dtype=object)
    coded["plan"] = instances.Coded(codes=np.array([0, 1, -1, 2, 3, 0] * 5), values=hostile_values)
    decoded = {**columns, "plan": coded["plan"].decoded()}
    assert decoded["plan"][:4].tolist() == ["basic", "x" * 300, None, 4]
    problems, total = check_columns(coded, loaded.signature)
    expected = check_instances(records(decoded), loaded.signature)
    assert problems == expected[:10] and total == len(expected) == 20
    for ours, theirs in zip(instances.column_arrays(coded, loaded.signature),
                            instances.feature_arrays(records(decoded), loaded.signature), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("served", ["onnx", "skops"])
def test_a_regressor_gets_the_online_values_and_string_classes_stay_strings(churn_spec, churn_rows, served):
    from functions.registry.onnx_conversion import to_onnx
    from functions.spec import ModelSpec
    from functions.training.train import fit

    estimator = churn_spec.estimator.model_copy(update={"name": "gradient_boosting", "params": {"max_iter": 10}})
    specs = [
        churn_spec.model_copy(update={"estimator": estimator, "task": "regression", "metric": "rmse",
                                      "target": "monthly_charges",
                                      "features": churn_spec.features[:1] + churn_spec.features[2:]}),
        churn_spec,
    ]
    rows = churn_rows.assign(churned=churn_rows["churned"].map({0: "stays", 1: "leaves"}))
    for spec in (ModelSpec.model_validate(s.model_dump()) for s in specs):
        pipeline = fit(rows, spec, "c" * 64).pipeline
        classes = [str(c) for c in pipeline.classes_] if spec.task == "classification" else None
        predictor = (models.OnnxPredictor(to_onnx(pipeline, spec), spec, classes) if served == "onnx"
                     else SkopsPredictor(pipeline, spec))
        loaded = LoadedModel(model="churn", version=1, spec=spec, predictor=predictor)
        columns = {k: v for k, v in mixed_columns(rows).items() if k in spec.feature_names}
        answer = predict_columns(loaded, columns)
        online = predict(loaded, records(columns))
        assert answer.predictions.tolist() == online.predictions
        if spec.task == "regression":
            assert answer.predictions.dtype == np.float64 and answer.probabilities is None
        else:
            assert set(answer.predictions.tolist()) <= {"stays", "leaves"}
            assert answer.probabilities is not None and answer.probabilities.tolist() == online.probabilities
