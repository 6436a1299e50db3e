"""Unit tests of the one feature transformation shared by training and serving."""

import io
import math

import numpy as np
import pandas as pd
import pytest

from functions.errors import InvalidInput
from functions.shared.transform import MISSING, build_features, categories, category
from functions.spec import ModelSpec


@pytest.fixture
def spec():
    return ModelSpec.model_validate({
        "name": "m", "task": "regression", "target": "y",
        "features": [{"name": "b", "type": "categorical"}, {"name": "a", "type": "numeric"}],
        "estimator": {"name": "linear_regression"}, "metric": "rmse",
    })


def test_returns_exactly_the_spec_features_in_order_with_the_same_index(spec):
    frame = pd.DataFrame({"a": [1, 2], "extra": ["x", "y"], "b": ["u", "v"], "y": [0.0, 1.0]}, index=[10, 20])
    built = build_features(frame, spec)
    assert list(built.columns) == ["b", "a"]
    assert list(built.index) == [10, 20]


def test_numeric_values_become_float64_and_bad_values_nan(spec):
    frame = pd.DataFrame({"a": ["1.5", None, "abc", float("inf"), -np.inf, 3], "b": ["x"] * 6})
    built = build_features(frame, spec)
    assert built["a"].dtype == np.float64
    assert built["a"].iloc[0] == 1.5 and built["a"].iloc[5] == 3.0
    assert built["a"].iloc[1:5].isna().all()


def test_categorical_values_become_canonical_strings(spec):
    frame = pd.DataFrame({"a": [0] * 6, "b": [2.0, np.nan, None, np.int64(3), True, "basic"]})
    built = build_features(frame, spec)
    assert built["b"].dtype == object
    assert built["b"].tolist() == ["2", MISSING, MISSING, "3", "True", "basic"]
    assert all(isinstance(v, str) for v in built["b"])


def test_csv_rows_and_json_instances_give_identical_features(spec):
    # In a CSV a categorical code column with a gap is read as float (2.0); a request sends 2.
    csv = pd.read_csv(io.StringIO("a,b\n1,2\n2,\n3,7\n"))
    assert csv["b"].dtype == np.float64
    json_rows = pd.DataFrame([{"a": 1, "b": 2}, {"a": 2, "b": None}, {"a": 3.0, "b": 7}])
    pd.testing.assert_frame_equal(build_features(csv, spec), build_features(json_rows, spec))


def test_the_transformation_is_idempotent(spec):
    frame = pd.DataFrame({"a": ["1", None, "x"], "b": [1.0, None, "z"]})
    once = build_features(frame, spec)
    pd.testing.assert_frame_equal(build_features(once, spec), once)


def test_a_missing_feature_column_is_named(spec):
    with pytest.raises(InvalidInput, match="missing feature column\\(s\\): b"):
        build_features(pd.DataFrame({"a": [1.0]}), spec)


def test_category_handles_hostile_and_odd_values():
    assert category(float("nan")) == MISSING
    assert category(float("inf")) == "inf"
    assert category(1.25) == "1.25"
    huge = "x" * 100_000
    assert category(huge) == huge
    assert not math.isnan(float(category(1e300)))


@pytest.mark.parametrize("series", [
    pd.Series(["a", None, "b", "é"]),
    pd.Series(["a", float("nan"), "b"], dtype=object),
    pd.Series(["a", None, pd.NA], dtype=object),
    pd.Series(["a", 1, 2.0, None, True], dtype=object),
    pd.Series([1, -2, 3]),
    pd.Series([1, 2], dtype="uint64"),
    pd.Series([1, None], dtype="Int64"),
    pd.Series([True, False]),
    pd.Series([True, None], dtype="boolean"),
    pd.Series([1.0, 2.5, float("nan")]),
    pd.Series(["a", "b", None], dtype="category"),
    pd.Series(["x", None], dtype="string"),
    pd.Series([], dtype=object),
    pd.Series(["a", "b"], index=[10, 20]),
], ids=lambda series: str(series.dtype))
def test_a_whole_column_is_converted_as_each_of_its_values(series):
    # Text, integer and boolean columns take a path without a Python call per value: the same strings.
    converted = categories(series)
    assert converted.dtype == object and list(converted.index) == list(series.index)
    assert converted.tolist() == [category(value) for value in series.to_numpy(dtype=object)]
    assert all(type(value) is str for value in converted)
