"""The state of a pipeline execution, as each step receives it (the whole state, every time).

start_pipeline builds the input (run id, model, uploaded object); each step's result is a
model below, stored by the state machine at its own path ($.dataset, $.validation, ...), and a
caught failure is at $.error. A step reads what earlier steps wrote with `state.result(Type)`.
"""

from typing import Any, Literal, TypeVar

from aws_lambda_powertools.utilities.parser import parse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions.errors import InvalidInput
from functions.spec import NAME_PATTERN, Backend, ModelSpec

# Where a step's event holds its run: the correlation id of the step's logs.
RUN_ID = "run_id"


class StepResult(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DatasetResult(StepResult):
    """RegisterDataset: the uploaded version, and the spec as it was when the run started."""

    dataset_id: str
    key: str
    version_id: str | None = None
    bytes: int
    spec: ModelSpec
    rows: int = 0
    columns: dict[str, str] = Field(default_factory=dict)
    readable: bool
    new: bool | None = None  # None: unreadable, so not recorded
    run_key: str | None = None  # the run's identity: sha256 of dataset content, spec and code version
    retrain: bool = False  # the upload asked for a retrain (object metadata retrain=true)
    duplicate_of: str | None = None  # an earlier run of the same identity that succeeded: nothing to repeat
    duplicate_version: int | None = None  # the model version that run registered
    # The upload parsed once, as a typed Parquet frame (runs/<model>/<run>/dataset.parquet) that every later
    # step reads (verified by its sha256), never the upload again; or why it could not be parsed.
    frame_key: str | None = None
    frame_sha256: str | None = None
    unreadable: str | None = None


class ValidationResult(StepResult):
    report_key: str
    passed: bool
    warnings: list[str] = Field(default_factory=list)


class FeaturesResult(StepResult):
    features_key: str
    features_sha256: str
    rows: int
    entities: int


# --- the training section: its plan, the search's trials, the SageMaker training job -------------


class TrialItem(StepResult):
    """One trial of a search: an item of the Map (its parameters are the estimator's, as sampled)."""

    index: int = Field(ge=0)
    estimator: str
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingJob(StepResult):
    """A SageMaker training job's name and S3 paths (the template builds the job from them)."""

    name: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,56}$")  # a suffix -<retry> keeps it within 63
    features_uri: str  # channel "features": the run's features (Parquet)
    config_uri: str  # channel "config": what to train (training/job.json, and best.json after a search)
    output_uri: str  # where SageMaker writes <job>/output/model.tar.gz


class PlanResult(StepResult):
    """PlanTraining: which backend trains the model, and whether (and how) a search runs first."""

    backend: Backend
    backend_reason: str
    search: Literal["none", "inline", "distributed"] = "none"
    trials: int = 0
    search_key: str | None = None  # what every trial reads (runs/<model>/<run>/search/search.json)
    trials_key: str | None = None  # the trials, a JSON array: the Distributed Map's ItemReader reads it
    items: list[TrialItem] = Field(default_factory=list)  # the trials of an inline Map (else empty)
    job: TrainingJob | None = None  # the SageMaker backend's job


class TrialInput(BaseModel):
    """The event of a trial: what the Map's ItemSelector gives it (the run, and the trial, its item)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str = Field(min_length=1, max_length=80)
    model: str = Field(pattern=NAME_PATTERN)
    search_key: str = Field(min_length=1, max_length=1024)
    trial: TrialItem


class TrialResult(StepResult):
    """A trial's outcome (also stored as runs/<model>/<run>/search/trials/<index>.json for SelectBest)."""

    index: int
    run_id: str  # the trial's own run (a child of the pipeline's run)
    estimator: str
    params: dict[str, Any]
    status: Literal["SUCCEEDED", "FAILED"]
    score: float | None = None  # the mean of the spec's metric over the folds
    metrics: dict[str, float] = Field(default_factory=dict)  # each metric's mean over the folds
    fold_metrics: list[dict[str, float]] = Field(default_factory=list)
    failure_reason: str | None = None


class SearchResult(StepResult):
    """SelectBest: the best trial by the spec's metric (ties: the lowest index), and how the others did."""

    metric: str
    trials: int
    succeeded: int
    failed: int
    best: TrialResult
    best_key: str  # best.json, beside the training job's config (the SageMaker backend reads it)


class TrainingJobResult(StepResult):
    """TrainOnSageMaker: the finished training job (the task's ResultSelector keeps these of DescribeTrainingJob)."""

    job_name: str
    status: str
    model_artifacts: str  # s3://<bucket>/<output>/<job>/output/model.tar.gz


class TrainingResult(StepResult):
    model_key: str
    model_sha256: str
    trusted_types: list[str]
    train_key: str
    holdout_key: str
    params: dict[str, Any]
    estimator: str
    seed: int
    stratified: bool
    rows: dict[str, int]
    grouped: bool = False  # split by entity id: no entity on both sides
    backend: Backend = "lambda"  # where it was trained (a SageMaker training job: job_name)
    job_name: str | None = None


