"""The one shape of a pipeline step: a function from the run state to its result model.

    @pipeline_step
    def train(state: PipelineState) -> TrainingResult:
        return train_run(...)

`pipeline_step` makes it a Lambda handler with the step's logger (the run id as correlation
id), tracer and metrics (its duration, per step), the state parsed and the result returned
as JSON for the state machine to store.
"""

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.middleware_factory import lambda_handler_decorator
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.errors import InvalidInput
from functions.pipeline.state import RUN_ID, PipelineState, StepResult, parse_state
from functions.storage.objects import ObjectStore
from functions.storage.s3 import data_objects

logger = Logger()
tracer = Tracer()
metrics = Metrics()

R = TypeVar("R", bound=StepResult)
LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


@lambda_handler_decorator
def _state_in_result_out(handler: Callable[[Any, LambdaContext], StepResult], event: dict[str, Any],
                         context: LambdaContext) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        return handler(parse_state(event), context).model_dump(mode="json")
    finally:  # failed steps are timed too (and the metrics are flushed, so nothing carries over)
        metrics.add_dimension(name="step", value=handler.__name__)
        metrics.add_metric(name="StepDuration", unit=MetricUnit.Milliseconds,
                           value=round((time.perf_counter() - started) * 1000, 3))


def pipeline_step(step: Callable[[PipelineState], R]) -> LambdaHandler:
    @logger.inject_lambda_context(correlation_id_path=RUN_ID)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    @_state_in_result_out
    @functools.wraps(step)
    def handler(state: PipelineState, context: LambdaContext) -> R:
        result = step(state)
        logger.info("step done", extra={"step": step.__name__, "model": state.model})
        return result

    return handler


def uploads(state: PipelineState) -> ObjectStore:
    """The data bucket, where the run's upload is (the upload rule only matches that bucket)."""
    objects = data_objects()
    if state.bucket != objects.bucket:
        raise InvalidInput(f"run {state.run_id} names bucket {state.bucket!r}; uploads are read from the data bucket")
    return objects
