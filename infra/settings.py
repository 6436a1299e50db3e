"""One settings model feeds the CDK app (and, through environment variables, the handlers)."""

import math
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
    # Execution environments of the predict function kept initialized (its `live` alias's provisioned
    # concurrency): no cold start for that many concurrent requests, billed while deployed. 0: none.
    serving_provisioned_concurrency: int = Field(0, ge=0)
    # Capture delivery (infra/capture.py): Firehose writes an object per model and hour partition at most every
    # capture_buffer_seconds, or sooner at capture_buffer_mb (dynamic partitioning takes 60 s and 64 MiB at least).
    capture_buffer_seconds: int = Field(60, ge=60, le=900)
    capture_buffer_mb: int = Field(64, ge=64, le=128)
    # Training. The data and training steps (RegisterDataset, ValidateDataset, BuildFeatures,
    # Train, Evaluate) get the most memory and time; the registry steps (RegisterModel,
    # Promote) load one or two models; the record steps (RecordSuccess, RecordFailure, the
    # upload trigger, the run-ended handler) write one item.
    training_memory_mb: int = Field(3008, ge=128, le=10_240)
    training_timeout_minutes: int = Field(15, ge=1, le=15)
    registry_step_memory_mb: int = Field(1024, ge=128, le=10_240)
    registry_step_timeout_seconds: int = Field(300, ge=1, le=900)
    record_step_memory_mb: int = Field(512, ge=128, le=10_240)
    record_step_timeout_seconds: int = Field(60, ge=1, le=900)
    # The training section. A model trains in a SageMaker training job (the scikit-learn framework image,
    # through Step Functions' .sync integration) when its spec says `backend: sagemaker`, or when its
    # dataset has more cells (rows x feature columns) than sagemaker_threshold_cells; else in the Train
    # Lambda step. The job's instance, volume and longest run are these; the task waits
    # sagemaker_startup_minutes more (the instance starting, the data downloaded, the model uploaded).
    sagemaker_threshold_cells: int = Field(50_000_000, gt=0)
    sagemaker_instance_type: str = Field("ml.m5.xlarge", pattern=r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
    sagemaker_volume_gb: int = Field(30, ge=1, le=16_384)
    sagemaker_max_runtime_minutes: int = Field(60, ge=1, le=28 * 24 * 60)
    sagemaker_startup_minutes: int = Field(15, ge=1, le=120)
    sagemaker_framework_version: str = Field("1.2-1", pattern=r"^[0-9]+\.[0-9]+(-[0-9]+)?$")  # sagemaker-scikit-learn
    # A hyper-parameter search runs its trials in a Map state: inline (the trials in the state) up to
    # search_distributed_threshold trials, past it a Distributed Map that reads them from S3 (a JSON
    # array) and writes its results there, so thousands of trials stay within the state size limit.
    # At most search_max_concurrency trials run at once (also the trial function's reserved concurrency);
    # a Distributed Map fails when more than search_tolerated_failure_percentage of its trial executions
    # fail (a trial that fails on its candidate still ends its execution: recorded FAILED, not failed).
    search_distributed_threshold: int = Field(40, ge=1, le=200)
    search_max_concurrency: int = Field(10, ge=1, le=1_000)
    search_tolerated_failure_percentage: float = Field(100.0, ge=0, le=100)
    # At least the steps' timeouts added up (checked below), so a run that is slow but within
    # its steps' limits is never cut short; a run that times out is recorded FAILED anyway.
    pipeline_timeout_minutes: int = 240
    # Reserved concurrency (None: unreserved) of each pipeline step function and the upload
    # trigger, and of the drift check: runaway uploads or checks cannot take the account's
    # concurrency from the predict function (which stays unreserved unless set here).
    # Reservations need the account's unreserved pool to stay at 100 or more.
    pipeline_concurrency: int | None = Field(5, ge=1)
    drift_concurrency: int | None = Field(1, ge=1)
    serving_concurrency: int | None = Field(None, ge=1)
    # Data retention in days per prefix of the data bucket (None: kept). Expiring data is
    # removed for good: the current version expires, its noncurrent version is deleted
    # `noncurrent_version_days` later, and the delete marker left behind is removed.
    # Datasets and models are lineage (a model version names its dataset version): kept.
    captures_retention_days: int | None = Field(90, ge=1)
    reports_retention_days: int | None = Field(365, ge=1)
    runs_retention_days: int | None = Field(365, ge=1)
    datasets_retention_days: int | None = Field(None, ge=1)
    models_retention_days: int | None = Field(None, ge=1)
    noncurrent_version_days: int = Field(7, ge=1)
    access_logs_retention_days: int = Field(365, ge=1)
    access_logs_versioned: bool = True
    # DynamoDB deletion protection; None: on while the removal policy retains the tables.
    table_deletion_protection: bool | None = None
    # Batch inference (infra/batch.py): the largest file a job takes (PlanBatch holds it and its typed copy in
    # memory), the rows of a part (one Distributed Map item), parts scored at once (also ScoreBatchPart's reserved
    # concurrency), each step function's memory and timeout, and a whole job's timeout.
    batch_max_bytes: int = Field(256 * 1024 * 1024, gt=0, le=2 * 1024**3)
    batch_rows_per_part: int = Field(100_000, ge=1, le=10_000_000)
    batch_max_concurrency: int = Field(10, ge=1, le=1_000)
    batch_memory_mb: int = Field(3008, ge=128, le=10_240)
    batch_timeout_minutes: int = Field(15, ge=1, le=15)
    batch_job_timeout_minutes: int = Field(120, ge=1, le=365 * 24 * 60)
    # Features
    feature_ttl_days: int = 30
    # Monitoring
    drift_schedule_minutes: int = 60
    drift_window_hours: int = 24
    drift_psi_threshold: float = 0.2
    drift_ks_pvalue: float = 0.01
    latency_alarm_ms: int = 1_000
    alarm_email: str | None = None
    # Automatic retraining on drift or decay (functions/monitoring/retrain.py): at most one per model in
    # this many hours; a spec's `monitoring: {retrain: false}` turns it off for that model.
    retrain_cooldown_hours: float = Field(6.0, ge=0)
    # A retrain adds the labels received since its dataset version, joined with the requests they label as
    # captured in this many days (at most captures_retention_days: feedback_days()).
    retrain_feedback_days: int = Field(14, ge=1, le=365)
    # Roll-outs (infra/rollout.py): a challenger is rolled back when, over one alarm period, more than
    # rollout_error_rate of its requests fail or its p90 latency is above rollout_latency_ms.
    rollout_error_rate: float = Field(0.05, ge=0, lt=1)
    rollout_latency_ms: int = Field(500, gt=0)
    rollout_alarm_period_seconds: int = Field(60, ge=10)
    rollout_concurrency: int | None = Field(2, ge=1)

    @model_validator(mode="after")
    def _a_key_is_throttled_within_the_stage(self) -> Self:
        for key, stage in [("api_key_rate_limit", "api_rate_limit"), ("api_key_burst_limit", "api_burst_limit")]:
            if getattr(self, key) > getattr(self, stage):
                raise ValueError(f"{key} ({getattr(self, key)}) is more than the stage's {stage} "
                                 f"({getattr(self, stage)}): a key's limit must be at most the stage's")
        return self

    @model_validator(mode="after")
    def _provisioned_within_reserved(self) -> Self:
        reserved, provisioned = self.serving_concurrency, self.serving_provisioned_concurrency
        if reserved is not None and provisioned > reserved:
            raise ValueError(f"serving_provisioned_concurrency ({provisioned}) is more than the predict function's "
                             f"reserved serving_concurrency ({reserved})")
        return self

    @model_validator(mode="after")
    def _pipeline_outlasts_its_steps(self) -> Self:
        needed = pipeline_steps_seconds(self)
        if self.pipeline_timeout_minutes * 60 < needed:
            raise ValueError(
                f"pipeline_timeout_minutes ({self.pipeline_timeout_minutes}) is less than its steps' timeouts "
                f"added up ({math.ceil(needed / 60)} minutes)"
            )
        return self

    @property
    def deletion_protection(self) -> bool:
        if self.table_deletion_protection is not None:
            return self.table_deletion_protection
        return self.removal_policy == "retain"

    def feedback_days(self) -> int:
        """How far back a retrain searches the captures: retrain_feedback_days, within the captures' retention."""
        kept = self.captures_retention_days
        return self.retrain_feedback_days if kept is None else min(self.retrain_feedback_days, kept)

    def retention_days(self) -> dict[str, int | None]:
        """Days each prefix of the data bucket keeps its objects (None: kept)."""
        return {
            "captures/": self.captures_retention_days,
            "reports/": self.reports_retention_days,
            "runs/": self.runs_retention_days,
            "datasets/": self.datasets_retention_days,
            "models/": self.models_retention_days,
        }

    @classmethod
    def from_context(cls, raw: dict | None) -> "PlatformSettings":
        return cls.model_validate(raw or {})


# The pipeline's steps by kind, in the order a run meets them (RecordFailure after a failure,
# which may follow a failed RecordSuccess).
DATA_STEPS = ("RegisterDataset", "ValidateDataset", "BuildFeatures", "PlanTraining", "Train", "Evaluate",
              "PublishFeatures")
REGISTRY_STEPS = ("RegisterModel", "Promote")
RECORD_STEPS = ("RecordSuccess", "RecordFailure")
# The training section's other states: a search's (a trial, SelectBest) and the SageMaker backend's
# (TrainOnSageMaker instead of Train, then CollectTraining). Their Lambda functions are timed as data steps.
SEARCH_STEPS = ("Trial", "SelectBest")
SAGEMAKER_TASK = "TrainOnSageMaker"
SAGEMAKER_STEPS = (SAGEMAKER_TASK, "CollectTraining")


def step_timeout_seconds(settings: PlatformSettings, step: str) -> int:
    if step == SAGEMAKER_TASK:  # the training job's longest run, and its start-up and upload
        return (settings.sagemaker_max_runtime_minutes + settings.sagemaker_startup_minutes) * 60
    if step in DATA_STEPS + SEARCH_STEPS + SAGEMAKER_STEPS:
        return settings.training_timeout_minutes * 60
    if step in REGISTRY_STEPS:
        return settings.registry_step_timeout_seconds
    return settings.record_step_timeout_seconds


def pipeline_steps_seconds(settings: PlatformSettings) -> int:
    """The pipeline's steps' timeouts added up along its longest path: the least time a run may need (a search
    counted as one round of trials; a search of more trials than search_max_concurrency takes more rounds)."""
    steps = sum(step_timeout_seconds(settings, step) for step in DATA_STEPS + REGISTRY_STEPS + RECORD_STEPS)
    search = sum(step_timeout_seconds(settings, step) for step in SEARCH_STEPS)
    sagemaker = sum(step_timeout_seconds(settings, step) for step in SAGEMAKER_STEPS)
    return steps + search + max(0, sagemaker - step_timeout_seconds(settings, "Train"))
