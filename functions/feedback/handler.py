"""The label-file trigger: an upload under feedback/<model>/ (S3 Object Created, EventBridge) is stored.

The API's route (POST /v1/models/{name}/feedback) is in functions/serving/handler.py, with the
predict routes, so the one OpenAPI document describes it; its own function runs it (infra/feedback.py).
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.errors import InvalidInput
from functions.feedback.dynamo import feedback_store
from functions.feedback.files import ingest_file
from functions.feedback.settings import feedback_settings
from functions.registry.dynamo import registry_store
from functions.storage.s3 import data_objects
from functions.storage.uploads import uploaded_object

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def ingest_label_file(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    upload = uploaded_object(event)
    objects = data_objects()
    if upload.bucket != objects.bucket:
        raise InvalidInput("label files are read from the data bucket only")
    key = upload.key
    try:
        result = ingest_file(objects, feedback_store(), registry_store(), key=key, version_id=upload.version_id,
                             max_bytes=feedback_settings().feedback_max_file_bytes)
    except InvalidInput as error:  # not a label file's key: nothing to store, nowhere to answer
        logger.warning("not a label file", extra={"key": key, "reason": error.message})
        return {"key": key, "status": "refused", "reason": error.message}
    metrics.add_metric(name="FeedbackLabelsStored", unit=MetricUnit.Count, value=result.get("stored", 0))
    logger.info("label file handled", extra={k: v for k, v in result.items() if k != "errors"})
    return result
