"""Experiment tracking and lineage on the local cloud started by `mlops up`: a notebook run tracked with the Python
client (which finds the running cloud as the CLI does), its model registered through the gate and served over HTTP,
checked with plain boto3; and a pipeline-trained version reachable from its dataset and back."""

import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from typer.testing import CliRunner

import mlops
from cli import main
from cli.demo_data import churn_frame
from functions.storage.objects import sha256
from mlops.lineage import problems
from tests.background import background
from tests.e2e.conftest import register_spec

pytestmark = pytest.mark.e2e
runner = CliRunner()
MODEL = "tracking-e2e"


@pytest.fixture
def cli(local_cloud, monkeypatch):
    """`mlops ...` (and `import mlops`) where `mlops up` runs: they find it through its state directory."""
    monkeypatch.chdir(local_cloud["workdir"])
    monkeypatch.setenv("MLOPS_HOME", str(background.cloud_home))
    monkeypatch.setattr(main.console, "width", 200)

    def run(*args: str):
        result = runner.invoke(main.app, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.exit_code == 0, result.output
        return result.output

    return run


def test_a_notebook_run_is_tracked_registered_served_and_traced(local_cloud, aws, api, cli, tmp_path):
    register_spec(aws, local_cloud, MODEL)
    frame = churn_frame(rows=300, seed=21)
    train, holdout = frame.iloc[:240], frame.iloc[240:]
    notes = tmp_path / "notes.txt"
    notes.write_text("C=0.5 looked best")
    with mlops.start_run(MODEL, tags={"owner": "e2e"}, code_version="nb-e2e") as run:  # the running local cloud
        run.log_params({"C": 0.5})
        prep = ColumnTransformer([("num", StandardScaler(), ["tenure_months", "monthly_charges", "support_calls"]),
                                  ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])])
        pipeline = Pipeline([("prep", prep), ("clf", LogisticRegression(C=0.5))])
        pipeline.fit(run.features(train), train["churned"])
        run.log_metric("train_rows", len(train))
        run.log_artifact(notes)
        registered = run.register(pipeline, holdout=holdout, data=train)
    assert (registered.version, registered.promoted) == (1, True), registered.reason

    # What an AWS client that is not ours sees: the artifact with its hash, the run's item, the champion served.
    bucket, prefix = local_cloud["DataBucketName"], f"runs/{MODEL}/{run.run_id}"
    head = aws("s3").head_object(Bucket=bucket, Key=f"{prefix}/artifacts/notes.txt")
    assert head["Metadata"]["sha256"] == sha256(notes.read_bytes())
    item = aws("dynamodb").get_item(TableName=local_cloud["RegistryTableName"], ConsistentRead=True,
                                    Key={"pk": {"S": f"MODEL#{MODEL}"}, "sk": {"S": f"RUN#{run.run_id}"}})["Item"]
    assert item["status"]["S"] == "SUCCEEDED" and item["source"]["S"] == "client" and item["model_version"]["N"] == "1"
    instance = {"tenure_months": 3, "monthly_charges": 90, "support_calls": 4, "plan": "basic"}
    predicted = api("POST", f"/v1/models/{MODEL}/predict", json={"instances": [instance]})
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["version"] == 1

    # The CLI: the run beside the others, and the lineage both ways.
    compared = cli("runs", "compare", MODEL)
    assert run.run_id in compared and "best first by roc_auc" in compared
    traced = cli("lineage", MODEL, "1")
    assert f"run {run.run_id} (client, SUCCEEDED" in traced and "artifact notes.txt" in traced
    assert f"dataset {run.dataset.dataset_id[:12]}: 240 rows" in traced
    used = cli("lineage", MODEL, "--dataset", run.dataset.dataset_id[:10])
    assert f"{run.run_id} (SUCCEEDED, client) -> v1" in used and "v1 (champion)" in used


def test_a_pipeline_run_is_tracked_and_its_version_reachable_from_its_dataset_and_back(trained_model, cli):
    from cli.platform import Platform

    platform = Platform.local()
    (version,) = [v for v in platform.registry.list_versions(trained_model) if v.version == 1]
    run = platform.registry.get_run(trained_model, version.run_id)
    assert run.source == "pipeline" and run.packages["scikit-learn"] and run.code_version
    assert {"validation", "features", "train", "holdout", "model", "onnx"} <= set(run.artifacts)
    model = run.artifacts["model"]
    assert sha256(platform.objects.get_bytes(model.key)) == model.sha256
    assert problems(platform.registry, platform.datasets, trained_model) == []
    traced = cli("lineage", trained_model, "1")
    assert f"run {run.run_id} (pipeline, SUCCEEDED" in traced and f"dataset {version.dataset_id[:12]}" in traced
    used = cli("lineage", trained_model, "--dataset", version.dataset_id)
    assert f"{run.run_id} (SUCCEEDED, pipeline" in used and "-> v1" in used


def test_a_searchs_trials_are_in_its_versions_lineage_and_compared_best_first(local_cloud, aws, cli):
    from cli.platform import Platform
    from tests.e2e.conftest import SPEC, csv_bytes, upload_and_wait

    search = {"strategy": "grid", "cv_folds": 2,
              "estimators": [{"name": "logistic_regression", "params": {"C": [0.1, 1.0], "max_iter": 300}}]}
    spec = {key: value for key, value in SPEC.items() if key != "estimator"} | {"search": search}
    register_spec(aws, local_cloud, "tracking-search", spec)
    execution = upload_and_wait(aws, local_cloud, "datasets/tracking-search/train.csv", csv_bytes(200, seed=9))
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    platform = Platform.local()
    assert problems(platform.registry, platform.datasets, "tracking-search") == []
    traced = cli("lineage", "tracking-search", "1")
    assert f"search: 2 trials (0 failed), the best first: `mlops runs compare tracking-search --search " \
           f"{execution['run_id']}`" in traced
    compared = cli("runs", "compare", "tracking-search", "--search", execution["run_id"])
    assert compared.count(f"{execution['run_id']}-") == 2 and "cv mean±sd" in compared
    version = platform.registry.get_version("tracking-search", 1)
    used = cli("lineage", "tracking-search", "--dataset", version.dataset_id[:12])
    assert f"{execution['run_id']} (SUCCEEDED, pipeline, a search of 2 trials) -> v1" in used
