"""Tracking a notebook experiment as a run of the platform, and registering its model through the gate.

    import mlops

    with mlops.start_run(model="churn", tags={"owner": "ana"}) as run:
        run.log_params({"C": 0.5})
        run.log_dataset(train)                  # the training data: a version of the model's data
        pipeline.fit(run.features(train), train["churned"])
        run.log_metrics({"cv_roc_auc": 0.83})
        run.log_artifact("plot.png")
        registered = run.register(pipeline, holdout=holdout)

A run is a record in the registry table, as a pipeline run is (`source` says "client"); what it
stores goes under runs/<model>/<run id>/ in the data bucket. The run ends SUCCEEDED when the
block ends, FAILED with the reason when an exception leaves it (the exception goes on).

`register` does what the pipeline's last steps do, with the same functions: the data contract on
the training data, the holdout scored as the Evaluate step scores it, the model stored as skops
(and ONNX when it converts and agrees), registered with its signature and lineage
(registry.promotion.register_version), then the promotion gate (registry.promotion.promote).
"""

import logging
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from functions.data.store import DatasetStore
from functions.errors import DatasetInvalid, InvalidInput, MlopsError, shown
from functions.records import DatasetVersion, Run, RunArtifact, now_iso
from functions.registry.events import EventPublisher
from functions.registry.store import UNKNOWN_ACTOR, RegistryStore
from functions.spec import ModelSpec, check_model_name
from functions.storage.objects import ObjectStore, sha256
from mlops import checks

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 2000
MAX_CODE_VERSION_CHARS = 128
MIN_HOLDOUT_ROWS = 5
DATASET_SUFFIXES = {".csv", ".parquet"}


@dataclass(frozen=True)
class Tracking:
    """Where runs are tracked: the registry table, the data bucket and the datasets table (the ports); where the
    registry's changes are announced (EventBridge's default bus), and who makes them."""

    registry: RegistryStore
    objects: ObjectStore
    datasets: DatasetStore
    events: EventPublisher | None = None
    actor: str = UNKNOWN_ACTOR


def connect(stack: str | None = None) -> Tracking:
    """The running local cloud (found as the `mlops` command finds it), or a deployed stack by name; changes are
    made as the caller's AWS identity and announced on the account's default event bus, as the pipeline's are."""
    from cli.platform import Platform

    platform = Platform.deployed(stack) if stack else Platform.local()
    return Tracking(platform.registry, platform.objects, platform.datasets, events=platform.events,
                    actor=platform.actor)


@dataclass(frozen=True)
class Registration:
    """What `ActiveRun.register` did: the version, and the promotion gate's decision and reason."""

    version: int
    promoted: bool
    champion: int | None
    reason: str
    format: str  # how it is served: onnx, or skops when it did not convert
    status: str | None = None  # its approval after the gate: Approved, or PendingManualApproval
    metrics: dict[str, float] = field(default_factory=dict)  # on the holdout, as the gate scores it
    warnings: list[str] = field(default_factory=list)


