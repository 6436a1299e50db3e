"""Reading an uploaded dataset file (CSV or Parquet) into a frame, or a clear reason why not; and the
run's typed copy of it.

Limits are checked before the table is parsed where the format allows it: a file of a million
columns would take a function's whole time to parse. The upload is parsed once per run
(RegisterDataset): the typed frame is stored as Parquet (`frame_bytes`), and every later step
reads that copy (`read_frame`, verified by its sha256), never the upload again.
"""

import csv
import io
import re
import warnings
from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

import pandas as pd

from functions.errors import DatasetInvalid, NotFound, ObjectTooLarge, shown
from functions.storage.objects import ObjectStore, read_version

if TYPE_CHECKING:
    import pyarrow as pa

# A profile of even 3,000 of the narrowest columns does not fit its DynamoDB item.
MAX_COLUMNS = 5_000
MAX_CELLS = 50_000_000  # rows x columns of a Parquet file: about what a 256 MB CSV holds
# A Lambda function holds the file, its frame and a model in memory: larger data belongs to
# SageMaker training jobs or AWS Batch, not here.
MAX_DATASET_BYTES = 256 * 1024 * 1024


def read_upload(objects: ObjectStore, key: str, version_id: str | None) -> bytes:
    """The bytes of exactly the uploaded dataset version."""
    try:
        return read_version(objects, key, version_id, max_bytes=MAX_DATASET_BYTES, what="uploaded dataset")
    except ObjectTooLarge as error:
        raise DatasetInvalid(f"the dataset {key.rsplit('/', 1)[-1]!r} is larger than "
                             f"{MAX_DATASET_BYTES // 2**20} MB, the limit of in-Lambda training") from error


def upload_metadata(objects: ObjectStore, key: str, version_id: str | None) -> dict[str, str]:
    """The user metadata of exactly the uploaded object version (names in lower case)."""
    for candidate in dict.fromkeys([key, unquote_plus(key)]):
        try:
            return objects.head(candidate, version_id=version_id).metadata
        except NotFound:
            continue
    raise NotFound(f"the uploaded dataset {key} (version {version_id}) no longer exists")


def read_dataset(data: bytes, key: str) -> pd.DataFrame:
    """The rows of an uploaded file (.csv or .parquet, by its key); DatasetInvalid when unusable."""
    name = key.rsplit("/", 1)[-1]
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in {"csv", "parquet"}:
        raise DatasetInvalid(f"the dataset {name!r} is neither a .csv nor a .parquet file")
    if not data or data.isspace():  # not data.strip(): that copies the whole file
        raise DatasetInvalid(f"the dataset {name!r} is empty: the file has no content")
    if suffix == "csv":
        frame = _read_csv(data, name)
    else:
        try:
            import pyarrow.parquet as pq

            metadata = pq.read_metadata(io.BytesIO(data))
        except Exception as error:
            raise DatasetInvalid(f"the dataset {name!r} is not a readable Parquet file") from error
        _check_width(metadata.num_columns, name)
        _check_flat(metadata.schema.to_arrow_schema(), name)
        # The size limit is on the compressed file: a few MB of Parquet can hold billions of values.
        if metadata.num_rows * metadata.num_columns > MAX_CELLS:
            raise DatasetInvalid(f"the dataset {name!r} holds {metadata.num_rows} rows of {metadata.num_columns} "
                                 f"columns; at most {MAX_CELLS} values are supported")
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as error:
            raise DatasetInvalid(f"the dataset {name!r} is not a readable Parquet file") from error
    frame.columns = [str(c) for c in frame.columns]
    if "" in frame.columns:  # a Parquet column may have an empty name; no store or request can use one
        raise DatasetInvalid(f"the dataset {name!r} has a column without a name")
    if len(frame.columns) == 0:
        raise DatasetInvalid(f"the dataset {name!r} is empty: it has no columns")
    if len(frame) == 0:
        raise DatasetInvalid(f"the dataset {name!r} is empty: it has a header but no rows")
    return frame


def _check_width(columns: int, name: str) -> None:
    if columns > MAX_COLUMNS:
        raise DatasetInvalid(f"the dataset {name!r} has {columns} columns; at most {MAX_COLUMNS} are supported")


