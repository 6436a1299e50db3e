"""The AWS side of monitoring: its events (EventBridge), the models' alarms (CloudWatch) and the retrain's
training file (a dataset version, copied or with feedback rows added, with the metadata that asks for a retrain)."""

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from functions import aws
from functions.errors import NotFound, RetryableError
from functions.monitoring.events import SOURCE
from functions.registry.eventbridge import EventBridgePublisher
from functions.settings import settings
from functions.storage.errors import storage_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10)


class CloudWatchModelAlarms:
    def __init__(self, client: Any):
        self.client = client

    def put(self, alarms: list[dict[str, Any]]) -> None:
        try:
            for alarm in alarms:
                self.client.put_metric_alarm(**alarm)
        except (BotoCoreError, ClientError) as error:
            raise RetryableError(f"the model's alarms could not be created ({type(error).__name__})") from error


class S3TrainingUploads:
    """Training files for retrains, in the data bucket: copies of dataset versions made on S3's side, or written."""

    def __init__(self, client: "S3Client", bucket: str):
        self.client, self.bucket = client, bucket

    def version_of(self, key: str) -> str | None:
        """The current version id of `key` ("null" when unversioned); None when there is no such object."""
        try:
            with storage_errors(f"reading the metadata of {key}"):
                head = self.client.head_object(Bucket=self.bucket, Key=key)
        except NotFound:
            return None
        return str(head.get("VersionId") or "null")

    def copy(self, *, source_key: str, source_version: str | None, key: str, metadata: dict[str, str]) -> str:
        """Copy a version of an object to `key` with `metadata` (replacing the source's); its new version id."""
        source: dict[str, str] = {"Bucket": self.bucket, "Key": source_key}
        if source_version and source_version != "null":
            source["VersionId"] = source_version
        with storage_errors(f"copying {source_key} to {key}"):
            response = self.client.copy_object(Bucket=self.bucket, Key=key, CopySource=source,  # type: ignore[arg-type]
                                               Metadata=metadata, MetadataDirective="REPLACE")
        return str(response.get("VersionId") or "null")

    def put(self, *, key: str, body: bytes, metadata: dict[str, str]) -> str:
        """Write `body` to `key` with `metadata`; its version id."""
        with storage_errors(f"writing {key}"):
            response = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata)
        return str(response.get("VersionId") or "null")


@cache
def monitoring_events() -> EventBridgePublisher:
    return EventBridgePublisher(boto3.client("events", config=_CONFIG), source=SOURCE)


@cache
def model_alarms() -> CloudWatchModelAlarms:
    return CloudWatchModelAlarms(boto3.client("cloudwatch", config=_CONFIG))


@cache
def training_uploads() -> S3TrainingUploads:
    return S3TrainingUploads(aws.s3(), settings().data_bucket)
