"""The tracking client (`import mlops`) on the in-memory stores: a notebook experiment tracked as a run, its model
registered through the same gate as the pipeline's, every input checked, and failures recorded with their reason."""

import math
import subprocess

import numpy as np
import pytest

import mlops
from functions.errors import DatasetInvalid, IntegrityError, InvalidInput, NotFound, UnknownModel
from functions.registry.artifacts import load_predictor
from functions.storage.objects import sha256
from mlops import checks
from mlops.tracking import git_revision
from tests.fakes import throttled
from tests.tracking.conftest import notebook_pipeline


def start(tracking, **kwargs):
    return mlops.start_run("churn", tracking=tracking, code_version="nb-1", **kwargs)


def fitted(run, train, C: float = 1.0):
    return notebook_pipeline(C).fit(run.features(train), train["churned"])


def test_a_notebook_run_is_tracked_and_its_model_registered_through_the_gate(tracking, stores, frames, tmp_path):
    train, holdout = frames
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"\x89PNG not really")
    with start(tracking, tags={"owner": "ana"}, params={"C": 0.5}) as run:
        run.log_param("solver", "lbfgs")
        run.log_dataset(train)
        pipeline = fitted(run, train, C=0.5)
        run.log_metrics({"cv_roc_auc": np.float64(0.8), "fit_seconds": 2})
        artifact = run.log_artifact(plot)
        registered = run.register(pipeline, holdout=holdout)
        assert stores.registry.get_run("churn", run.run_id).status == "RUNNING"
    assert (registered.version, registered.promoted, registered.champion) == (1, True, 1)
    assert registered.reason == "v1 is the first champion of model 'churn'" and registered.format == "skops"

    record = stores.registry.get_run("churn", run.run_id)
    assert record.status == "SUCCEEDED" and record.ended_at and record.source == "client"
    assert record.code_version == "nb-1" and record.tags == {"owner": "ana"}
    assert record.params == {"C": 0.5, "solver": "lbfgs"}
    assert record.metrics["cv_roc_auc"] == 0.8 and record.metrics["fit_seconds"] == 2.0
    assert record.metrics["roc_auc"] == registered.metrics["roc_auc"] > 0.6, "the holdout's metrics, as the gate saw"
    assert record.packages["scikit-learn"] and record.packages["python"]
    assert (record.model_version, record.promoted, record.champion) == (1, True, 1)
    assert set(record.artifacts) == {"dataset", "validation", "plot.png", "model", "holdout"}
    assert artifact.key == f"runs/churn/{run.run_id}/artifacts/plot.png" and artifact.bytes == 15
    for stored in record.artifacts.values():
        assert stored.key.startswith(f"runs/churn/{run.run_id}/")
        if stored.sha256:
            assert sha256(stores.objects.get_bytes(stored.key)) == stored.sha256

    # Registered as the pipeline registers: signature, lineage, skops verified by its hash, served as it scored.
    version = stores.registry.get_version("churn", 1)
    assert version.run_id == run.run_id and version.dataset_id == record.dataset_id == run.dataset.dataset_id
    assert version.signature == tracking.registry.get_spec("churn").signature and version.code_version == "nb-1"
    assert version.holdout_key == record.artifacts["holdout"].key and version.artifacts.onnx_skipped
    dataset = stores.datasets.get_dataset("churn", record.dataset_id)
    assert run.run_id in dataset.runs and dataset.rows == 240 and dataset.profile
    served = load_predictor(stores.objects, version, tracking.registry.get_spec("churn"))
    assert served.predict(holdout.head(3))[0] == pipeline.predict(run.features(holdout.head(3))).tolist()
    assert stores.registry.get_alias("churn", "champion") == 1


def test_a_second_run_goes_through_the_same_gate_and_the_same_data_is_one_dataset(tracking, stores, frames):
    train, holdout = frames
    with start(tracking) as first:
        first.register(fitted(first, train), holdout=holdout, data=train)
    with start(tracking) as second:
        registered = second.register(fitted(second, train), holdout=holdout, data=train)
    assert registered.version == 2 and registered.promoted is False and registered.champion == 1
    assert "does not beat the champion v1" in registered.reason
    assert stores.registry.get_alias("churn", "challenger") == 2
    assert stores.registry.get_run("churn", second.run_id).promotion_reason == registered.reason
    (dataset,) = stores.datasets.list_datasets("churn")
    assert dataset.runs == {first.run_id, second.run_id}, "the same content is one version, used by both runs"


def test_an_exception_in_the_block_fails_the_run_with_its_reason_and_goes_on(tracking, stores):
    with pytest.raises(ZeroDivisionError), start(tracking) as run:
        run.log_metric("loss", 0.5)
        1 / 0  # noqa: B018 - the notebook's own mistake
    record = stores.registry.get_run("churn", run.run_id)
    assert record.status == "FAILED" and record.failed_step == "code" and record.error_type == "ZeroDivisionError"
    assert record.failure_reason == "ZeroDivisionError: division by zero" and record.ended_at
    assert record.metrics == {"loss": 0.5}, "what it logged stays"
    with pytest.raises(InvalidInput, match="has ended"):
        run.log_metric("loss", 0.4)


