"""The object an upload event names: S3's "Object Created" notification, as EventBridge delivers it."""

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

from functions.errors import InvalidInput


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    version_id: str | None


def uploaded_object(event: Any) -> Upload:
    """The bucket, key and version an upload event names (InvalidInput for any other event)."""
    try:
        upload = parse(event=event, model=S3EventNotificationEventBridgeModel)
    except Exception as error:
        raise InvalidInput("the event is not an S3 'Object Created' notification") from error
    return Upload(bucket=upload.detail.bucket.name, key=upload.detail.object.key,
                  version_id=upload.detail.object.version_id)
