"""One settings model feeds the CDK app (and, through environment variables, the handlers)."""

import subprocess
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
    api_rate_limit: float = 50.0
    api_burst_limit: int = 100
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

    @classmethod
    def from_context(cls, raw: dict | None) -> "PlatformSettings":
        return cls.model_validate(raw or {})
