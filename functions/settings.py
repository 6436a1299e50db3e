"""Handler settings: environment variables set by the CDK code, parsed once into one model."""

import os
from pydantic import BaseModel, Field


class Settings(BaseModel):
    data_bucket: str = Field("", alias="DATA_BUCKET")
    datasets_table: str = Field("", alias="DATASETS_TABLE")
    registry_table: str = Field("", alias="REGISTRY_TABLE")
    features_table: str = Field("", alias="FEATURES_TABLE")
    state_machine_arn: str = Field("", alias="STATE_MACHINE_ARN")
    code_version: str = Field("dev", alias="CODE_VERSION")
    metrics_namespace: str = Field("Mlops", alias="POWERTOOLS_METRICS_NAMESPACE")
    model_cache_ttl_seconds: float = Field(30.0, alias="MODEL_CACHE_TTL_SECONDS")
    max_request_bytes: int = Field(262_144, alias="MAX_REQUEST_BYTES")
    max_instances: int = Field(1_000, alias="MAX_INSTANCES")
    feature_ttl_days: int = Field(30, alias="FEATURE_TTL_DAYS")
    drift_window_hours: int = Field(24, alias="DRIFT_WINDOW_HOURS")
    drift_psi_threshold: float = Field(0.2, alias="DRIFT_PSI_THRESHOLD")
    drift_ks_pvalue: float = Field(0.01, alias="DRIFT_KS_PVALUE")

    model_config = {"populate_by_name": True, "frozen": True}


def settings() -> Settings:
    """The settings of the running function, read from its environment.

    Not cached: the local cloud runs several functions in one process, each with its own
    environment, and parsing a few variables costs microseconds.
    """
    return Settings.model_validate({k: v for k, v in os.environ.items() if v != ""})
