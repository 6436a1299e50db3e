"""Reading an upload: exactly the uploaded version, and good and hostile files into a frame or a clear reason."""

import io

import pandas as pd
import pytest

from functions.errors import DatasetInvalid, NotFound, RetryableError
from functions.shared import tabular
from functions.shared.tabular import read_dataset, read_upload
from tests.fakes import MemoryObjectStore, throttled


@pytest.fixture
def objects() -> MemoryObjectStore:
    return MemoryObjectStore()


def test_reads_the_given_version_not_the_latest(objects):
    first = objects.put("datasets/m/f.csv", b"a\n1\n")
    objects.put("datasets/m/f.csv", b"a\n2\n")
    assert read_upload(objects, "datasets/m/f.csv", first) == b"a\n1\n"
    assert read_upload(objects, "datasets/m/f.csv", None) == b"a\n2\n"


def test_a_url_encoded_key_from_an_event_is_decoded_when_needed(objects):
    version = objects.put("datasets/m/my file.csv", b"a\n1\n")
    assert read_upload(objects, "datasets/m/my+file.csv", version) == b"a\n1\n"


def test_a_vanished_upload_is_not_found(objects):
    with pytest.raises(NotFound, match="no longer exists"):
        read_upload(objects, "datasets/m/gone.csv", None)


def test_a_throttled_read_is_retryable_not_a_vanished_upload(objects):
    objects.put("datasets/m/f.csv", b"a\n1\n")
    objects.faults.inject("get_bytes", throttled())
    with pytest.raises(RetryableError):
        read_upload(objects, "datasets/m/f.csv", None)


def test_an_upload_too_large_for_lambda_is_refused(objects, monkeypatch):
    monkeypatch.setattr(tabular, "MAX_DATASET_BYTES", 10)
    objects.put("datasets/m/big.csv", b"a\n" + b"1\n" * 20)
    with pytest.raises(DatasetInvalid, match="larger than"):
        read_upload(objects, "datasets/m/big.csv", None)


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

    from functions.shared import tabular

    monkeypatch.setattr(tabular, "MAX_COLUMNS", 10)
    parsed = []
    monkeypatch.setattr(tabular.pd, "read_csv", lambda *a, **k: parsed.append(1) or real_pandas.DataFrame())
    data = (",".join(f"c{i}" for i in range(11)) + "\n" + ",".join("1" * 11) + "\n").encode()
    with pytest.raises(DatasetInvalid, match="has 11 columns; at most 10"):
        read_dataset(data, "d/m/f.csv")
    assert parsed == []
    buffer = io.BytesIO()
    pd.DataFrame({f"c{i}": [1] for i in range(11)}).to_parquet(buffer, index=False)
    with pytest.raises(DatasetInvalid, match="has 11 columns; at most 10"):
        read_dataset(buffer.getvalue(), "d/m/f.parquet")


def test_a_parquet_file_that_unpacks_too_large_is_refused_from_its_metadata(monkeypatch):
    from functions.shared import tabular

    monkeypatch.setattr(tabular, "MAX_CELLS", 1_000)
    buffer = io.BytesIO()
    pd.DataFrame({"a": [0] * 600, "b": [0] * 600}).to_parquet(buffer, index=False)  # compresses to almost nothing
    with pytest.raises(DatasetInvalid, match="holds 600 rows of 2 columns; at most 1000 values"):
        read_dataset(buffer.getvalue(), "d/m/f.parquet")


@pytest.mark.parametrize(
    "column, kind",
    [
        ([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], "struct<a: int64, b: string>"),
        ([[1, 2], [3]], "list<element: int64>"),
        ([[("k", 1)], [("k", 2)]], "map<string, int64>"),
    ],
)
def test_a_nested_parquet_column_is_refused_naming_it_and_its_type(column, kind):
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = pa.array(column, type=pa.map_(pa.string(), pa.int64())) if kind.startswith("map") else pa.array(column)
    buffer = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2], "nested col": values}), buffer)
    with pytest.raises(DatasetInvalid) as caught:
        read_dataset(buffer.getvalue(), "d/m/f.parquet")
    assert f"nested column(s): 'nested col' ({kind})" in caught.value.message


def test_a_parquet_column_without_a_name_is_refused():
    buffer = io.BytesIO()
    pd.DataFrame({"": [1, 2], "b": [3, 4]}).to_parquet(buffer, index=False)
    with pytest.raises(DatasetInvalid, match="has a column without a name"):
        read_dataset(buffer.getvalue(), "d/m/f.parquet")
