"""The tracking client on the in-memory stores: the churn spec registered, its data split, a pipeline to fit."""

import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cli.demo_data import churn_frame
from mlops.tracking import Tracking

NUMERIC = ["tenure_months", "monthly_charges", "support_calls"]


@pytest.fixture
def tracking(stores, churn_spec) -> Tracking:
    stores.registry.put_spec(churn_spec)
    return Tracking(stores.registry, stores.objects, stores.datasets)


@pytest.fixture(scope="session")
def frames():
    """(train, holdout) of 300 customers."""
    frame = churn_frame(rows=300, seed=5)
    return frame.iloc[:240].reset_index(drop=True), frame.iloc[240:].reset_index(drop=True)


def notebook_pipeline(C: float = 1.0) -> Pipeline:
    """What a data scientist writes: columns by name, their own preprocessing and estimator."""
    prep = ColumnTransformer([("num", StandardScaler(), NUMERIC),
                              ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])])
    return Pipeline([("prep", prep), ("clf", LogisticRegression(C=C, max_iter=300))])