def _check_flat(schema: "pa.Schema", name: str) -> None:
    """Nested columns (struct, list, map, union) hold no value a feature, a label or an id can be."""
    import pyarrow as pa

    nested = [field for field in schema if pa.types.is_nested(field.type)
              or (pa.types.is_dictionary(field.type) and pa.types.is_nested(field.type.value_type))]
    if nested:
        columns = ", ".join(f"{shown(field.name, 40)} ({_cut(_type_name(field.type), 60)})" for field in nested[:5])
        more = f" and {len(nested) - 5} more" if len(nested) > 5 else ""
        raise DatasetInvalid(f"the dataset {name!r} has nested column(s): {columns}{more}; only flat columns "
                             "(numbers, text, booleans, dates) are supported: flatten or drop them")


def _type_name(kind: "pa.DataType") -> str:
    import pyarrow as pa

    if pa.types.is_map(kind):  # str() of a map names its column again
        return f"map<{kind.key_type}, {kind.item_type}>"
    return str(kind)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _check_header(data: bytes, name: str) -> None:
    """Width and duplicate names, from the header record alone (pandas would rename duplicates x.1)."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    try:
        header = next((row for row in csv.reader(text) if row), [])
    except UnicodeDecodeError as error:
        raise DatasetInvalid(f"the dataset {name!r} is not a UTF-8 text CSV file") from error
    except csv.Error as error:
        raise DatasetInvalid(f"the dataset {name!r} does not start with a readable CSV header") from error
    _check_width(len(header), name)
    repeated = [n for n, count in Counter(n for n in header if n.strip()).items() if count > 1]
    if repeated:
        names = ", ".join(shown(n, 40) for n in repeated[:5])
        raise DatasetInvalid(f"the dataset {name!r} has duplicate column names: {names}")


def _read_csv(data: bytes, name: str) -> pd.DataFrame:
    _check_header(data, name)
    try:
        with warnings.catch_warnings():
            # index_col=False: rows with a trailing comma must not shift every value one column left
            # (pandas would take the first column as the index); more fields than names is an error.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(io.BytesIO(data), encoding="utf-8", low_memory=False, index_col=False)
    except pd.errors.EmptyDataError as error:
        raise DatasetInvalid(f"the dataset {name!r} is empty: the file has no header or rows") from error
    except UnicodeDecodeError as error:
        raise DatasetInvalid(f"the dataset {name!r} is not a UTF-8 text CSV file") from error
    except pd.errors.ParserWarning as error:
        raise DatasetInvalid(
            f"the dataset {name!r} has rows with more fields than its header: check for unquoted commas"
        ) from error
    except (pd.errors.ParserError, ValueError) as error:
        # Name the line when the parser gives it; never pass the parser's own text along.
        line = re.search(r"(?:line|row) (\d+)", str(error))
        where = f" near line {line.group(1)}" if line else ""
        raise DatasetInvalid(
            f"the dataset {name!r} is not a readable CSV file{where}: "
            "check for unbalanced quotes or rows with the wrong number of fields"
        ) from error


def frame_bytes(frame: pd.DataFrame, name: str) -> bytes:
    """The frame as Parquet bytes (its columns' types kept); DatasetInvalid naming a column Parquet cannot hold."""
    import pyarrow as pa

    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer, index=False)
    except (pa.ArrowException, ValueError, TypeError) as error:
        column = next((str(c) for c in frame.columns if not _storable(frame[c])), None)
        which = f"column {shown(column, 40)}" if column is not None else "a column"
        raise DatasetInvalid(f"the dataset {name!r} has {which} whose values mix types that cannot be stored "
                             "as one column (e.g. numbers and other objects)") from error
    return buffer.getvalue()


def _storable(series: pd.Series) -> bool:
    import pyarrow as pa

    try:
        pa.Array.from_pandas(series)
    except (pa.ArrowException, ValueError, TypeError):
        return False
    return True


def read_frame(objects: ObjectStore, key: str, digest: str | None) -> pd.DataFrame:
    """A frame a run stored as Parquet, only if its bytes match the recorded sha256 (IntegrityError otherwise)."""
    return pd.read_parquet(io.BytesIO(objects.get_verified(key, digest)))
