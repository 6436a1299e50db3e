"""The object-storage port: one contract, run against the in-memory twin and the S3 adapter (moto)."""

import hashlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from functions.errors import IntegrityError, NotFound, ObjectTooLarge, RetryableError
from functions.storage.objects import ObjectHead, ObjectStore
from functions.storage.s3 import S3ObjectStore
from tests.fakes import MemoryObjectStore, lost_reply, throttled
from tests.storage.moto_aws import BUCKET, fail_once, lose_reply_once, moto_bucket

# The S3 client call behind each operation of the port.
S3_CALLS = {"get_bytes": "get_object", "put_bytes": "put_object", "list_keys": "list_objects_v2"}


@pytest.fixture(params=["memory", "s3"])
def objects(request) -> Iterator[ObjectStore]:
    if request.param == "memory":
        yield MemoryObjectStore(BUCKET)
    else:
        with moto_bucket() as s3:
            yield S3ObjectStore(s3, BUCKET)


def upload(objects: ObjectStore, key: str, data: bytes) -> str:
    """Put a version the way a user's upload arrives; returns its version id."""
    if isinstance(objects, MemoryObjectStore):
        return objects.put(key, data)
    assert isinstance(objects, S3ObjectStore)
    return objects.client.put_object(Bucket=objects.bucket, Key=key, Body=data)["VersionId"]


def throttle_once(objects: ObjectStore, monkeypatch, operation: str) -> None:
    if isinstance(objects, MemoryObjectStore):
        objects.faults.inject(operation, throttled())
    else:
        assert isinstance(objects, S3ObjectStore)
        fail_once(monkeypatch, objects.client, S3_CALLS[operation], "SlowDown")


def lose_reply_of_next_put(objects: ObjectStore, monkeypatch) -> None:
    if isinstance(objects, MemoryObjectStore):
        objects.faults.inject("put_bytes", lost_reply(), after=True)
    else:
        assert isinstance(objects, S3ObjectStore)
        lose_reply_once(monkeypatch, objects.client, "put_object")


def test_bytes_round_trip_and_put_returns_their_sha256(objects):
    digest = objects.put_bytes("runs/m/r/blob.bin", b"\x00model\xff")
    assert digest == hashlib.sha256(b"\x00model\xff").hexdigest()
    assert objects.get_bytes("runs/m/r/blob.bin") == b"\x00model\xff"


def test_a_version_is_read_as_it_was_not_as_the_key_is_now(objects):
    first = upload(objects, "datasets/m/f.csv", b"a\n1\n")
    upload(objects, "datasets/m/f.csv", b"a\n2\n")
    assert objects.get_bytes("datasets/m/f.csv", version_id=first) == b"a\n1\n"
    assert objects.get_bytes("datasets/m/f.csv") == b"a\n2\n"
    assert objects.get_bytes("datasets/m/f.csv", version_id="null") == b"a\n2\n"  # an unversioned put's id


def test_what_is_not_there_is_not_found(objects):
    other = upload(objects, "datasets/m/other.csv", b"x")
    upload(objects, "datasets/m/f.csv", b"a")
    with pytest.raises(NotFound):
        objects.get_bytes("datasets/m/gone.csv")
    with pytest.raises(NotFound):  # the version of another key
        objects.get_bytes("datasets/m/f.csv", version_id=other)
    with pytest.raises(NotFound):
        objects.get_json("runs/m/r/none.json")
    with pytest.raises(NotFound):
        objects.get_verified("runs/m/r/none.bin", "0" * 64)


def test_an_object_over_max_bytes_is_refused_with_its_size(objects):
    objects.put_bytes("datasets/m/big.csv", b"x" * 100)
    with pytest.raises(ObjectTooLarge) as caught:
        objects.get_bytes("datasets/m/big.csv", max_bytes=99)
    assert caught.value.size == 100
    assert objects.get_bytes("datasets/m/big.csv", max_bytes=100) == b"x" * 100


def test_list_keys_under_a_prefix_in_key_order(objects):
    for key in ["runs/m/r2/a", "runs/m/r1/b", "runs/m/r1/a", "runs/other/x", "runs/m-other/y"]:
        objects.put_bytes(key, b"1")
    assert list(objects.list_keys("runs/m/")) == ["runs/m/r1/a", "runs/m/r1/b", "runs/m/r2/a"]
    assert list(objects.list_keys("nothing/")) == []


