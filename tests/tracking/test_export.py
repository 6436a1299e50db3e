"""A version exported in MLflow's model format: the files MLflow's sklearn flavor writes, the model as skops (never
pickle) with the types it was trained with, and the version's lineage.

MLflow itself is not a dependency of the project. Where it installs cleanly, point MLOPS_MLFLOW_PYTHON at a Python
that has it (a throwaway venv: `python -m venv /tmp/mlflow && /tmp/mlflow/bin/pip install mlflow-skinny
scikit-learn skops pandas`) and the last test loads the export with `mlflow.pyfunc.load_model`.
"""

import json
import os
import subprocess

import numpy as np
import pytest
import yaml

from functions.errors import IntegrityError, InvalidInput, NotFound
from functions.shared.models import SkopsPredictor, loads_skops
from mlops.export import export_mlflow

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "plan"]


@pytest.fixture
def exported(stores, churn_champion, tmp_path):
    return export_mlflow(stores.objects, stores.registry, "churn", 1, tmp_path / "model", datasets=stores.datasets)


def test_the_export_has_mlflows_files_and_flavors(exported, churn_champion):
    assert sorted(p.name for p in exported.iterdir()) == ["MLmodel", "conda.yaml", "model.skops", "python_env.yaml",
                                                          "requirements.txt"]
    mlmodel = yaml.safe_load((exported / "MLmodel").read_text())
    sklearn = mlmodel["flavors"]["sklearn"]
    assert sklearn["serialization_format"] == "skops" and sklearn["pickled_model"] == "model.skops"
    assert sklearn["skops_trusted_types"] == churn_champion.artifacts.skops_trusted_types
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.sklearn" and pyfunc["model_path"] == "model.skops"
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [(i["name"], i["type"]) for i in inputs] == [
        ("tenure_months", "double"), ("monthly_charges", "double"), ("support_calls", "long"), ("plan", "string")
    ], "a numeric feature the training data held as integers is a long"
    assert json.loads(mlmodel["signature"]["outputs"]) == [{"type": "long", "required": True}]
    assert mlmodel["metadata"]["run_id"] == churn_champion.run_id
    assert mlmodel["metadata"]["dataset_id"] == churn_champion.dataset_id
    requirements = (exported / "requirements.txt").read_text().split()
    assert requirements[0].startswith("mlflow") and any(r.startswith("scikit-learn==") for r in requirements)


def test_the_exported_model_is_the_registered_one(exported, churn_champion, churn_rows):
    pipeline = loads_skops((exported / "model.skops").read_bytes(), churn_champion.artifacts.skops_trusted_types)
    rows = churn_rows.head(5)
    expected = SkopsPredictor(churn_champion.pipeline, churn_champion.spec).predict(rows)
    assert SkopsPredictor(pipeline, churn_champion.spec).predict(rows) == expected


def test_an_export_refuses_what_it_cannot_write_or_verify(stores, churn_champion, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not an empty directory"):
        export_mlflow(stores.objects, stores.registry, "churn", 1, tmp_path / "full")
    with pytest.raises(NotFound):
        export_mlflow(stores.objects, stores.registry, "churn", 7, tmp_path / "new")
    stores.objects.put(churn_champion.artifacts.skops_key, b"tampered")
    with pytest.raises(IntegrityError):
        export_mlflow(stores.objects, stores.registry, "churn", 1, tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(not os.environ.get("MLOPS_MLFLOW_PYTHON"), reason="MLOPS_MLFLOW_PYTHON names no Python with mlflow")
def test_mlflow_loads_the_export_and_predicts_as_the_platform(exported, churn_champion, churn_rows, tmp_path):
    rows = churn_rows.head(5)
    rows[FEATURES].to_json(tmp_path / "rows.json", orient="records")
    script = (
        "import json, sys, pandas as pd, mlflow.pyfunc, mlflow.sklearn\n"
        "rows = pd.DataFrame(json.load(open(sys.argv[2])))\n"
        "labels = mlflow.pyfunc.load_model(sys.argv[1]).predict(rows)\n"
        "proba = mlflow.sklearn.load_model(sys.argv[1]).predict_proba(rows)\n"
        "print(json.dumps({'labels': [int(x) for x in labels], 'proba': proba.tolist()}))\n"
    )
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    done = subprocess.run([os.environ["MLOPS_MLFLOW_PYTHON"], "-c", script, str(exported), str(tmp_path / "rows.json")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    labels, proba = SkopsPredictor(churn_champion.pipeline, churn_champion.spec).predict(rows)
    assert answer["labels"] == labels
    assert np.allclose(answer["proba"], proba)
