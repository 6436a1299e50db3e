"""Captured requests written the way the predict API writes them."""

from datetime import datetime

import pandas as pd

from cli.demo_data import churn_frame
from functions.serving.capture import write_capture
from tests.conftest import CHURN_FEATURES



def instances(frame: pd.DataFrame) -> list[dict]:
    """Rows as predict instances (plain Python values, the churn signature only)."""
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in frame[CHURN_FEATURES].to_dict("records")]


def shifted_instances(rows: int = 90, seed: int = 21) -> list[dict]:
    """Traffic from a market that has moved since training."""
    return instances(churn_frame(rows=rows, seed=seed, shift=1.0))


def capture(aws, at: datetime, rows: list[dict], *, model: str = "churn", version: int = 1,
            per_request: int = 30) -> list[str]:
    """Capture `rows` at `at`, `per_request` instances a request; returns the keys."""
    keys = []
    for start in range(0, len(rows), per_request):
        batch = rows[start:start + per_request]
        keys.append(write_capture(aws.s3, aws.bucket, model=model, version=version, request_id=f"r-{start}",
                                  inputs=batch, predictions=[0] * len(batch), at=at))
    return keys
