"""Pipeline steps of the features part: the run's model input (offline), and, once the model is registered,
each entity's latest values (online)."""

from functions.features.build import build_run_features, publish_run_features
from functions.features.dynamo import online_store
from functions.pipeline.state import DatasetResult, FeaturesResult, PipelineState, PublicationResult
from functions.pipeline.step import pipeline_step, uploads
from functions.settings import settings
from functions.storage.s3 import data_objects


@pipeline_step
def build_features(state: PipelineState) -> FeaturesResult:
    return build_run_features(uploads(state), spec=state.spec, run_id=state.run_id,
                              dataset=state.result(DatasetResult))


@pipeline_step
def publish_features(state: PipelineState) -> PublicationResult:
    return publish_run_features(data_objects(), online_store(), spec=state.spec,
                                features=state.result(FeaturesResult),
                                dataset_id=state.result(DatasetResult).dataset_id,
                                ttl_days=settings().feature_ttl_days)
