"""Pipeline steps of the registry part: register the run's model as a version, then the promotion gate."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from functions import aws
from functions.registry.promotion import promote as promote_version
from functions.registry.promotion import register_version
from functions.registry.store import registry_store
from functions.settings import settings
from functions.training.state import RUN_ID, parse_state

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path=RUN_ID)
@tracer.capture_lambda_handler
def register_model(event: dict, context) -> dict:
    state = parse_state(event)
    registry = registry_store()
    spec = state.spec(registry)
    result = register_version(
        aws.s3(), registry, spec=spec, bucket=state.output_bucket, run_id=state.run_id,
        dataset_id=state.require("dataset")["dataset_id"], training=state.require("training"),
        metrics=state.require("evaluation").get("metrics", {}), code_version=settings().code_version,
    )
    logger.info("model registered", extra=result)
    return result


@logger.inject_lambda_context(correlation_id_path=RUN_ID)
@tracer.capture_lambda_handler
@metrics.log_metrics
def promote(event: dict, context) -> dict:
    state = parse_state(event)
    registry = registry_store()
    spec = state.spec(registry)
    result = promote_version(
        aws.s3(), registry, spec=spec, bucket=state.output_bucket, version=int(state.require("registration")["version"]),
        holdout_key=state.require("training")["holdout_key"],
        metrics=state.require("evaluation").get("metrics", {}),
    )
    metrics.add_dimension("model", state.model)
    metrics.add_metric(name="ModelsPromoted", unit=MetricUnit.Count, value=1 if result["promoted"] else 0)
    logger.info("promotion decided", extra={"promoted": result["promoted"], "reason": result["reason"]})
    return result
