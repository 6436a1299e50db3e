"""One settings model feeds the CDK app (and, through environment variables, the handlers)."""

import subprocess
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unversioned"


class PlatformSettings(BaseModel):
    """Everything a team may tune without editing the constructs.

    Read from the CDK context key `mlops` (cdk.json or `-c mlops='{...}'`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack_name: str = "MlopsPlatform"
    code_version: str = Field(default_factory=_git_revision)
    # Data and registry outlive the stack unless a team asks otherwise (dev accounts).
    removal_policy: Literal["retain", "destroy"] = "retain"
    # Serving
    api_stage: str = "prod"
    # Requests a second (and burst) for the whole stage, and for each API key (its usage plan):
    # a key's limits are at most the stage's (checked below), so one client cannot take it all.
    api_rate_limit: float = Field(100.0, gt=0)
    api_burst_limit: int = Field(200, ge=1)
    api_key_rate_limit: float = Field(50.0, gt=0)
    api_key_burst_limit: int = Field(100, ge=1)
    api_quota_per_day: int = 100_000
    model_cache_ttl_seconds: int = 30
    max_request_bytes: int = 262_144
    max_instances: int = 1_000
    serving_memory_mb: int = 2048
    # Training
    training_memory_mb: int = 3008
    training_timeout_minutes: int = 15
    pipeline_timeout_minutes: int = 60
    # Features
    feature_ttl_days: int = 30
    # Monitoring
    drift_schedule_minutes: int = 60
    drift_window_hours: int = 24
    drift_psi_threshold: float = 0.2
    drift_ks_pvalue: float = 0.01
    latency_alarm_ms: int = 1_000
    alarm_email: str | None = None

    @model_validator(mode="after")
    def _a_key_is_throttled_within_the_stage(self) -> Self:
        for key, stage in [("api_key_rate_limit", "api_rate_limit"), ("api_key_burst_limit", "api_burst_limit")]:
            if getattr(self, key) > getattr(self, stage):
                raise ValueError(f"{key} ({getattr(self, key)}) is more than the stage's {stage} "
                                 f"({getattr(self, stage)}): a key's limit must be at most the stage's")
        return self

    @classmethod
    def from_context(cls, raw: dict | None) -> "PlatformSettings":
        return cls.model_validate(raw or {})
