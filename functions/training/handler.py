"""Training pipeline: the upload trigger, the train and evaluate steps, and the run's final record."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

from functions import aws
from functions.errors import InvalidInput
from functions.registry.store import registry_store
from functions.settings import settings
from functions.training import runs
from functions.training.state import RUN_ID, parse_state

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def start_pipeline(event: dict, context) -> dict:
    try:
        upload = parse(event=event, model=S3EventNotificationEventBridgeModel)
    except Exception as error:  # noqa: BLE001 - any parse failure means: not our event
        raise InvalidInput("the event is not an S3 'Object Created' notification") from error
    config = settings()
    result = runs.start_run(
        registry_store(), aws.stepfunctions(), state_machine_arn=config.state_machine_arn,
        bucket=upload.detail.bucket.name, key=upload.detail.object.key,
        version_id=upload.detail.object.version_id, code_version=config.code_version,
    )
    metrics.add_metric(name="PipelineRunsStarted", unit=MetricUnit.Count, value=1 if result.get("recorded") else 0)
    logger.info("upload handled", extra=result)
    return result


@logger.inject_lambda_context(correlation_id_path=RUN_ID)
@tracer.capture_lambda_handler
def train(event: dict, context) -> dict:
    state = parse_state(event)
    spec = state.spec(registry_store())
    result = runs.train_run(
        aws.s3(), spec=spec, bucket=state.output_bucket, run_id=state.run_id,
        features_key=state.require("features")["features_key"], dataset_id=state.require("dataset")["dataset_id"],
    )
    logger.info("model trained", extra={"rows": result["rows"], "estimator": result["estimator"]})
    return result


@logger.inject_lambda_context(correlation_id_path=RUN_ID)
@tracer.capture_lambda_handler
def evaluate(event: dict, context) -> dict:
    state = parse_state(event)
    spec = state.spec(registry_store())
    result = runs.evaluate_run(aws.s3(), spec=spec, bucket=state.output_bucket, training=state.require("training"))
    logger.info("model evaluated", extra=result)
    return result


@logger.inject_lambda_context(correlation_id_path=RUN_ID)
@tracer.capture_lambda_handler
@metrics.log_metrics
def record_success(event: dict, context) -> dict:
    state = parse_state(event)
    result = runs.record_success(registry_store(), state)
    metrics.add_dimension("model", state.model)
    metrics.add_metric(name="PipelineRunsSucceeded", unit=MetricUnit.Count, value=1)
    return result


@logger.inject_lambda_context(correlation_id_path=RUN_ID)
@tracer.capture_lambda_handler
@metrics.log_metrics
def record_failure(event: dict, context) -> dict:
    state = parse_state(event)
    result = runs.record_failure(registry_store(), state)
    metrics.add_dimension("model", state.model)
    metrics.add_metric(name="PipelineRunsFailed", unit=MetricUnit.Count, value=1)
    return result
