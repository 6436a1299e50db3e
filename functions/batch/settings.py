"""The batch functions' own settings, beside the settings every function has."""

import os
from functools import cache

from pydantic import Field

from functions.settings import Settings


class BatchSettings(Settings):
    # The largest file a job takes (PlanBatch holds it and its typed copy in memory), and the rows of a part
    # (one Distributed Map item: one ScoreBatchPart invocation).
    batch_max_bytes: int = Field(256 * 1024 * 1024, alias="BATCH_MAX_BYTES", gt=0)
    batch_rows_per_part: int = Field(100_000, alias="BATCH_ROWS_PER_PART", gt=0)


class BatchStarterSettings(Settings):
    """The upload trigger of batch files also needs the state machine it starts."""

    batch_state_machine_arn: str = Field(alias="BATCH_STATE_MACHINE_ARN", min_length=20)


@cache
def batch_settings() -> BatchSettings:
    return BatchSettings.from_environment(dict(os.environ))


@cache
def batch_starter_settings() -> BatchStarterSettings:
    return BatchStarterSettings.from_environment(dict(os.environ))