def git_revision(directory: Path | None = None) -> str:
    """The commit of the working tree the notebook runs in (with -dirty when tracked files changed)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10,
                              cwd=directory).stdout.strip()

    try:
        revision = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unversioned"
    return f"{revision}-dirty" if dirty else revision


def start_run(model: str, *, tags: dict[str, str] | None = None, params: dict[str, Any] | None = None,
              stack: str | None = None, tracking: Tracking | None = None,
              code_version: str | None = None) -> "ActiveRun":
    """Start a tracked run of `model` (its spec must be registered): on the running local cloud by default,
    on a deployed stack with `stack="MlopsPlatform"`, or on the given `tracking` stores."""
    check_model_name(model)
    tags = dict(checks.check_tag(k, v) for k, v in checks.check_mapping("tags", tags or {}).items())
    checks.check_count("tags", len(tags), checks.MAX_TAGS)
    version = code_version if code_version is not None else git_revision()
    if not isinstance(version, str) or not version.strip() or len(version) > MAX_CODE_VERSION_CHARS:
        raise InvalidInput(f"the code version is 1 to {MAX_CODE_VERSION_CHARS} characters of text")
    checked = dict(checks.check_param(k, v) for k, v in checks.check_mapping("parameters", params or {}).items())
    checks.check_count("parameters", len(checked), checks.MAX_PARAMS)
    stores = tracking or connect(stack)
    spec = stores.registry.get_spec(model)  # UnknownModel, saying how to create it
    from functions.registry.promotion import package_versions

    run_id = f"{model}-{uuid.uuid4().hex[:16]}"
    record = Run(model=model, run_id=run_id, bucket=stores.objects.bucket, key=f"runs/{model}/{run_id}/",
                 code_version=version, source="client", tags=tags, params=checked, packages=package_versions())
    stores.registry.start_run(record)
    return ActiveRun(stores, spec, record)


class ActiveRun:
    """A run in progress: log to it, register its model, end it (a `with` block ends it for you)."""

    def __init__(self, stores: Tracking, spec: ModelSpec, record: Run):
        self._stores = stores
        self.spec = spec  # as it was when the run started, for the whole run (as in the pipeline)
        self.model = record.model
        self.run_id = record.run_id
        self.code_version = record.code_version
        self.status: Literal["RUNNING", "SUCCEEDED", "FAILED"] = "RUNNING"
        self._params: dict[str, Any] = dict(record.params)
        self._metrics: dict[str, float] = {}
        self._tags: dict[str, str] = dict(record.tags)
        self._artifacts: dict[str, RunArtifact] = {}
        self._warnings: list[str] = []
        self._dataset: DatasetVersion | None = None
        self._registration: Registration | None = None
        self._failed: tuple[BaseException, str] | None = None  # the last error of one of the run's steps

    def __repr__(self) -> str:
        return f"ActiveRun(model={self.model!r}, run_id={self.run_id!r}, status={self.status!r})"

    @property
    def prefix(self) -> str:
        """Where the run's files go in the data bucket."""
        return f"runs/{self.model}/{self.run_id}"

    @property
    def record(self) -> Run:
        """The run as the registry holds it now."""
        return self._stores.registry.get_run(self.model, self.run_id)

    @property
    def dataset(self) -> DatasetVersion | None:
        return self._dataset

    # --- the context manager ------------------------------------------------------------------
    def __enter__(self) -> "ActiveRun":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> Literal[False]:
        if self.status != "RUNNING":
            return False
        if error is None:
            self.end()
        else:
            self._fail(error, self._failed[1] if self._failed and self._failed[0] is error else "code")
        return False  # an exception goes on to the caller

    def end(self, status: Literal["SUCCEEDED", "FAILED"] = "SUCCEEDED", reason: str | None = None) -> None:
        """End the run (a `with` block does it); FAILED takes the reason."""
        if status not in ("SUCCEEDED", "FAILED"):
            raise InvalidInput(f"a run ends SUCCEEDED or FAILED, not {shown(status)}")
        self._check_running()
        fields: dict[str, Any] = {"status": status, "ended_at": now_iso()}
        if status == "FAILED":
            fields |= {"failure_reason": (reason or "ended as failed")[:MAX_REASON_CHARS], "failed_step": "code",
                       "error_type": "EndedAsFailed"}
        self._stores.registry.end_run(self.model, self.run_id, **fields)
        self.status = status

    def _fail(self, error: BaseException, step: str) -> None:
        """Record the run FAILED with why; never hides `error` (a failed write is logged instead)."""
        message = error.message if isinstance(error, MlopsError) else str(error)
        reason = f"{type(error).__name__}: {message}" if message else type(error).__name__
        self.status = "FAILED"
        try:
            self._stores.registry.end_run(self.model, self.run_id, status="FAILED", ended_at=now_iso(),
                                          failure_reason=reason[:MAX_REASON_CHARS], failed_step=step,
                                          error_type=type(error).__name__)
        except Exception:  # the user's own error matters more than this record
            logger.warning("the failed run %s could not be recorded as failed", self.run_id, exc_info=True)

    def _check_running(self) -> None:
        if self.status != "RUNNING":
            raise InvalidInput(f"run {self.run_id} has ended ({self.status}): start another run")

    def _step(self, step: str, action: Any, *args: Any, **kwargs: Any) -> Any:
        """One of the run's steps. Its failure goes to the caller, the run still RUNNING (calling the step
        again retries it: registering is idempotent per run); a `with` block that it leaves records the run
        FAILED at that step."""
        self._check_running()
        try:
            return action(*args, **kwargs)
        except BaseException as error:
            self._failed = (error, step)
            raise

    # --- logging ------------------------------------------------------------------------------
    def log_param(self, name: str, value: Any) -> None:
        self.log_params({name: value})

    def log_params(self, params: dict[str, Any]) -> None:
        """Parameters: numbers, strings, booleans or null (logging a name again replaces its value)."""
        self._check_running()
        checked = dict(checks.check_param(k, v) for k, v in checks.check_mapping("parameters", params).items())
        merged = {**self._params, **checked}
        checks.check_count("parameters", len(merged), checks.MAX_PARAMS)
        self._stores.registry.update_run(self.model, self.run_id, params=merged)
        self._params = merged

    def log_metric(self, name: str, value: float) -> None:
        self.log_metrics({name: value})

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Metrics: finite real numbers (logging a name again replaces its value)."""
        self._check_running()
        checked = dict(checks.check_metric(k, v) for k, v in checks.check_mapping("metrics", metrics).items())
        merged = {**self._metrics, **checked}
        checks.check_count("metrics", len(merged), checks.MAX_METRICS)
        self._stores.registry.update_run(self.model, self.run_id, metrics=merged)
        self._metrics = merged

    def set_tag(self, name: str, value: str) -> None:
        self.set_tags({name: value})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._check_running()
        checked = dict(checks.check_tag(k, v) for k, v in checks.check_mapping("tags", tags).items())
        merged = {**self._tags, **checked}
        checks.check_count("tags", len(merged), checks.MAX_TAGS)
        self._stores.registry.update_run(self.model, self.run_id, tags=merged)
        self._tags = merged

    def log_artifact(self, path: str | Path, name: str | None = None) -> RunArtifact:
        """Store a file (at most 50 MB) with the run, under runs/<model>/<run id>/artifacts/<name>."""
        self._check_running()
        artifact_name, data = checks.artifact_file(path, name)
        if artifact_name not in self._artifacts:
            checks.check_count("artifacts", len(self._artifacts) + 1, checks.MAX_ARTIFACTS)
        key = f"{self.prefix}/artifacts/{artifact_name}"
        artifact = RunArtifact(key=key, sha256=self._stores.objects.put_bytes(key, data), bytes=len(data))
        self._set_artifacts({artifact_name: artifact})
        return artifact

    def _set_artifacts(self, artifacts: dict[str, RunArtifact], **fields: Any) -> None:
        merged = {**self._artifacts, **artifacts}
        self._stores.registry.update_run(self.model, self.run_id, artifacts=merged, **fields)
        self._artifacts = merged

    # --- data ---------------------------------------------------------------------------------
    def features(self, frame: "pd.DataFrame") -> "pd.DataFrame":
        """The model input serving gives a model for these rows: the spec's features, in order, through the one
        feature transformation (fit your pipeline on this, and it predicts as it will be served)."""
        from functions.shared.transform import build_features

        return build_features(frame, self.spec)

    def log_dataset(self, data: "pd.DataFrame | str | Path") -> DatasetVersion:
        """The run's training data (a frame, or a .csv or .parquet file), checked against the model's data
        contract and recorded as a dataset version of the model: the version this run's model is trained on."""
        return self._step("log_dataset", self._log_dataset, data)

    def _log_dataset(self, data: "pd.DataFrame | str | Path") -> DatasetVersion:
        import pandas as pd

        from functions.data.datasets import profile_for_storage
        from functions.data.validation import validate
        from functions.shared.tabular import MAX_DATASET_BYTES, read_dataset

        if isinstance(data, pd.DataFrame):
            name, body = "dataset.csv", data.to_csv(index=False).encode()  # the bytes its upload would have
            if len(body) > MAX_DATASET_BYTES:
                raise InvalidInput(f"the dataset holds more than {MAX_DATASET_BYTES // 2**20} MB as CSV")
        elif isinstance(data, (str, Path)):
            suffix = Path(data).suffix.lower()
            if suffix not in DATASET_SUFFIXES:
                raise InvalidInput(f"a dataset is a .csv or .parquet file, not {shown(str(data))}")
            name, body = checks.artifact_file(data, f"dataset{suffix}", max_bytes=MAX_DATASET_BYTES)
        else:
            raise InvalidInput(f"a dataset is a pandas DataFrame or a file path, not {type(data).__name__}")
        dataset_id = sha256(body)
        if self._dataset is not None:
            if self._dataset.dataset_id == dataset_id:
                return self._dataset
            raise InvalidInput(f"run {self.run_id} already trains on dataset {self._dataset.dataset_id[:12]}: a run "
                               "has one dataset version (start another run for other data)")
        key = f"{self.prefix}/{name}"
        objects = self._stores.objects
        copy = RunArtifact(key=key, sha256=objects.put_bytes(key, body), bytes=len(body))
        # The data contract, with its report, as the pipeline's ValidateDataset checks an upload.
        try:
            validation = validate(objects, spec=self.spec, key=key, version_id=None, dataset_id=dataset_id,
                                  run_id=self.run_id, data=body)
        except DatasetInvalid as error:  # the run keeps the data it was given and the report that refused it
            report = error.details.get("report_key")
            self._set_artifacts({"dataset": copy, **({"validation": RunArtifact(key=report)} if report else {})})
            raise
        frame = read_dataset(body, key)
        self._stores.datasets.put_dataset(DatasetVersion(
            model=self.model, dataset_id=dataset_id, bucket=objects.bucket, key=key, rows=len(frame),
            columns={str(c): str(t) for c, t in frame.dtypes.items()}, profile=profile_for_storage(frame),
            runs={self.run_id},
        ))  # the same content recorded before (an upload, another run) gains this run
        self._warnings += [w for w in validation.warnings if w not in self._warnings]
        self._set_artifacts({"dataset": copy, "validation": RunArtifact(key=validation.report_key)},
                            dataset_id=dataset_id, key=key, warnings=self._warnings)
        self._dataset = self._stores.datasets.get_dataset(self.model, dataset_id)
        return self._dataset

    # --- the model ----------------------------------------------------------------------------
    def register(self, pipeline: Any, *, holdout: "pd.DataFrame",
                 data: "pd.DataFrame | str | Path | None" = None) -> Registration:
        """Register a fitted scikit-learn pipeline as the model's next version, through the promotion gate.

        `holdout` (features and target) is stored as the run's holdout and scored as the pipeline's
        Evaluate step scores it; the gate compares it with the champion on these rows. The training
        data is the run's dataset (`log_dataset`), or `data` here. A run registers one version.
        """
        if data is not None:
            self.log_dataset(data)
        return self._step("register", self._register, pipeline, holdout)

    def _register(self, pipeline: Any, holdout: "pd.DataFrame") -> Registration:
        from functions.jsonable import jsonable
        from functions.pipeline.state import TrainingResult
        from functions.registry.promotion import promote, register_version
        from functions.shared.models import SkopsPredictor, dumps_skops
        from functions.shared.scoring import chance_warnings, score
        from functions.shared.transform import model_input

        spec = self.spec
        if self._registration is not None:
            raise InvalidInput(f"run {self.run_id} registered v{self._registration.version} already: a run "
                               "registers one version (start another run)")
        if self._dataset is None:
            raise InvalidInput("register needs the training data: log it first with run.log_dataset(frame or path), "
                               "or pass data=... to register")
        self._check_model(pipeline)
        frame = _holdout_frame(holdout, spec)
        holdout_frame = model_input(frame, spec)[spec.feature_names + [spec.target]]
        try:
            metrics = score(SkopsPredictor(pipeline, spec), holdout_frame, spec)
        except MlopsError:
            raise
        except Exception as error:  # the user's model may fail in any way: say how
            raise InvalidInput(f"the model cannot predict the holdout as it will be served (the spec's features "
                               f"through the feature transformation, run.features(frame)): "
                               f"{type(error).__name__}: {error}") from error
        warnings = chance_warnings(spec, metrics, jsonable(holdout_frame[spec.target].tolist()))
        model_bytes, trusted_types = dumps_skops(pipeline)  # IntegrityError for types that cannot load safely
        objects = self._stores.objects
        model_key, holdout_key = f"{self.prefix}/model.skops", f"{self.prefix}/holdout.parquet"
        model_sha256 = objects.put_bytes(model_key, model_bytes)
        holdout_sha256 = objects.put_frame(holdout_key, holdout_frame)
        self._warnings += [w for w in warnings if w not in self._warnings]
        self._set_artifacts({"model": RunArtifact(key=model_key, sha256=model_sha256, bytes=len(model_bytes)),
                             "holdout": RunArtifact(key=holdout_key, sha256=holdout_sha256)},
                            warnings=self._warnings)
        training = TrainingResult(
            model_key=model_key, model_sha256=model_sha256, trusted_types=trusted_types,
            train_key=self._dataset.key, holdout_key=holdout_key, params=_estimator_params(pipeline),
            estimator=type(_final_step(pipeline)).__name__, seed=0, stratified=False,
            rows={"train": self._dataset.rows, "holdout": len(holdout_frame)},
        )
        stores = self._stores
        registered = register_version(objects, stores.registry, spec=spec, run_id=self.run_id,
                                      dataset_id=self._dataset.dataset_id, training=training, metrics=metrics,
                                      code_version=self.code_version, warnings=self._warnings, events=stores.events,
                                      actor=stores.actor)
        # The version is recorded on the run before the gate: a run that fails there still names it.
        self._stores.registry.update_run(self.model, self.run_id, model_version=registered.version)
        promotion = promote(objects, stores.registry, spec=spec, version=registered.version,
                            holdout_key=holdout_key, metrics=metrics, events=stores.events, actor=stores.actor)
        # The holdout's metrics, under their names as a pipeline run has them (they are what the gate used).
        self._metrics = {**self._metrics, **metrics}
        self._stores.registry.update_run(self.model, self.run_id, metrics=self._metrics, promoted=promotion.promoted,
                                         champion=promotion.champion, promotion_reason=promotion.reason)
        self._registration = Registration(version=registered.version, promoted=promotion.promoted,
                                          champion=promotion.champion, reason=promotion.reason,
                                          format=registered.format, status=promotion.status, metrics=metrics,
                                          warnings=warnings)
        return self._registration

    def _check_model(self, pipeline: Any) -> None:
        from sklearn.base import BaseEstimator, is_classifier, is_regressor
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        if not isinstance(pipeline, BaseEstimator) or not hasattr(pipeline, "predict"):
            raise InvalidInput(f"register takes a fitted scikit-learn estimator or pipeline, not "
                               f"{type(pipeline).__name__}")
        try:
            check_is_fitted(pipeline)
        except NotFittedError:
            raise InvalidInput("the model is not fitted: fit it before registering it") from None
        except TypeError as error:
            raise InvalidInput(f"the model cannot be checked as a scikit-learn estimator: {error}") from None
        if self.spec.task == "classification":
            if not is_classifier(pipeline) or not hasattr(pipeline, "predict_proba"):
                raise InvalidInput(f"model {self.model!r} is a classification task: register a classifier with "
                                   "predict_proba")
        elif not is_regressor(pipeline):
            raise InvalidInput(f"model {self.model!r} is a regression task: register a regressor")


