"""The retraining rule's target: a Model Drift Detected or Model Quality Degraded event starts a retrain."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from functions.data.dynamo import dataset_store
from functions.errors import InvalidInput
from functions.feedback.dynamo import feedback_store
from functions.monitoring.aws import training_uploads
from functions.monitoring.retrain import Feedback, MonitoringEventEnvelope, on_event
from functions.monitoring.settings import monitoring_settings
from functions.registry.dynamo import registry_store
from functions.registry.eventbridge import function_actor
from functions.storage.s3 import data_objects

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def start_retrain(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        received = MonitoringEventEnvelope.model_validate(event)
    except ValidationError as error:
        raise InvalidInput("the event is not a monitoring event with a detail naming its model") from error
    config = monitoring_settings()
    result = on_event(registry_store(), dataset_store(), training_uploads(), event=received,
                      bucket=config.data_bucket, cooldown_hours=config.retrain_cooldown_hours, actor=function_actor(),
                      feedback=Feedback(feedback_store(), data_objects(),
                                        hours=config.retrain_feedback_days * 24))
    metrics.add_metric(name="RetrainsStarted" if result["started"] else "RetrainsSkipped", unit=MetricUnit.Count,
                       value=1)
    logger.info("retrain started" if result["started"] else "no retrain", extra=result)
    return result
