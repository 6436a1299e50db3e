"""Training pipeline: the upload trigger, the train and evaluate steps, and the run's final record
(by the pipeline, or from the execution's end when the pipeline could not record it)."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.errors import InvalidInput
from functions.pipeline.executions import pipeline_executions
from functions.pipeline.state import (
    RUN_ID,
    DatasetResult,
    EvaluationResult,
    FeaturesResult,
    PipelineState,
    PlanResult,
    RunResult,
    SearchResult,
    TrainingJobResult,
    TrainingResult,
    TrialInput,
)
from functions.pipeline.step import metrics, pipeline_step
from functions.registry.dynamo import registry_store
from functions.settings import starter_settings
from functions.spec import Estimator
from functions.storage.s3 import data_objects
from functions.storage.uploads import uploaded_object
from functions.training import ended, jobs, plan, runs, search
from functions.training.settings import training_settings
from functions.training.start import start_run
from functions.training.train_entry import BEST_FILE

logger = Logger()
tracer = Tracer()


class ExecutionStatusChange(EventBridgeModel):
    """EventBridge's "Step Functions Execution Status Change" event."""

    detail: ended.ExecutionStatus


@logger.inject_lambda_context(clear_state=True)  # nothing of the last invocation's logs carries over
@tracer.capture_lambda_handler
@metrics.log_metrics
def start_pipeline(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    upload = uploaded_object(event)
    result = start_run(registry_store(), pipeline_executions(), bucket=upload.bucket, key=upload.key,
                       version_id=upload.version_id, code_version=starter_settings().code_version)
    logger.set_correlation_id(result.get("run_id"))  # the run's steps log under its id too
    metrics.add_metric(name="PipelineRunsStarted", unit=MetricUnit.Count, value=1 if result.get("recorded") else 0)
    logger.info("upload handled", extra=result)
    return result


@pipeline_step
def plan_training(state: PipelineState) -> PlanResult:
    result = plan.plan_training(data_objects(), spec=state.spec, run_id=state.run_id,
                                dataset=state.result(DatasetResult), features=state.result(FeaturesResult),
                                code_version=training_settings().code_version, settings=training_settings())
    logger.info("training planned", extra={"backend": result.backend, "reason": result.backend_reason,
                                           "search": result.search, "trials": result.trials})
    return result


@logger.inject_lambda_context(correlation_id_path=RUN_ID, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def run_trial(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One trial of a search (an item of the Map): its own domain failures make a FAILED trial, not an error."""
    try:
        trial = parse(event=event, model=TrialInput)
    except Exception as error:
        raise InvalidInput("the event is not a trial of a search (run_id, model, search_key, trial)") from error
    result = search.run_trial(data_objects(), registry_store(), trial)
    metrics.add_dimension(name="model", value=trial.model)
    metrics.add_metric(name="TrialsFailed", unit=MetricUnit.Count, value=1 if result.status == "FAILED" else 0)
    logger.info("trial done", extra={"trial": result.index, "status": result.status, "score": result.score})
    return {"index": result.index, "status": result.status, "score": result.score}  # small: the Map keeps it


@pipeline_step
def select_best(state: PipelineState) -> SearchResult:
    planned = state.result(PlanResult)
    if planned.search_key is None or planned.trials_key is None:
        raise InvalidInput(f"run {state.run_id} planned no search")
    return search.select_best(data_objects(), registry_store(), run_id=state.run_id, search_key=planned.search_key,
                              trials_key=planned.trials_key,
                              best_key=plan.training_prefix(state.model, state.run_id) + BEST_FILE)


@pipeline_step
def train(state: PipelineState) -> TrainingResult:
    best = state.search.best if state.search is not None else None
    return runs.train_run(data_objects(), spec=state.spec, run_id=state.run_id,
                          features_key=state.result(FeaturesResult).features_key,
                          dataset_id=state.result(DatasetResult).dataset_id,
                          best=Estimator(name=best.estimator, params=best.params) if best else None)


@pipeline_step
def collect_training(state: PipelineState) -> TrainingResult:
    return jobs.collect_training(data_objects(), spec=state.spec, run_id=state.run_id,
                                 job=state.result(TrainingJobResult))


@pipeline_step
def evaluate(state: PipelineState) -> EvaluationResult:
    return runs.evaluate_run(data_objects(), spec=state.spec, training=state.result(TrainingResult))


@pipeline_step
def record_success(state: PipelineState) -> RunResult:
    result = runs.record_success(registry_store(), state)
    metrics.add_dimension(name="model", value=state.model)
    metrics.add_metric(name="PipelineRunsSucceeded", unit=MetricUnit.Count, value=1)
    return result


@pipeline_step
def record_failure(state: PipelineState) -> RunResult:
    result = runs.record_failure(registry_store(), state)
    metrics.add_dimension(name="model", value=state.model)
    metrics.add_metric(name="PipelineRunsFailed", unit=MetricUnit.Count, value=1)
    return result


@logger.inject_lambda_context(correlation_id_path="detail.name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def record_execution_end(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        change = parse(event=event, model=ExecutionStatusChange)
    except Exception as error:
        raise InvalidInput("the event is not a 'Step Functions Execution Status Change'") from error
    result = ended.record_execution_end(registry_store(), change.detail)
    if "model" in result:
        metrics.add_dimension(name="model", value=result["model"])
    metrics.add_metric(name="PipelineRunsFailed", unit=MetricUnit.Count, value=1 if result["recorded"] else 0)
    logger.info("execution end handled", extra=result)
    return result
