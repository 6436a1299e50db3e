"""The object store on S3 (the adapter of storage.objects.ObjectStore)."""

import base64
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING

from functions import aws
from functions.errors import ObjectTooLarge
from functions.settings import settings
from functions.storage.errors import storage_errors
from functions.storage.objects import ObjectHead, ObjectStore, sha256

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3ObjectStore(ObjectStore):
    def __init__(self, client: "S3Client", bucket: str):
        super().__init__(bucket)
        self.client = client

    def get_bytes(self, key: str, *, version_id: str | None = None, max_bytes: int | None = None) -> bytes:
        with storage_errors(f"reading {key}"):
            if version_id and version_id != "null":  # "null": the version of an object put while unversioned
                response = self.client.get_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            else:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            size = int(response.get("ContentLength") or 0)
            if max_bytes is not None and size > max_bytes:
                response["Body"].close()
                raise ObjectTooLarge(f"{key} holds {size} bytes, more than {max_bytes}", size=size)
            return response["Body"].read()

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        digest = sha256(data)
        # The sha256 goes along as S3's own checksum: S3 refuses a body that does not match it, and botocore
        # sends the body as it is instead of computing a checksum of its own in aws-chunked encoding (which
        # takes about a second of CPU for 32 MB).
        checksum = base64.b64encode(bytes.fromhex(digest)).decode()
        with storage_errors(f"writing {key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                   Metadata={"sha256": digest}, ChecksumSHA256=checksum)
        return digest

    def head(self, key: str, *, version_id: str | None = None) -> ObjectHead:
        with storage_errors(f"reading the metadata of {key}"):
            if version_id and version_id != "null":
                response = self.client.head_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            else:
                response = self.client.head_object(Bucket=self.bucket, Key=key)
        metadata = {name.lower(): value for name, value in (response.get("Metadata") or {}).items()}
        return ObjectHead(size=int(response.get("ContentLength") or 0), metadata=metadata)

    def list_keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with storage_errors(f"listing {prefix}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    yield entry["Key"]


@cache
def data_objects() -> S3ObjectStore:
    """The platform's data bucket, for the running function (built once per execution environment)."""
    return S3ObjectStore(aws.s3(), settings().data_bucket)