def _holdout_frame(holdout: Any, spec: ModelSpec) -> "pd.DataFrame":
    import pandas as pd

    if not isinstance(holdout, pd.DataFrame):
        raise InvalidInput(f"the holdout is a pandas DataFrame of features and target, not {type(holdout).__name__}")
    if len(holdout) < MIN_HOLDOUT_ROWS:
        raise InvalidInput(f"the holdout has {len(holdout)} rows: the gate needs at least {MIN_HOLDOUT_ROWS}")
    lacking = [name for name in spec.feature_names + [spec.target] if name not in holdout.columns]
    if lacking:
        raise InvalidInput(f"the holdout lacks the column(s) {', '.join(map(repr, lacking))} of model "
                           f"{spec.name!r}'s spec")
    if holdout[spec.target].isna().any():
        raise DatasetInvalid(f"the holdout's target {spec.target!r} is missing in "
                             f"{int(holdout[spec.target].isna().sum())} rows")
    return holdout


def _final_step(pipeline: Any) -> Any:
    steps = getattr(pipeline, "steps", None)
    return steps[-1][1] if steps else pipeline


def _estimator_params(pipeline: Any) -> dict[str, Any]:
    """The final estimator's plain parameters (as the pipeline's Train step records them)."""
    from functions.jsonable import jsonable

    try:
        params = _final_step(pipeline).get_params(deep=False)
    except Exception:  # noqa: BLE001 - a model without get_params has none to record
        return {}
    plain = (int, float, str, bool, type(None))
    return {str(k): jsonable(v) for k, v in params.items()
            if isinstance(v, plain) or (hasattr(v, "item") and isinstance(jsonable(v), plain))}