def test_a_failed_step_is_named_and_an_interrupt_is_recorded(tracking, stores, frames):
    train, holdout = frames
    with pytest.raises(InvalidInput, match="not fitted"), start(tracking) as run:
        run.register(notebook_pipeline(), holdout=holdout, data=train)
    record = stores.registry.get_run("churn", run.run_id)
    assert (record.status, record.failed_step) == ("FAILED", "register")
    assert "the model is not fitted" in record.failure_reason and record.model_version is None
    with pytest.raises(KeyboardInterrupt), start(tracking) as interrupted:
        raise KeyboardInterrupt
    assert stores.registry.get_run("churn", interrupted.run_id).failure_reason == "KeyboardInterrupt"


def test_data_that_breaks_the_contract_fails_the_run_with_the_report(tracking, stores, frames):
    train, _ = frames
    with pytest.raises(DatasetInvalid, match="does not meet the data contract"), start(tracking) as run:
        run.log_dataset(train.head(10))
    record = stores.registry.get_run("churn", run.run_id)
    assert record.failed_step == "log_dataset" and "10 row(s); at least 20 are needed" in record.failure_reason
    assert set(record.artifacts) == {"dataset", "validation"}, "the data it was given, and the report refusing it"
    assert stores.objects.get_json(f"runs/churn/{run.run_id}/validation.json")["passed"] is False
    assert stores.datasets.list_datasets("churn") == [], "refused data is no dataset version"


def test_a_registration_retried_after_a_storage_fault_registers_one_version(tracking, stores, frames):
    train, holdout = frames
    run = start(tracking)
    pipeline = fitted(run, train)
    stores.registry.faults.inject("put_version", throttled())
    with pytest.raises(mlops.MlopsError, match="busy"):
        run.register(pipeline, holdout=holdout, data=train)
    assert run.record.status == "RUNNING", "outside a with block the run waits for a retry"
    assert run.register(pipeline, holdout=holdout).version == 1
    run.end()
    assert [v.version for v in stores.registry.list_versions("churn")] == [1]
    assert run.record.status == "SUCCEEDED" and run.record.model_version == 1
    with pytest.raises(InvalidInput, match="has ended"):
        run.end()


def test_a_storage_fault_while_recording_a_failure_never_hides_the_users_error(tracking, stores):
    stores.registry.faults.inject("end_run", throttled())
    with pytest.raises(ValueError, match="mine"), start(tracking):
        raise ValueError("mine")


@pytest.mark.parametrize("call, message", [
    (lambda run: run.log_params({"bad name!": 1}), "parameter name 'bad name!' is not valid"),
    (lambda run: run.log_params({"x" * 251: 1}), "is not valid"),
    (lambda run: run.log_params({"C": float("nan")}), "must be a finite number"),
    (lambda run: run.log_params({"C": [1, 2]}), "must be a number, string, boolean or null, not list"),
    (lambda run: run.log_params({"C": "x" * 501}), "more than 500"),
    (lambda run: run.log_params([("C", 1)]), "dict of names to values"),
    (lambda run: run.log_params({f"p{i}": i for i in range(101)}), "at most 100 parameters"),
    (lambda run: run.log_metrics({"auc": math.inf}), "must be a finite number"),
    (lambda run: run.log_metrics({"auc": True}), "must be a real number, not bool"),
    (lambda run: run.log_metrics({"auc": "0.8"}), "must be a real number, not str"),
    (lambda run: run.log_metrics({"auc": 1e200}), "beyond the magnitudes"),
    (lambda run: run.log_metrics({"": 1.0}), "is not valid"),
    (lambda run: run.log_metrics({"../x": 1.0}), "is not valid"),
    (lambda run: run.set_tags({"owner": 3}), "must be text"),
    (lambda run: run.log_artifact("/nonexistent/plot.png"), "does not exist"),
    (lambda run: run.log_artifact("/"), "is not a file"),
    (lambda run: run.log_artifact(__file__, name="../escape"), "artifact name '../escape' is not valid"),
    (lambda run: run.log_dataset(42), "a dataset is a pandas DataFrame or a file path, not int"),
    (lambda run: run.log_dataset(__file__), "a dataset is a .csv or .parquet file"),
    (lambda run: run.register(object(), holdout=None, data=None), "needs the training data"),
])
def test_what_a_user_passes_is_checked_before_anything_is_written(tracking, stores, call, message):
    run = start(tracking)
    before = stores.registry.get_run("churn", run.run_id)
    with pytest.raises(InvalidInput, match=message.replace(".", r"\.").replace("(", r"\(")):
        call(run)
    assert stores.registry.get_run("churn", run.run_id) == before
    assert stores.objects.keys(f"runs/churn/{run.run_id}/") == []
    assert run.status == "RUNNING", "a refused input leaves the run going"


def test_an_artifact_too_large_is_refused(tracking, tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "MAX_ARTIFACT_BYTES", 10)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 11)
    with pytest.raises(InvalidInput, match="holds 11 bytes, more than 10"):
        start(tracking).log_artifact(big)


