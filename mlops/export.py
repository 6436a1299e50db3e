"""A registered version in MLflow's model format, so that `mlflow.pyfunc.load_model` (or `mlflow.sklearn.load_model`)
reads it.

The directory holds what `mlflow.sklearn.save_model(..., serialization_format="skops")` writes: the
scikit-learn pipeline as skops (never pickle; MLflow reads it with the types recorded at training
as `skops_trusted_types`), an MLmodel file with the sklearn and python_function flavors and the
version's signature (each feature's type), conda.yaml, python_env.yaml and requirements.txt pinned
to the packages the version was trained with, and the version's lineage as the model's metadata.
MLflow loads a model only where MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true (skops included: its
allow-list is read from the model's own MLmodel file); export only what you trust.
"""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from functions.data.store import DatasetStore
from functions.errors import InvalidInput, NotFound
from functions.records import ModelVersion
from functions.registry.store import RegistryStore
from functions.storage.objects import ObjectStore

MODEL_FILE = "model.skops"
# The packages a loading environment needs, as the version recorded them at training.
REQUIRED = ("scikit-learn", "skops", "numpy", "pandas", "scipy")
MLFLOW_REQUIREMENT = "mlflow>=3.17"  # reads the skops serialization (checked with mlflow-skinny 3.17.2)
COLUMN_TYPES = {"numeric": "double", "categorical": "string"}


def _label_type(classes: list[Any] | None) -> str:
    if not classes:
        return "string"
    if all(isinstance(c, bool) for c in classes):
        return "boolean"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "long"
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return "double"
    return "string"


def signature(version: ModelVersion, dtypes: dict[str, str] | None = None) -> dict[str, str | None]:
    """MLflow's signature of the version: its features and its answer. A numeric feature is a long when the
    training data held it as integers (`dtypes`, from the dataset's record), else a double (MLflow converts
    neither into the other); a categorical feature is a string."""
    dtypes = dtypes or {}

    def kind(name: str, feature_type: str) -> str:
        if feature_type == "numeric" and dtypes.get(name, "").lower().startswith(("int", "uint")):
            return "long"
        return COLUMN_TYPES[feature_type]

    inputs = [{"type": kind(f.name, f.type), "name": f.name, "required": True} for f in version.signature]
    answer = "double" if version.task == "regression" else _label_type(version.classes)
    return {"inputs": json.dumps(inputs), "outputs": json.dumps([{"type": answer, "required": True}]),
            "params": None}


def export_mlflow(objects: ObjectStore, registry: RegistryStore, model: str, version: int, out: Path,
                  datasets: DatasetStore | None = None) -> Path:
    """Write version `version` of `model` to the directory `out` (new, or empty) in MLflow's format (with
    `datasets`, the signature's numeric types follow the training data's)."""
    record = registry.get_version(model, version)  # NotFound for an unknown version
    dtypes: dict[str, str] = {}
    if datasets is not None:
        try:
            dtypes = datasets.get_dataset(model, record.dataset_id).columns
        except NotFound:
            dtypes = {}
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(f"{out} exists and is not an empty directory: choose a new one")
    artifacts = record.artifacts
    data = objects.get_verified(artifacts.skops_key, artifacts.skops_sha256)  # IntegrityError if tampered
    packages = record.packages
    python = packages.get("python", "3.11")
    pins = [f"{name}=={packages[name]}" for name in REQUIRED if packages.get(name, "absent") != "absent"]
    requirements = [MLFLOW_REQUIREMENT, *pins]
    mlmodel = {
        "flavors": {
            "python_function": {
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "loader_module": "mlflow.sklearn",
                "model_path": MODEL_FILE,
                "predict_fn": "predict",
                "python_version": python,
            },
            "sklearn": {
                "code": None,
                "pickled_model": MODEL_FILE,  # MLflow's name for the file, whatever its format
                "serialization_format": "skops",
                "sklearn_version": packages.get("scikit-learn"),
                "skops_trusted_types": list(artifacts.skops_trusted_types),
            },
        },
        "model_uuid": uuid.uuid4().hex,
        "model_size_bytes": len(data),
        "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "signature": signature(record, dtypes),
        "metadata": {
            "source": "mlops-platform", "model": record.model, "version": record.version, "run_id": record.run_id,
            "dataset_id": record.dataset_id, "code_version": record.code_version, "task": record.task,
            "target": record.target, "metric": record.metric, "metrics": record.metrics,
            "skops_sha256": artifacts.skops_sha256, "registered_at": record.created_at,
        },
    }
    conda = {"channels": ["conda-forge"], "name": "mlflow-env",
             "dependencies": [f"python={python}", "pip", {"pip": requirements}]}
    python_env = {"python": python, "build_dependencies": ["pip", "setuptools", "wheel"],
                  "dependencies": ["-r requirements.txt"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(data)
    (out / "MLmodel").write_text(yaml.safe_dump(mlmodel, sort_keys=False))
    (out / "conda.yaml").write_text(yaml.safe_dump(conda, sort_keys=False))
    (out / "python_env.yaml").write_text(yaml.safe_dump(python_env, sort_keys=False))
    (out / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return out
