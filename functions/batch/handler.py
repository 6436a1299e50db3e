"""Batch inference: the upload trigger and the batch state machine's steps (plan, score a part, complete, fail).

Each handler parses its event, calls one domain function of functions/batch/jobs.py and returns JSON.
"""

from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from functions import aws
from functions.batch import jobs
from functions.batch.settings import batch_settings, batch_starter_settings
from functions.errors import InvalidInput
from functions.pipeline.executions import StepFunctionsExecutions
from functions.registry.dynamo import registry_store
from functions.storage.objects import ObjectStore
from functions.storage.s3 import data_objects
from functions.storage.uploads import uploaded_object

logger = Logger()
tracer = Tracer()
metrics = Metrics()
versions = jobs.VersionCache()  # a warm ScoreBatchPart keeps the job's model loaded
JOB_ID = "job_id"
M = TypeVar("M", bound=BaseModel)


class PartInput(BaseModel):
    """A Distributed Map item, as the map's ItemSelector gives it."""

    job_id: str
    model: str
    version: int
    output_prefix: str
    part: jobs.Part


class CompleteInput(jobs.BatchJob):
    plan: jobs.BatchPlan


class FailureInput(jobs.BatchJob):
    error: dict[str, Any] | None = None


def _parsed(model: type[M], event: Any) -> M:
    try:
        return model.model_validate(event)
    except ValidationError as error:
        raise InvalidInput(f"the state is not a batch job's {model.__name__}") from error


def _objects(bucket: str) -> ObjectStore:
    objects = data_objects()
    if bucket != objects.bucket:
        raise InvalidInput(f"batch files are read from the data bucket, not {bucket!r}")
    return objects


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def start_batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    upload = uploaded_object(event)
    executions = StepFunctionsExecutions(aws.stepfunctions(), batch_starter_settings().batch_state_machine_arn)
    result = jobs.start_job(executions, bucket=upload.bucket, key=upload.key, version_id=upload.version_id)
    logger.set_correlation_id(result.get("job_id"))
    metrics.add_metric(name="BatchJobsStarted", unit=MetricUnit.Count, value=1 if result["started"] else 0)
    logger.info("batch upload handled", extra=result)
    return result


@logger.inject_lambda_context(correlation_id_path=JOB_ID, clear_state=True)
@tracer.capture_lambda_handler
def plan_batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = _parsed(jobs.BatchJob, event)
    config = batch_settings()
    plan = jobs.plan_job(_objects(job.bucket), registry_store(), job, max_bytes=config.batch_max_bytes,
                         rows_per_part=config.batch_rows_per_part)
    logger.info("batch planned", extra={"model": plan.model, "version": plan.version, "rows": plan.rows,
                                        "parts": plan.parts})
    return plan.model_dump(mode="json")


@logger.inject_lambda_context(correlation_id_path=JOB_ID, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def score_batch_part(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    item = _parsed(PartInput, event)
    objects = data_objects()
    loaded = versions.get(registry_store(), objects, item.model, item.version)
    result = jobs.score_part(objects, loaded, item.job_id, item.output_prefix, item.part)
    metrics.add_dimension(name="model", value=item.model)
    metrics.add_metric(name="BatchRowsScored", unit=MetricUnit.Count, value=0 if result.error else result.rows)
    logger.info("batch part scored", extra=result.model_dump())
    return result.model_dump(mode="json", exclude_none=True)


@logger.inject_lambda_context(correlation_id_path=JOB_ID, clear_state=True)
@tracer.capture_lambda_handler
def complete_batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = _parsed(CompleteInput, event)
    result = jobs.complete_job(_objects(state.bucket), state.plan)
    logger.info("batch completed", extra=result.model_dump())
    return result.model_dump(mode="json")


@logger.inject_lambda_context(correlation_id_path=JOB_ID, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def record_batch_failure(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = _parsed(FailureInput, event)
    result = jobs.record_failure(data_objects(), state, state.error)
    metrics.add_metric(name="BatchJobsFailed", unit=MetricUnit.Count, value=1)
    logger.info("batch failed", extra={**result, "model": state.model})
    return result
