"""Pipeline step of the features part: the run's model input (offline) and latest values (online)."""

from functions.features.build import build_run_features
from functions.features.dynamo import online_store
from functions.pipeline.state import DatasetResult, FeaturesResult, PipelineState
from functions.pipeline.step import pipeline_step, uploads
from functions.settings import settings


@pipeline_step
def build_features(state: PipelineState) -> FeaturesResult:
    return build_run_features(uploads(state), online_store(), spec=state.spec, key=state.key,
                              version_id=state.version_id, run_id=state.run_id,
                              dataset_id=state.result(DatasetResult).dataset_id,
                              ttl_days=settings().feature_ttl_days)
