"""The benches' model and data: the demo's churn spec (examples/churn.yaml) and synthetic churn tables."""

import json
from pathlib import Path

import pandas as pd
import yaml

from cli.demo_data import churn_frame
from functions.spec import ModelSpec

MODEL = "churn"
SPEC_FILE = Path(__file__).resolve().parent.parent / "examples" / "churn.yaml"
TRAINING_ROWS = 600  # as `mlops demo`
TRAINING_SEED = 7
LIVE_SEED = 11


def churn_spec() -> ModelSpec:
    """examples/churn.yaml, the demo's spec, registered as "churn"."""
    return ModelSpec.model_validate({**yaml.safe_load(SPEC_FILE.read_text()), "name": MODEL})


def training_frame(rows: int = TRAINING_ROWS) -> pd.DataFrame:
    return churn_frame(rows=rows, seed=TRAINING_SEED)


def instances(spec: ModelSpec, rows: int, shift: float = 0.0) -> list[dict]:
    """Request instances as a client sends them: the spec's features, through JSON."""
    frame = churn_frame(rows=rows, seed=LIVE_SEED, shift=shift)[spec.feature_names]
    return json.loads(frame.to_json(orient="records"))
