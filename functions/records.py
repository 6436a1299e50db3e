"""The records the platform keeps: dataset versions, runs, model versions, aliases, audit entries.

Stores read and write these (storage.dynamo converts them to and from items); every other
module reads their fields, never string keys of a dict.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from functions.spec import Feature, ModelSpec, Task
from functions.storage.dynamo import StoredAsJson

# A class label as scikit-learn and JSON give it back (smart unions keep the exact type).
Label = bool | int | float | str
JsonObject = Annotated[dict[str, Any], StoredAsJson()]
RunStatus = Literal["RUNNING", "SUCCEEDED", "FAILED"]
RunSource = Literal["pipeline", "client"]
AliasName = Literal["champion", "challenger"]
ALIASES: tuple[AliasName, ...] = ("champion", "challenger")
# A version's approval: registered PendingManualApproval, then Approved or Rejected by the promotion gate
# (auto-approval) or a person (`mlops models approve|reject`). Only an Approved version may be champion.
VersionStatus = Literal["PendingManualApproval", "Approved", "Rejected"]
RolloutMode = Literal["canary", "shadow"]
RolloutStatus = Literal["running", "promoted", "rolled_back"]
MIN_BAKE_SECONDS = 1  # a test's bake; on AWS a useful bake is minutes (alarms evaluate per minute)
MAX_BAKE_SECONDS = 7 * 24 * 3600
# Versions registered before approvals existed say "registered": they were served without one.
LEGACY_STATUS: dict[str, VersionStatus] = {"registered": "Approved"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DatasetVersion(Record):
    """An uploaded file, identified by its content (sha256), with its profile and the runs that used it."""

    model: str
    dataset_id: str
    bucket: str
    key: str
    version_id: str | None = None
    rows: int
    columns: dict[str, str]  # name -> dtype
    profile: JsonObject
    created_at: str = Field(default_factory=now_iso)
    runs: set[str] = Field(default_factory=set)


class RunArtifact(Record):
    """A file a run stored in the data bucket, verified by its sha256 (None: the step did not keep it)."""

    key: str
    sha256: str | None = None
    bytes: int | None = None


class Run(Record):
    """One pipeline execution: what it was given, and how it ended."""

    model: str
    run_id: str
    status: RunStatus = "RUNNING"
    bucket: str
    key: str
    version_id: str | None = None
    code_version: str
    started_at: str = Field(default_factory=now_iso)
    ended_at: str | None = None
    dataset_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    params: JsonObject = Field(default_factory=dict)
    model_version: int | None = None
    promoted: bool | None = None
    champion: int | None = None
    promotion_reason: str | None = None
    failure_reason: str | None = None
    failed_step: str | None = None
    error_type: str | None = None
    warnings: list[str] = Field(default_factory=list)  # what validation and evaluation found worth a look
    # The run's identity (dataset content + spec + code version): an identical earlier run that
    # succeeded is not repeated, unless the upload asks for a retrain.
    run_key: str | None = None
    retrain: bool = False
    duplicate_of: str | None = None  # the earlier run this one matches (it then trained nothing)
    # Experiment tracking: where the run came from (the pipeline, or a notebook through the `mlops`
    # client), its tags, the packages it ran with, and what it stored (name -> S3 key and sha256).
    source: RunSource = "pipeline"
    tags: dict[str, str] = Field(default_factory=dict)
    packages: dict[str, str] = Field(default_factory=dict)
    artifacts: dict[str, RunArtifact] = Field(default_factory=dict)
    # A trial of a hyper-parameter search is a child run: its parent run, its number in the search, the
    # estimator and parameters it cross-validated, and its metrics per fold (`metrics` holds their means).
    parent_run_id: str | None = None
    trial: int | None = None
    estimator: str | None = None
    fold_metrics: Annotated[list[dict[str, float]], StoredAsJson()] = Field(default_factory=list)


class Artifacts(Record):
    """Where a version's model is stored, in which formats, with the hashes it is verified by."""

    skops_key: str
    skops_sha256: str
    skops_trusted_types: list[str]
    onnx_key: str | None = None
    onnx_sha256: str | None = None
    onnx_skipped: str | None = None  # why there is no ONNX model (serving then uses skops)
    # The ONNX input of each signature feature, in order (f0, f1, ...); None: named after the features.
    onnx_inputs: list[str] | None = None

    @property
    def format(self) -> Literal["onnx", "skops"]:
        return "onnx" if self.onnx_key else "skops"


