"""Pipeline steps of the data part: register the uploaded dataset version, check its contract."""

from aws_lambda_powertools import Logger, Tracer

from functions import aws
from functions.data.datasets import register_dataset as register
from functions.data.store import dataset_store
from functions.data.validation import validate_upload
from functions.registry.store import registry_store
from functions.training.state import RUN_ID, parse_state

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context(correlation_id_path=RUN_ID)
@tracer.capture_lambda_handler
def register_dataset(event: dict, context) -> dict:
    state = parse_state(event)
    result = register(aws.s3(), dataset_store(), registry_store(), model=state.model, bucket=state.bucket,
                      key=state.key, version_id=state.version_id, run_id=state.run_id)
    logger.info("dataset registered", extra={"dataset_id": result["dataset_id"], "rows": result["rows"]})
    return result


@logger.inject_lambda_context(correlation_id_path=RUN_ID)
@tracer.capture_lambda_handler
def validate_dataset(event: dict, context) -> dict:
    state = parse_state(event)
    spec = state.spec(registry_store())
    result = validate_upload(
        aws.s3(), spec=spec, bucket=state.bucket, key=state.key, version_id=state.version_id,
        dataset_id=(state.dataset or {}).get("dataset_id"), run_id=state.run_id,
        report_bucket=state.output_bucket,
    )
    logger.info("dataset meets the contract", extra={"report_key": result["report_key"]})
    return result