def test_json_round_trip_of_numpy_values_and_sets(objects):
    value = {"n": np.int64(3), "x": np.float64(0.5), "gap": float("nan"), "v": np.arange(2), "tags": {"b", "a"}}
    digest = objects.put_json("runs/m/r/report.json", value)
    assert objects.get_json("runs/m/r/report.json") == {"n": 3, "x": 0.5, "gap": None, "v": [0, 1], "tags": ["a", "b"]}
    assert digest == hashlib.sha256(objects.get_bytes("runs/m/r/report.json")).hexdigest()


def test_what_json_cannot_hold_is_refused_and_nothing_is_written(objects):
    with pytest.raises(TypeError, match="cannot be stored as JSON"):
        objects.put_json("runs/m/r/report.json", {"when": object()})
    assert list(objects.list_keys("runs/m/r/")) == []


def test_frames_round_trip_with_their_hash(objects):
    data = pd.DataFrame({"x": [1.0, np.nan], "plan": ["a", "__missing__"], "y": [0, 1]})
    digest = objects.put_frame("runs/m/r/features.parquet", data)
    assert digest == hashlib.sha256(objects.get_bytes("runs/m/r/features.parquet")).hexdigest()
    back = objects.get_frame("runs/m/r/features.parquet")
    assert back["y"].tolist() == [0, 1] and np.isnan(back["x"].iloc[1])
    assert back["plan"].tolist() == ["a", "__missing__"]


def test_a_verified_read_returns_only_bytes_that_match_their_hash(objects):
    digest = objects.put_bytes("models/m/1/model.skops", b"model")
    assert objects.get_verified("models/m/1/model.skops", digest) == b"model"
    objects.put_bytes("models/m/1/model.skops", b"tampered")
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        objects.get_verified("models/m/1/model.skops", digest)
    for unrecorded in (None, ""):
        with pytest.raises(IntegrityError, match="no sha256 is recorded"):
            objects.get_verified("models/m/1/model.skops", unrecorded)


@pytest.mark.parametrize("operation, read, expected", [
    ("get_bytes", lambda objects: objects.get_bytes("runs/m/r/a"), b"1"),
    ("list_keys", lambda objects: list(objects.list_keys("runs/")), ["runs/m/r/a"]),
])
def test_a_throttled_read_is_retryable_and_the_retry_reads(objects, monkeypatch, operation, read, expected):
    objects.put_bytes("runs/m/r/a", b"1")
    throttle_once(objects, monkeypatch, operation)
    with pytest.raises(RetryableError):
        read(objects)
    assert read(objects) == expected


def test_a_throttled_write_writes_nothing(objects, monkeypatch):
    throttle_once(objects, monkeypatch, "put_bytes")
    with pytest.raises(RetryableError):
        objects.put_json("runs/m/r/report.json", {"passed": True})
    assert list(objects.list_keys("runs/")) == []


def test_a_write_whose_reply_is_lost_is_repeated_safely(objects, monkeypatch):
    lose_reply_of_next_put(objects, monkeypatch)
    with pytest.raises(RetryableError):
        objects.put_bytes("runs/m/r/model.bin", b"model")
    assert objects.get_bytes("runs/m/r/model.bin") == b"model"  # it was written all the same
    assert objects.put_bytes("runs/m/r/model.bin", b"model") == hashlib.sha256(b"model").hexdigest()
    assert list(objects.list_keys("runs/")) == ["runs/m/r/model.bin"]


def test_head_gives_a_versions_size_and_user_metadata_without_its_bytes(objects):
    if isinstance(objects, MemoryObjectStore):
        first = objects.put("datasets/m/f.csv", b"a\n1\n", {"Retrain": "true"})
        objects.put("datasets/m/f.csv", b"a\n22\n")
    else:
        assert isinstance(objects, S3ObjectStore)
        put = objects.client.put_object
        first = put(Bucket=BUCKET, Key="datasets/m/f.csv", Body=b"a\n1\n", Metadata={"Retrain": "true"})["VersionId"]
        put(Bucket=BUCKET, Key="datasets/m/f.csv", Body=b"a\n22\n")
    assert objects.head("datasets/m/f.csv", version_id=first) == ObjectHead(size=4, metadata={"retrain": "true"})
    assert objects.head("datasets/m/f.csv") == ObjectHead(size=5, metadata={})
    with pytest.raises(NotFound):
        objects.head("datasets/m/none.csv")
