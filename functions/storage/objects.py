"""The object-storage port: bytes, JSON, Parquet frames and sha256-verified reads under keys.

An adapter implements four calls (get_bytes, put_bytes, list_keys, head) and raises domain errors
only (NotFound, RetryableError, ObjectTooLarge, MlopsError); the rest is built on them here,
once. pandas is imported only by the frame methods: serving never loads it through this port.
"""

import hashlib
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from functions.errors import IntegrityError, NotFound
from functions.jsonable import jsonable

if TYPE_CHECKING:
    import pandas as pd


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ObjectHead:
    size: int
    metadata: dict[str, str]  # the object's user metadata (S3: x-amz-meta-<name>), names in lower case


class ObjectStore(ABC):
    """The objects of one bucket."""

    def __init__(self, bucket: str):
        self.bucket = bucket

    @abstractmethod
    def get_bytes(self, key: str, *, version_id: str | None = None, max_bytes: int | None = None) -> bytes:
        """The object's bytes (a given version of it); ObjectTooLarge past `max_bytes`, before reading it."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Store `data` under `key` with its sha256 in the object's metadata; returns the sha256."""

    @abstractmethod
    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys under `prefix`, in key order."""

    @abstractmethod
    def head(self, key: str, *, version_id: str | None = None) -> "ObjectHead":
        """The object's size and user metadata (a given version of it), without its bytes."""

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_json(self, key: str, value: Any) -> str:
        data = json.dumps(jsonable(value), indent=2, allow_nan=False).encode()
        return self.put_bytes(key, data, content_type="application/json")

    def get_frame(self, key: str) -> "pd.DataFrame":
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.get_bytes(key)))

    def put_frame(self, key: str, frame: "pd.DataFrame") -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.put_bytes(key, buffer.getvalue(), content_type="application/vnd.apache.parquet")

    def get_verified(self, key: str, expected_sha256: str | None, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes, only if they hash to `expected_sha256` (IntegrityError otherwise)."""
        if not expected_sha256:
            raise IntegrityError(f"no sha256 is recorded for {key}; refusing to load it")
        data = self.get_bytes(key, max_bytes=max_bytes)
        if sha256(data) != expected_sha256:
            raise IntegrityError(f"{key} does not match its recorded sha256")
        return data


def read_version(objects: ObjectStore, key: str, version_id: str | None, *, max_bytes: int, what: str) -> bytes:
    """The bytes of exactly an uploaded object version (`what` names it in NotFound); ObjectTooLarge past
    `max_bytes`."""
    # S3 event notifications may URL-encode keys: try the decoded form before giving up.
    for candidate in dict.fromkeys([key, unquote_plus(key)]):
        try:
            return objects.get_bytes(candidate, version_id=version_id, max_bytes=max_bytes)
        except NotFound:
            continue
    raise NotFound(f"the {what} {key} (version {version_id}) no longer exists")