class ModelVersion(Record):
    """A registered model: its artifacts, metrics, signature and lineage."""

    model: str
    version: int
    run_id: str
    dataset_id: str
    task: Task
    target: str
    signature: list[Feature]
    classes: Annotated[list[Label] | None, StoredAsJson()] = None
    metric: str
    metrics: dict[str, float] = Field(default_factory=dict)
    artifacts: Artifacts
    estimator: str
    params: JsonObject = Field(default_factory=dict)
    code_version: str
    packages: dict[str, str] = Field(default_factory=dict)
    holdout_key: str
    warnings: list[str] = Field(default_factory=list)  # e.g. it scores at chance level on its holdout
    status: VersionStatus = "PendingManualApproval"
    status_reason: str | None = None  # why it has its status, who gave it and when (the audit trail has them all)
    status_changed_by: str | None = None
    status_changed_at: str | None = None
    registered_by: str | None = None  # who registered it (the pipeline function's role, or a tracking client's user)
    created_at: str = Field(default_factory=now_iso)

    @field_validator("status", mode="before")
    @classmethod
    def _legacy_status(cls, value: Any) -> Any:
        return LEGACY_STATUS.get(value, value) if isinstance(value, str) else value

    def trained_spec(self, spec: ModelSpec) -> ModelSpec:
        """The model's current spec with this version's own signature and task (what it was trained for)."""
        return spec.trained_as(self.signature, self.task)


class AuditEntry(Record):
    """One change of the registry, append-only: an alias move (`alias` set: from_version -> version) or a
    version's state change (`status` set: from_status -> status; from_status None: its registration)."""

    model: str
    action: str  # set_champion, set_challenger; register, approve, reject; rollout_start|promote|rollback
    alias: AliasName | None = None
    version: int
    from_version: int | None = None
    status: VersionStatus | None = None
    from_status: VersionStatus | None = None
    reason: str
    at: str
    actor: str = "unknown"  # who: an IAM/STS identity ARN (the pipeline function's role, or the CLI's user)
    # A roll-out's start or end (version: the challenger, from_version: the champion; registry.rollout).
    rollout_id: str | None = None
    # An automatic retrain (action "retrain", version: the version that drifted or decayed): the event that
    # caused it (its id, detail type and detail) and the training file it uploaded (functions.monitoring.retrain).
    cause: Annotated[dict[str, Any] | None, StoredAsJson()] = None
    dataset_key: str | None = None


class Retrain(Record):
    """A model's latest automatic retrain (the cooldown's item): when it started, the event that caused it, the
    training file it uploaded and the run that file starts (known once the upload is made)."""

    model: str
    event_id: str
    detail_type: str
    version: int | None = None  # the version that drifted or decayed
    started_at: str
    dataset_id: str  # the dataset version it retrains on
    dataset_key: str  # its training file: that version, plus the labelled feedback received after feedback_since
    feedback_since: str | None = None  # None: no feedback was looked for
    run_id: str | None = None


class Rollout(Record):
    """A model's latest roll-out: who started it, how the challenger takes traffic, and how it ended."""

    model: str
    rollout_id: str
    champion: int
    challenger: int
    mode: RolloutMode
    share: float = Field(gt=0, le=1)  # canary: of the requests served by the challenger; shadow: of those scored
    bake_seconds: int = Field(ge=MIN_BAKE_SECONDS, le=MAX_BAKE_SECONDS)
    status: RolloutStatus = "running"
    started_by: str
    started_at: str
    bake_ends_at: str
    reason: str = ""
    ended_at: str | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"
