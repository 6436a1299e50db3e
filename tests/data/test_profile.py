"""Unit tests: the statistical profile of a dataset version (what drift checks compare with)."""

import json

import numpy as np
import pandas as pd
import pytest

from functions.data.profile import OTHER, profile_frame
from functions.shared.transform import MISSING


def test_profile_describes_numeric_columns_for_drift_checks():
    values = np.arange(100, dtype=float)
    frame = pd.DataFrame({"x": np.append(values, [np.nan, np.inf])})
    column = profile_frame(frame)["columns"]["x"]
    assert column["kind"] == "numeric" and column["missing"] == 1
    assert len(column["quantiles"]) == 101 and column["quantiles"][0] == 0.0 and column["quantiles"][-1] == 99.0
    assert len(column["bin_edges"]) == 11 and column["bin_edges"] == sorted(column["bin_edges"])
    assert len(column["bin_fractions"]) == 10 and sum(column["bin_fractions"]) == pytest.approx(1.0)
    assert column["mean"] == pytest.approx(49.5) and column["min"] == 0.0 and column["max"] == 99.0


def test_profile_describes_categorical_columns_with_top_values():
    values = [f"v{i}" for i in range(60)] * 2 + ["common"] * 30 + [None] * 10
    column = profile_frame(pd.DataFrame({"c": values}))["columns"]["c"]
    assert column["kind"] == "categorical" and column["missing"] == 10
    frequencies = column["frequencies"]
    assert len(frequencies) == 51 and OTHER in frequencies
    assert frequencies["common"] == pytest.approx(30 / 160) and MISSING in frequencies
    assert sum(frequencies.values()) == pytest.approx(1.0)


def test_profile_is_strict_json_even_for_hostile_columns():
    frame = pd.DataFrame({
        "empty": [np.nan, np.nan, np.nan],
        "huge": ["x" * 1_000_000, "y", "y"],
        "flag": [True, False, True],
        "single": [5.0, np.nan, np.nan],
    })
    profile = profile_frame(frame)
    text = json.dumps(profile, allow_nan=False)  # raises on NaN/inf
    assert len(text) < 5_000  # a megabyte value does not end up in the profile
    assert profile["rows"] == 3
    assert profile["columns"]["empty"]["quantiles"] == [] and profile["columns"]["empty"]["mean"] is None
    assert profile["columns"]["flag"]["kind"] == "categorical"
    assert profile["columns"]["single"]["std"] == 0.0


def test_coarser_quantiles_on_request():
    column = profile_frame(pd.DataFrame({"x": range(10)}), quantile_points=21)["columns"]["x"]
    assert len(column["quantiles"]) == 21


def test_profile_of_values_whose_range_overflows():
    frame = pd.DataFrame({"x": [-1.7e308, 1.7e308] * 10})  # neighbours 3.4e308 apart: lerp overflows
    column = profile_frame(frame)["columns"]["x"]
    json.dumps(column, allow_nan=False)
    assert column["min"] == -1.7e308 and column["max"] == 1.7e308
    assert column["quantiles"] == sorted(column["quantiles"]) and None not in column["quantiles"]
    assert column["bin_edges"] == sorted(column["bin_edges"]) and sum(column["bin_fractions"]) == pytest.approx(1.0)
