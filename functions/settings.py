"""Handler settings: environment variables set by the CDK code, parsed once per execution environment.

The variable names live here only: `infra/` builds each function's environment with
`Settings.environment(...)`, and handlers read it with `settings()`. Names of resources have
no defaults, so a function deployed without one fails its cold start naming the variable.
"""

import os
from functools import cache
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    data_bucket: str = Field(alias="DATA_BUCKET", min_length=3)
    datasets_table: str = Field(alias="DATASETS_TABLE", min_length=3)
    registry_table: str = Field(alias="REGISTRY_TABLE", min_length=3)
    features_table: str = Field(alias="FEATURES_TABLE", min_length=3)
    code_version: str = Field(alias="CODE_VERSION", min_length=1)
    metrics_namespace: str = Field("Mlops", alias="POWERTOOLS_METRICS_NAMESPACE")
    model_cache_ttl_seconds: float = Field(30.0, alias="MODEL_CACHE_TTL_SECONDS", ge=0)
    max_request_bytes: int = Field(262_144, alias="MAX_REQUEST_BYTES", gt=0)
    max_instances: int = Field(1_000, alias="MAX_INSTANCES", gt=0)
    feature_ttl_days: int = Field(30, alias="FEATURE_TTL_DAYS", gt=0)
    drift_window_hours: int = Field(24, alias="DRIFT_WINDOW_HOURS", gt=0)
    drift_psi_threshold: float = Field(0.2, alias="DRIFT_PSI_THRESHOLD", gt=0)
    drift_ks_pvalue: float = Field(0.01, alias="DRIFT_KS_PVALUE", gt=0, lt=1)

    @classmethod
    def environment(cls, **values: Any) -> dict[str, str]:
        """Environment variables that set these fields (by field name), as infra/ gives them to a function."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise KeyError(f"no setting named {', '.join(unknown)}")
        return {cls.variable(name): str(value) for name, value in values.items()}

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of a field."""
        alias = cls.model_fields[field].alias
        assert alias is not None
        return alias

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> Self:
        """The settings in `environ`; a missing or invalid variable is named in the error."""
        try:
            return cls.model_validate({k: v for k, v in environ.items() if v != ""})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise RuntimeError(f"the function's environment is incomplete or invalid: {problems}") from None


class StarterSettings(Settings):
    """The upload trigger also needs the state machine it starts."""

    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN", min_length=20)


@cache
def settings() -> Settings:
    """The running function's settings, parsed on first use and kept for the execution environment."""
    return Settings.from_environment(dict(os.environ))


@cache
def starter_settings() -> StarterSettings:
    return StarterSettings.from_environment(dict(os.environ))