class EvaluationResult(StepResult):
    metrics: dict[str, float]
    holdout_rows: int
    warnings: list[str] = Field(default_factory=list)  # e.g. a model that scores at chance level
    # The served format, converted once (the model is loaded here once): the ONNX model when it converts and
    # agrees with scikit-learn (runs/<model>/<run>/model.onnx), else why not; RegisterModel copies the bytes.
    classes: list[Any] | None = None
    onnx_key: str | None = None
    onnx_sha256: str | None = None
    onnx_skipped: str | None = None  # None: not converted here (RegisterModel converts)
    # The version's reference profile for drift checks (functions.shared.reference), built here once.
    reference_key: str | None = None
    reference_sha256: str | None = None


class RegistrationResult(StepResult):
    version: int
    format: Literal["onnx", "skops"]


class PromotionResult(StepResult):
    promoted: bool
    champion: int | None
    challenger: int | None = None
    previous: int | None = None
    metric: str
    score: float | None = None
    champion_score: float | None = None
    reason: str
    status: str | None = None  # the version's approval status after the gate (records.VersionStatus)


class PublicationResult(StepResult):
    """PublishFeatures: each entity's latest features written to the online store, after the registration."""

    entities: int


class RunResult(StepResult):
    """RecordSuccess or RecordFailure: how the run ended."""

    status: Literal["SUCCEEDED", "FAILED"]
    model_version: int | None = None
    promoted: bool | None = None
    failure_reason: str | None = None
    failed_step: str | None = None
    duplicate_of: str | None = None


# The steps in order, with the path of their results: the first missing one is where a run stopped.
STEPS: list[tuple[str, str, type[StepResult]]] = [
    ("dataset", "RegisterDataset", DatasetResult),
    ("validation", "ValidateDataset", ValidationResult),
    ("features", "BuildFeatures", FeaturesResult),
    ("plan", "PlanTraining", PlanResult),
    ("search", "SelectBest", SearchResult),  # only when the plan runs a search
    ("training_job", "TrainOnSageMaker", TrainingJobResult),  # only on the SageMaker backend
    ("training", "Train", TrainingResult),  # on the SageMaker backend: CollectTraining
    ("evaluation", "Evaluate", EvaluationResult),
    ("registration", "RegisterModel", RegistrationResult),
    ("promotion", "Promote", PromotionResult),
    ("publication", "PublishFeatures", PublicationResult),
    ("run", "RecordSuccess", RunResult),
]
R = TypeVar("R", bound=StepResult)


class PipelineState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: str = Field(min_length=1, max_length=80)
    model: str = Field(pattern=NAME_PATTERN)
    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)
    version_id: str | None = None
    dataset: DatasetResult | None = None
    validation: ValidationResult | None = None
    features: FeaturesResult | None = None
    plan: PlanResult | None = None
    search: SearchResult | None = None
    training_job: TrainingJobResult | None = None
    training: TrainingResult | None = None
    evaluation: EvaluationResult | None = None
    registration: RegistrationResult | None = None
    promotion: PromotionResult | None = None
    publication: PublicationResult | None = None
    run: RunResult | None = None
    error: dict[str, Any] | None = None  # Step Functions' {"Error", "Cause"} of a caught failure

    def result(self, kind: type[R]) -> R:
        """The result an earlier step stored (InvalidInput when that step did not run)."""
        path, step = next((path, step) for path, step, result in STEPS if result is kind)
        value = getattr(self, path)
        if not isinstance(value, kind):
            raise InvalidInput(f"the pipeline state has no result of {step}: that step did not run")
        return value

    @property
    def spec(self) -> ModelSpec:
        """The spec as the run registered its dataset (a spec edited mid-run does not change the run)."""
        return self.result(DatasetResult).spec

    def warnings(self) -> list[str]:
        """What the run found worth a look so far: validation's warnings, then evaluation's."""
        found = list(self.validation.warnings) if self.validation else []
        return found + (list(self.evaluation.warnings) if self.evaluation else [])

    def failed_step(self) -> str:
        sagemaker = self.plan is not None and self.plan.backend == "sagemaker"
        for path, step, _ in STEPS:
            if getattr(self, path) is not None:
                continue
            if path == "search" and (self.plan is None or self.plan.search == "none"):
                continue  # no search was planned
            if path == "training_job" and not sagemaker:
                continue
            return "CollectTraining" if path == "training" and sagemaker else step
        return "unknown"


def parse_state(event: Any) -> PipelineState:
    try:
        return parse(event=event, model=PipelineState)
    except ValidationError as error:
        fields = sorted({".".join(map(str, e["loc"])) or "state" for e in error.errors()})
        raise InvalidInput(f"the pipeline state is malformed (fields: {', '.join(fields)})") from error
    except Exception as error:
        raise InvalidInput("the pipeline state is malformed") from error
