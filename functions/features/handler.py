"""Pipeline step of the features part: the run's model input (offline) and latest values (online)."""

from aws_lambda_powertools import Logger, Tracer

from functions import aws
from functions.features.build import build_run_features
from functions.features.store import online_store
from functions.registry.store import registry_store
from functions.settings import settings
from functions.training.state import RUN_ID, parse_state

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context(correlation_id_path=RUN_ID)
@tracer.capture_lambda_handler
def build_features(event: dict, context) -> dict:
    state = parse_state(event)
    config = settings()
    spec = state.spec(registry_store())
    result = build_run_features(
        aws.s3(), online_store() if config.features_table else None, spec=spec, bucket=state.bucket,
        key=state.key, version_id=state.version_id, run_id=state.run_id,
        dataset_id=state.require("dataset")["dataset_id"], ttl_days=config.feature_ttl_days,
        out_bucket=state.output_bucket,
    )
    logger.info("features built", extra={"rows": result["rows"], "entities": result["entities"]})
    return result
