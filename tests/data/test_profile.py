"""Unit tests: reading uploads (good and hostile files) and the dataset profile."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from functions.data.profile import OTHER, profile_frame, read_dataset
from functions.errors import DatasetInvalid
from functions.features.transform import MISSING


def test_reads_csv_and_parquet_by_suffix():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert read_dataset(frame.to_csv(index=False).encode(), "datasets/m/f.CSV").equals(frame)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    assert read_dataset(buffer.getvalue(), "datasets/m/f.parquet")["a"].tolist() == [1, 2]


@pytest.mark.parametrize(
    "data, key, expected",
    [
        (b"", "d/m/f.csv", "empty"),
        (b"  \n\n", "d/m/f.csv", "empty"),
        (b"a,b\n", "d/m/f.csv", "header but no rows"),
        (b'a,b\n"unterminated,1\n1,2,3,4\n', "d/m/f.csv", "not a readable CSV"),
        (b"a,b\n1,2\n3,4,5,6\n", "d/m/f.csv", "near line 3"),
        (b"\xff\xfe\x00a,b\n\x80\x81,2\n", "d/m/f.csv", "UTF-8"),
        (b"PAR1 not really parquet", "d/m/f.parquet", "not a readable Parquet"),
        (b"a,b\n1,2\n", "d/m/f.json", "neither a .csv nor a .parquet"),
    ],
)
def test_unusable_files_fail_with_a_readable_message(data, key, expected):
    with pytest.raises(DatasetInvalid) as caught:
        read_dataset(data, key)
    assert expected in caught.value.message
    assert "Traceback" not in caught.value.message and "Error tokenizing" not in caught.value.message
    assert caught.value.status == 422


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


def test_rows_with_a_trailing_comma_keep_their_values_in_their_columns():
    # pandas would take the first field as the index and shift every value one column left.
    frame = read_dataset(b"a,b\n1,2,\n3,4,\n", "d/m/f.csv")
    assert frame["a"].tolist() == [1, 3] and frame["b"].tolist() == [2, 4]


def test_rows_with_more_fields_than_the_header_are_refused():
    with pytest.raises(DatasetInvalid, match="more fields than its header"):
        read_dataset(b"a,b\n1,2,3\n4,5,6\n", "d/m/f.csv")


def test_duplicate_column_names_are_refused_not_renamed():
    with pytest.raises(DatasetInvalid, match="duplicate column names: 'x'"):
        read_dataset(b"x,y,x\n1,2,3\n", "d/m/f.csv")
    assert read_dataset(b"x,,\n1,2,3\n", "d/m/f.csv").shape == (1, 3)  # unnamed columns are not duplicates


def test_a_very_wide_file_is_refused_before_it_is_parsed(monkeypatch):
    import pandas as real_pandas

    from functions.data import profile

    monkeypatch.setattr(profile, "MAX_COLUMNS", 10)
    parsed = []
    monkeypatch.setattr(profile.pd, "read_csv", lambda *a, **k: parsed.append(1) or real_pandas.DataFrame())
    data = (",".join(f"c{i}" for i in range(11)) + "\n" + ",".join("1" * 11) + "\n").encode()
    with pytest.raises(DatasetInvalid, match="has 11 columns; at most 10"):
        read_dataset(data, "d/m/f.csv")
    assert parsed == []
    buffer = io.BytesIO()
    pd.DataFrame({f"c{i}": [1] for i in range(11)}).to_parquet(buffer, index=False)
    with pytest.raises(DatasetInvalid, match="has 11 columns; at most 10"):
        read_dataset(buffer.getvalue(), "d/m/f.parquet")


def test_a_parquet_file_that_unpacks_too_large_is_refused_from_its_metadata(monkeypatch):
    from functions.data import profile

    monkeypatch.setattr(profile, "MAX_CELLS", 1_000)
    buffer = io.BytesIO()
    pd.DataFrame({"a": [0] * 600, "b": [0] * 600}).to_parquet(buffer, index=False)  # compresses to almost nothing
    with pytest.raises(DatasetInvalid, match="holds 600 rows of 2 columns; at most 1000 values"):
        read_dataset(buffer.getvalue(), "d/m/f.parquet")


def test_profile_of_values_whose_range_overflows():
    frame = pd.DataFrame({"x": [-1.7e308, 1.7e308] * 10})  # neighbours 3.4e308 apart: lerp overflows
    column = profile_frame(frame)["columns"]["x"]
    json.dumps(column, allow_nan=False)
    assert column["min"] == -1.7e308 and column["max"] == 1.7e308
    assert column["quantiles"] == sorted(column["quantiles"]) and None not in column["quantiles"]
    assert column["bin_edges"] == sorted(column["bin_edges"]) and sum(column["bin_fractions"]) == pytest.approx(1.0)