@pytest.mark.parametrize("model, error, message", [
    ("ghost", UnknownModel, "no model spec named 'ghost' is registered"),
    ("Bad Name", UnknownModel, "model names are lowercase"),
])
def test_an_unknown_model_is_refused_before_a_run_is_recorded(tracking, stores, model, error, message):
    with pytest.raises(error, match=message):
        mlops.start_run(model, tracking=tracking, code_version="nb-1")
    assert stores.registry.runs == {}


def test_start_checks_tags_params_and_code_version_before_recording(tracking, stores):
    with pytest.raises(InvalidInput, match="tag"):
        start(tracking, tags={"a": None})
    with pytest.raises(InvalidInput, match="finite"):
        start(tracking, params={"C": float("-inf")})
    with pytest.raises(InvalidInput, match="code version"):
        mlops.start_run("churn", tracking=tracking, code_version="")
    assert stores.registry.runs == {}


def test_the_model_must_fit_the_task_and_predict_the_holdout_as_served(tracking, frames):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    train, holdout = frames
    run = start(tracking)
    run.log_dataset(train)
    regressor = Ridge().fit(run.features(train)[["tenure_months"]], train["churned"])
    with pytest.raises(InvalidInput, match="classification task: register a classifier"):
        run.register(regressor, holdout=holdout)
    with pytest.raises(InvalidInput, match="lacks the column"):
        run.register(fitted(run, train), holdout=holdout.drop(columns=["plan"]))
    with pytest.raises(InvalidInput, match="at least 5"):
        run.register(fitted(run, train), holdout=holdout.head(2))
    # Fitted on a column that is no feature: serving never gives it that column.
    on_ids = Pipeline([("prep", ColumnTransformer([("id", OneHotEncoder(handle_unknown="ignore"), ["customer_id"])])),
                       ("clf", LogisticRegression())]).fit(train, train["churned"])
    with pytest.raises(InvalidInput, match="cannot predict the holdout as it will be served"):
        run.register(on_ids, holdout=holdout)


def test_a_model_holding_types_that_cannot_load_safely_is_refused(tracking, frames):
    from sklearn.preprocessing import FunctionTransformer

    train, holdout = frames
    run = start(tracking)
    pipeline = notebook_pipeline()
    pipeline.steps.insert(0, ("custom", FunctionTransformer(_identity)))
    pipeline.fit(run.features(train), train["churned"])
    with pytest.raises(IntegrityError, match="cannot be loaded safely"):
        run.register(pipeline, holdout=holdout, data=train)


def _identity(frame):
    return frame


def test_a_run_registers_one_version(tracking, frames):
    train, holdout = frames
    run = start(tracking)
    run.register(fitted(run, train), holdout=holdout, data=train)
    with pytest.raises(InvalidInput, match="registered v1 already"):
        run.register(fitted(run, train), holdout=holdout)
    with pytest.raises(InvalidInput, match="one dataset version"):
        run.log_dataset(train.head(100))


def test_a_file_dataset_is_the_same_version_as_its_upload(tracking, stores, frames, tmp_path):
    train, _ = frames
    path = tmp_path / "train.csv"
    path.write_bytes(train.to_csv(index=False).encode())
    first = start(tracking).log_dataset(path)
    second = start(tracking).log_dataset(train)
    assert first.dataset_id == second.dataset_id == sha256(path.read_bytes())


def test_the_code_version_is_the_notebooks_git_commit(tmp_path):
    assert git_revision(tmp_path) == "unversioned"
    git = ["git", "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run([*git, "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "c"], check=True)
    revision = git_revision(tmp_path)
    assert len(revision) == 12
    (tmp_path / "f").write_text("2")
    assert git_revision(tmp_path) == f"{revision}-dirty"


def test_without_a_running_local_cloud_the_client_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    with pytest.raises(mlops.PlatformError, match="the local cloud is not running"):
        mlops.start_run("churn", code_version="nb-1")


def test_an_unknown_run_or_version_is_not_found(tracking):
    with pytest.raises(NotFound):
        tracking.registry.get_run("churn", "churn-0")


def test_a_notebook_registration_is_announced_as_its_user_made_it(stores, churn_spec, frames):
    from tests.fakes import MemoryEventPublisher

    train, holdout = frames
    stores.registry.put_spec(churn_spec)
    events = MemoryEventPublisher()
    tracking = mlops.Tracking(stores.registry, stores.objects, stores.datasets, events=events,
                              actor="arn:aws:sts::123456789012:assumed-role/ds/ana")
    with start(tracking) as run:
        registered = run.register(fitted(run, train), holdout=holdout, data=train)
    assert registered.status == "Approved", "the spec's approval is auto: the gate approved it"
    assert [(e.detail_type, e.detail["to"]) for e in events.events] == [
        ("Model Version State Change", "PendingManualApproval"), ("Model Version State Change", "Approved"),
        ("Model Alias Change", 1)]
    assert {e.detail["actor"] for e in events.events} == {"arn:aws:sts::123456789012:assumed-role/ds/ana"}
    assert stores.registry.get_version("churn", 1).registered_by == "arn:aws:sts::123456789012:assumed-role/ds/ana"
