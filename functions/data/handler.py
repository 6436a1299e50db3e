"""Pipeline steps of the data part: register the uploaded dataset version, check its contract."""

from functions.data.datasets import register_dataset as register
from functions.data.dynamo import dataset_store
from functions.data.validation import validate_upload
from functions.pipeline.state import DatasetResult, PipelineState, ValidationResult
from functions.pipeline.step import pipeline_step, uploads
from functions.registry.dynamo import registry_store
from functions.settings import settings


@pipeline_step
def register_dataset(state: PipelineState) -> DatasetResult:
    return register(uploads(state), dataset_store(), registry_store(), model=state.model, key=state.key,
                    version_id=state.version_id, run_id=state.run_id, code_version=settings().code_version)


@pipeline_step
def validate_dataset(state: PipelineState) -> ValidationResult:
    dataset = state.result(DatasetResult)
    return validate_upload(uploads(state), spec=state.spec, key=state.key, version_id=state.version_id,
                           dataset_id=dataset.dataset_id, run_id=state.run_id, dataset=dataset)
