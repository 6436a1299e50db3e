"""`mlops runs compare`, `mlops lineage` and `mlops models export`, and what `mlops runs show` tells of a tracked run,
over the in-memory stores."""

import json
from collections.abc import Iterator

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from cli import main
from cli.platform import Platform
from functions.records import Run, RunArtifact

runner = CliRunner()


@pytest.fixture
def mlops(churn_champion, stores, monkeypatch) -> Iterator:
    """The CLI over `stores`: churn v1 (the champion, trained by run churn-champion) and three more runs."""
    champion = churn_champion
    stores.registry.update_run("churn", champion.run_id, status="SUCCEEDED", model_version=1,
                               dataset_id=champion.dataset_id, metrics=champion.record.metrics,
                               params={"C": 1.0, "max_iter": 300}, tags={"owner": "ana"},
                               packages={"python": "3.11.7", "scikit-learn": "1.9.1"},
                               artifacts={"model": RunArtifact(key=f"runs/churn/{champion.run_id}/model.skops",
                                                               sha256="f" * 64)})
    for run_id, auc, c in (("churn-better", 0.99, 0.1), ("churn-worse", 0.51, 10.0)):
        stores.registry.start_run(Run(model="churn", run_id=run_id, bucket="b", key="k", code_version="nb-1",
                                      source="client", status="SUCCEEDED", metrics={"roc_auc": auc},
                                      params={"C": c, "max_iter": 300}))
    stores.registry.start_run(Run(model="churn", run_id="churn-trial", bucket="b", key="k", code_version="c",
                                  parent_run_id=champion.run_id, trial=3, status="SUCCEEDED",
                                  params={"C": 0.5, "max_iter": 300},
                                  metrics={"roc_auc": 0.72}, fold_metrics=[{"roc_auc": 0.6}, {"roc_auc": 0.8}]))
    platform = Platform({"Region": "us-east-1", "DataBucketName": stores.objects.bucket},
                        boto3.Session(region_name="us-east-1"))
    platform.__dict__.update(registry=stores.registry, objects=stores.objects, datasets=stores.datasets)
    monkeypatch.setattr(main, "platform", lambda stack: platform)
    monkeypatch.setattr(main.console, "width", 400)  # a cell's text on one line, as the assertions read it

    def invoke(*args: str):
        result = runner.invoke(main.app, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    invoke.champion = champion
    yield invoke


def test_runs_compare_puts_the_best_first_with_the_differing_parameters(mlops):
    result = mlops("runs", "compare", "churn")
    assert result.exit_code == 0, result.output
    assert "best first by roc_auc (higher is better)" in result.output
    rows = [line for line in result.output.splitlines() if line.strip().startswith("churn-")]
    assert [row.split()[0] for row in rows] == ["churn-better", "churn-trial", mlops.champion.run_id, "churn-worse"]
    assert "cv mean±sd" in result.output and "0.7±0.1" in rows[1], "the trial's folds"
    assert "0.1" in rows[0] and "10.0" in rows[3] and "client" in rows[0]
    assert "The same in every run: max_iter=300" in result.output


def test_runs_compare_of_chosen_runs_and_its_errors(mlops):
    chosen = mlops("runs", "compare", "churn", "churn-worse", "churn-better")
    assert chosen.exit_code == 0 and chosen.output.index("churn-better") < chosen.output.index("churn-worse")
    unknown = mlops("runs", "compare", "churn", "churn-better", "churn-nope")
    assert unknown.exit_code == 1 and "run 'churn-nope' of model 'churn' does not exist" in unknown.output
    ghost = mlops("runs", "compare", "ghost")
    assert ghost.exit_code == 1 and "no model named 'ghost'" in ghost.output
    trials = mlops("runs", "compare", "churn", "--search", mlops.champion.run_id)
    assert trials.exit_code == 0 and "churn-trial" in trials.output and "churn-better" not in trials.output
    assert "has no trials" in mlops("runs", "compare", "churn", "--search", "churn-better").output


def test_runs_show_tells_the_tracked_fields(mlops):
    shown = mlops("runs", "show", "churn", mlops.champion.run_id).output
    assert "owner=ana" in shown and "scikit-learn 1.9.1" in shown
    assert "artifact model" in shown and f"/runs/churn/{mlops.champion.run_id}/model.skops sha256 ffff" in shown
    trial = mlops("runs", "show", "churn", "churn-trial").output
    assert "parent search" in trial and f"{mlops.champion.run_id} (trial 3)" in trial
    assert "roc_auc=0.6; roc_auc=0.8" in trial
    assert "client (the mlops Python client)" in mlops("runs", "show", "churn", "churn-better").output


def test_lineage_of_a_version_shows_its_run_dataset_features_and_trials(mlops):
    result = mlops("lineage", "churn", "1")
    assert result.exit_code == 0, result.output
    out = result.output
    champion = mlops.champion
    assert "churn v1 (champion)" in out and f"run {champion.run_id} (pipeline, SUCCEEDED" in out
    assert f"dataset {champion.dataset_id[:12]}: 200 rows" in out
    assert f"mlops lineage churn --dataset {champion.dataset_id[:12]}" in out
    assert "tenure_months (numeric)" in out and "plan (categorical)" in out
    assert f"search: 1 trials (0 failed), the best first: `mlops runs compare churn --search {champion.run_id}`" in out
    assert "trial 3 churn-trial: roc_auc 0.72" in out
    assert "params: C=1.0, max_iter=300" in out and "tags: owner=ana" in out
    assert f"onnx s3://{champion.artifacts.onnx_key}".replace("s3://", "s3://mlops-test-data/") in out


def test_lineage_of_a_dataset_shows_every_run_and_version_that_used_it(mlops):
    result = mlops("lineage", "churn", "--dataset", mlops.champion.dataset_id[:8])
    assert result.exit_code == 0, result.output
    assert f"dataset {mlops.champion.dataset_id[:12]} of churn: 200 rows" in result.output
    assert f"{mlops.champion.run_id} (SUCCEEDED, pipeline, a search of 1 trials) -> v1" in result.output
    assert "churn-trial" not in result.output, "a search's trials are counted under it"
    assert "v1 (champion): " in result.output and "mlops lineage churn 1" in result.output


@pytest.mark.parametrize("args, message", [
    (["lineage", "churn"], "give a VERSION"),
    (["lineage", "churn", "1", "--dataset", "abcdef"], "not both"),
    (["lineage", "churn", "9"], "model 'churn' has no version 9"),
    (["lineage", "churn", "--dataset", "abc"], "first 6 characters at least"),
    (["lineage", "churn", "--dataset", "000000"], "model 'churn' has no dataset 000000"),
    (["lineage", "ghost", "1"], "model 'ghost' has no version 1"),
])
def test_lineage_errors_are_one_clear_line(mlops, args, message):
    result = mlops(*args)
    assert result.exit_code != 0 and message in " ".join(result.output.split())


def test_models_export_writes_mlflows_format(mlops, tmp_path):
    out = tmp_path / "exported"
    result = mlops("models", "export", "churn", "1", "--format", "mlflow", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Exported churn v1" in result.output and "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true" in result.output
    mlmodel = yaml.safe_load((out / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert json.loads(mlmodel["signature"]["inputs"])[0]["name"] == "tenure_months"
    again = mlops("models", "export", "churn", "1", "--out", str(out))
    assert again.exit_code == 1 and "not an empty directory" in again.output
    other = mlops("models", "export", "churn", "1", "--format", "onnx", "--out", str(tmp_path / "x"))
    assert other.exit_code == 1 and "unknown format 'onnx'" in other.output
