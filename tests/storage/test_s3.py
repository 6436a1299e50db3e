"""What only the S3 adapter does: object metadata, reading without loading, paging, AWS errors translated."""

import pandas as pd
import pytest
from botocore.exceptions import ReadTimeoutError

from functions.errors import MlopsError, NotFound, ObjectTooLarge, RetryableError
from functions.storage.s3 import S3ObjectStore, data_objects
from tests.conftest import failing_with, reset_execution_environment
from tests.storage.moto_aws import BUCKET, fail_once, moto_bucket


@pytest.fixture
def objects():
    with moto_bucket() as s3:
        yield S3ObjectStore(s3, BUCKET)


def test_objects_carry_their_sha256_and_content_type(objects):
    puts = {
        "runs/m/r/blob.bin": (objects.put_bytes("runs/m/r/blob.bin", b"b"), "application/octet-stream"),
        "runs/m/r/report.json": (objects.put_json("runs/m/r/report.json", {"a": 1}), "application/json"),
        "runs/m/r/f.parquet": (objects.put_frame("runs/m/r/f.parquet", pd.DataFrame({"a": [1]})),
                               "application/vnd.apache.parquet"),
    }
    for key, (digest, content_type) in puts.items():
        head = objects.client.head_object(Bucket=BUCKET, Key=key)
        assert head["Metadata"]["sha256"] == digest and head["ContentType"] == content_type


def test_a_body_goes_with_its_sha256_as_s3s_own_checksum_unchunked(objects):
    import base64
    import hashlib

    sent = []
    events = objects.client.meta.events  # the client lives as long as the session: the hook goes after the test
    events.register("before-send.s3.PutObject", lambda request, **kwargs: sent.append(request), unique_id="spy")
    try:
        objects.put_bytes("runs/m/r/blob.bin", b"some bytes")
    finally:
        events.unregister("before-send.s3.PutObject", unique_id="spy")
    (request,) = sent
    expected = base64.b64encode(hashlib.sha256(b"some bytes").digest()).decode()
    checksum = request.headers["x-amz-checksum-sha256"]
    assert (checksum.decode() if isinstance(checksum, bytes) else checksum) == expected
    assert "aws-chunked" not in str(request.headers.get("Content-Encoding", ""))  # the body as it is
    body = request.body.getvalue() if hasattr(request.body, "getvalue") else request.body
    assert body == b"some bytes"


def test_an_object_over_max_bytes_is_refused_before_its_body_is_read(objects, monkeypatch):
    objects.put_bytes("datasets/m/big.csv", b"x" * 100)
    bodies = []
    get_object = objects.client.get_object

    def spied(**kwargs):
        response = get_object(**kwargs)
        body = response["Body"]
        monkeypatch.setattr(body, "read", lambda *a: pytest.fail("the body was read"))
        bodies.append(body)
        return response

    monkeypatch.setattr(objects.client, "get_object", spied)
    with pytest.raises(ObjectTooLarge, match="holds 100 bytes, more than 10"):
        objects.get_bytes("datasets/m/big.csv", max_bytes=10)
    assert len(bodies) == 1


def test_list_keys_follows_every_page(objects, monkeypatch):
    keys = [f"runs/m/r/{i}" for i in range(5)]
    for key in keys:
        objects.put_bytes(key, b"1")
    list_objects = objects.client.list_objects_v2
    pages = []

    def small_pages(**kwargs):
        pages.append(kwargs)
        return list_objects(**kwargs, MaxKeys=2)

    monkeypatch.setattr(objects.client, "list_objects_v2", small_pages)
    assert list(objects.list_keys("runs/m/")) == keys
    assert len(pages) == 3


def test_listing_throttled_after_the_first_page_is_retryable(objects, monkeypatch):
    for i in range(3):
        objects.put_bytes(f"runs/m/r/{i}", b"1")
    list_objects = objects.client.list_objects_v2

    def second_page_throttled(**kwargs):
        if "ContinuationToken" in kwargs:
            raise failing_with("SlowDown", "ListObjectsV2")()
        return list_objects(**kwargs, MaxKeys=2)

    monkeypatch.setattr(objects.client, "list_objects_v2", second_page_throttled)
    listed = []
    with pytest.raises(RetryableError):
        listed.extend(objects.list_keys("runs/"))
    assert listed == ["runs/m/r/0", "runs/m/r/1"]


def test_null_is_the_version_of_an_object_put_while_unversioned():
    with moto_bucket(versioned=False) as s3:
        s3.put_object(Bucket=BUCKET, Key="datasets/m/f.csv", Body=b"a\n1\n")
        assert S3ObjectStore(s3, BUCKET).get_bytes("datasets/m/f.csv", version_id="null") == b"a\n1\n"


@pytest.mark.parametrize("method, code, error", [
    ("get_object", "SlowDown", RetryableError),
    ("get_object", "InternalError", RetryableError),
    ("get_object", "NoSuchKey", NotFound),
    ("get_object", "NoSuchBucket", NotFound),
    ("get_object", "AccessDenied", MlopsError),
    ("put_object", "ServiceUnavailable", RetryableError),
    ("put_object", "AccessDenied", MlopsError),
])
def test_aws_errors_become_domain_errors_without_aws_text(objects, monkeypatch, method, code, error):
    objects.put_bytes("runs/m/r/a", b"1")
    fail_once(monkeypatch, objects.client, method, code, {"get_object": "GetObject", "put_object": "PutObject"}[method])
    with pytest.raises(MlopsError) as caught:
        if method == "get_object":
            objects.get_bytes("runs/m/r/a")
        else:
            objects.put_bytes("runs/m/r/a", b"2")
    assert type(caught.value) is error
    assert "injected" not in caught.value.message and "runs/m/r/a" in caught.value.message


def test_a_read_timeout_is_retryable(objects, monkeypatch):
    def timeout(**kwargs):
        raise ReadTimeoutError(endpoint_url="https://s3.invalid")

    monkeypatch.setattr(objects.client, "get_object", timeout)
    with pytest.raises(RetryableError, match="timed out"):
        objects.get_bytes("runs/m/r/a")


def test_the_data_bucket_store_is_built_once_per_execution_environment(monkeypatch):
    reset_execution_environment()
    try:
        store = data_objects()
        assert store.bucket == BUCKET and data_objects() is store
        monkeypatch.setenv("DATA_BUCKET", "another-bucket")
        assert data_objects().bucket == BUCKET  # settings are parsed once, as on Lambda
        reset_execution_environment()
        assert data_objects().bucket == "another-bucket"
    finally:
        monkeypatch.undo()
        reset_execution_environment()

