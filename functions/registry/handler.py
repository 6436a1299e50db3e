"""Pipeline steps of the registry part: register the run's model as a version, then the promotion gate.

Both act as the function's own identity (its role's session) and announce each registry change on
EventBridge; an event that could not be sent is counted (RegistryEventsUnsent, per model).
"""

from aws_lambda_powertools.metrics import MetricUnit

from functions.pipeline.state import (
    DatasetResult,
    EvaluationResult,
    PipelineState,
    PromotionResult,
    RegistrationResult,
    TrainingResult,
)
from functions.pipeline.step import metrics, pipeline_step
from functions.registry.dynamo import registry_store
from functions.registry.eventbridge import function_actor, registry_events
from functions.registry.events import Counted
from functions.registry.promotion import promote as promote_version
from functions.registry.promotion import register_version
from functions.settings import settings
from functions.storage.s3 import data_objects


@pipeline_step
def register_model(state: PipelineState) -> RegistrationResult:
    events = Counted(registry_events())
    result = register_version(
        data_objects(), registry_store(), spec=state.spec, run_id=state.run_id,
        dataset_id=state.result(DatasetResult).dataset_id, training=state.result(TrainingResult),
        metrics=state.result(EvaluationResult).metrics, code_version=settings().code_version,
        warnings=state.warnings(), events=events, actor=function_actor(),
        evaluation=state.result(EvaluationResult),
    )
    metrics.add_dimension(name="model", value=state.model)
    metrics.add_metric(name="RegistryEventsUnsent", unit=MetricUnit.Count, value=events.unsent)
    return result


@pipeline_step
def promote(state: PipelineState) -> PromotionResult:
    events = Counted(registry_events())
    result = promote_version(
        data_objects(), registry_store(), spec=state.spec, version=state.result(RegistrationResult).version,
        holdout_key=state.result(TrainingResult).holdout_key, metrics=state.result(EvaluationResult).metrics,
        events=events, actor=function_actor(),
    )
    metrics.add_dimension(name="model", value=state.model)
    metrics.add_metric(name="ModelsPromoted", unit=MetricUnit.Count, value=1 if result.promoted else 0)
    metrics.add_metric(name="RegistryEventsUnsent", unit=MetricUnit.Count, value=events.unsent)
    return result
