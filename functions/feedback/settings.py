"""The settings of the functions that read or write labels, beside the settings every function has."""

import os
from functools import cache

from pydantic import Field

from functions.settings import Settings


class FeedbackSettings(Settings):
    feedback_table: str = Field(alias="FEEDBACK_TABLE", min_length=3)
    # The largest label file under feedback/<model>/ that is read (it is held in memory).
    feedback_max_file_bytes: int = Field(16 * 1024 * 1024, alias="FEEDBACK_MAX_FILE_BYTES", gt=0)


@cache
def feedback_settings() -> FeedbackSettings:
    return FeedbackSettings.from_environment(dict(os.environ))
