"""The training steps' own settings (PlanTraining's thresholds), beside the settings every function has."""

import os
from functools import cache

from pydantic import Field

from functions.settings import Settings


class TrainingSettings(Settings):
    # Past this many cells (rows x feature columns) a model trains in a SageMaker training job, unless its
    # spec names the backend.
    sagemaker_threshold_cells: int = Field(50_000_000, alias="SAGEMAKER_THRESHOLD_CELLS", gt=0)
    # A search of more trials than this runs in a Distributed Map (its trials read from S3), else inline.
    distributed_search_threshold: int = Field(40, alias="DISTRIBUTED_SEARCH_THRESHOLD", ge=1)


@cache
def training_settings() -> TrainingSettings:
    return TrainingSettings.from_environment(dict(os.environ))
