"""The monitoring functions' own settings (per-model alarms, retraining), beside the settings every function has."""

import os
from functools import cache

from pydantic import Field

from functions.settings import Settings


class MonitoringSettings(Settings):
    # Per-model alarms (monitoring.alarms): their names start with the prefix, they notify the topic.
    alarm_prefix: str = Field(alias="MODEL_ALARM_PREFIX", min_length=1, max_length=100)
    alarm_topic_arn: str | None = Field(None, alias="ALARM_TOPIC_ARN")
    latency_alarm_ms: int = Field(1_000, alias="LATENCY_ALARM_MS", gt=0)
    drift_schedule_minutes: int = Field(60, alias="DRIFT_SCHEDULE_MINUTES", gt=0)
    # At most one automatic retrain per model in this many hours (monitoring.retrain).
    retrain_cooldown_hours: float = Field(6.0, alias="RETRAIN_COOLDOWN_HOURS", ge=0)
    # How far back a retrain searches the captures for the requests its new labels label.
    retrain_feedback_days: int = Field(14, alias="RETRAIN_FEEDBACK_DAYS", ge=1, le=365)


@cache
def monitoring_settings() -> MonitoringSettings:
    return MonitoringSettings.from_environment(dict(os.environ))
