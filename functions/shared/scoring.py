"""Holdout metrics: what a run reports, and what the promotion gate compares.

Classification: accuracy, and macro-averaged precision, recall, f1 and ROC AUC (one-vs-rest
for several classes). Regression: mae, rmse, r2. A metric that is undefined on a holdout
(ROC AUC with one class present, r2 on one row) is left out rather than stored as NaN.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from functions.shared.models import ArrayAnswers, Predictor
from functions.spec import ModelSpec


def classification_metrics(y_true: Sequence[Any] | np.ndarray, predictions: Sequence[Any] | np.ndarray,
                           probabilities: Sequence[Sequence[float]] | np.ndarray | None,
                           classes: Sequence[Any] | None) -> dict[str, float]:
    """Lists or numpy arrays alike (a holdout's are arrays: no Python object per row)."""
    y_true, predictions = np.asarray(y_true), np.asarray(predictions)
    result = {
        "accuracy": skm.accuracy_score(y_true, predictions),
        "precision": skm.precision_score(y_true, predictions, average="macro", zero_division=0),
        "recall": skm.recall_score(y_true, predictions, average="macro", zero_division=0),
        "f1": skm.f1_score(y_true, predictions, average="macro", zero_division=0),
    }
    auc = _roc_auc(pd.Series(y_true), probabilities, classes)
    if auc is not None:
        result["roc_auc"] = auc
    return _finite(result)


def _roc_auc(y_true: pd.Series, probabilities: Sequence[Sequence[float]] | np.ndarray | None,
             classes: Sequence[Any] | None) -> float | None:
    if probabilities is None or not classes or y_true.nunique(dropna=False) < 2:
        return None
    proba = np.asarray(probabilities, dtype=np.float64)
    classes = list(classes)
    try:
        if len(classes) == 2:
            positive = classes[1]  # predict_proba's second column is the larger label
            return skm.roc_auc_score((y_true == positive).to_numpy(), proba[:, 1])
        # One-vs-rest, macro: every class the holdout holds; rows of unseen labels cannot be scored.
        known = y_true.isin(classes).to_numpy()
        labels, proba = y_true[known], proba[known]
        present = [c for c in classes if (labels == c).any()]
        if len(present) < 2:
            return None
        scores = [skm.roc_auc_score((labels == c).to_numpy(), proba[:, classes.index(c)]) for c in present]
        return float(np.mean(scores))
    except ValueError:
        return None


def regression_metrics(y_true: Sequence[Any] | np.ndarray, predictions: Sequence[Any] | np.ndarray) -> dict[str, float]:
    actual = np.asarray(y_true, dtype=np.float64)
    predicted = np.asarray(predictions, dtype=np.float64)
    result = {
        "mae": skm.mean_absolute_error(actual, predicted),
        "rmse": math.sqrt(skm.mean_squared_error(actual, predicted)),
    }
    if len(actual) >= 2 and np.var(actual) > 0:
        result["r2"] = skm.r2_score(actual, predicted)
    return _finite(result)


def _finite(result: dict) -> dict:
    return {k: float(v) for k, v in result.items() if v is not None and math.isfinite(float(v))}


def score(predictor: Predictor, holdout: pd.DataFrame, spec: ModelSpec) -> dict[str, float]:
    """The metrics of `predictor` (any format) on `holdout` (features + target)."""
    return metrics_of(spec, holdout[spec.target], predictor.predict_columns(holdout), predictor.classes)


def metrics_of(spec: ModelSpec, y_true: pd.Series, answers: ArrayAnswers, classes: Sequence[Any] | None
               ) -> dict[str, float]:
    """The metrics of answers already computed (`Predictor.predict_columns`) against the true values."""
    predictions, probabilities = answers
    if spec.task == "classification":
        return classification_metrics(y_true.to_numpy(), predictions, probabilities, classes)
    return regression_metrics(y_true.to_numpy(), predictions)


CHANCE_AUC_MARGIN = 0.02  # a ROC AUC this close to 0.5 is a coin toss


def chance_warnings(spec: ModelSpec, metrics: dict[str, float], y_true: Sequence[Any]) -> list[str]:
    """Warnings when the holdout metrics are no better than chance (the model learned nothing usable).

    Classification: ROC AUC within CHANCE_AUC_MARGIN of 0.5, or accuracy not above the share of the
    holdout's most frequent class. Regression: r2 not above 0 (no better than predicting the mean).
    """
    warnings = []
    if spec.task == "classification":
        auc = metrics.get("roc_auc")
        if auc is not None and abs(auc - 0.5) <= CHANCE_AUC_MARGIN:
            warnings.append(f"the model scores at chance level: ROC AUC {auc:.3f} on the holdout is within "
                            f"{CHANCE_AUC_MARGIN} of 0.5")
        accuracy = metrics.get("accuracy")
        labels = pd.Series(y_true, dtype=object)
        majority = float(labels.value_counts(normalize=True).iloc[0]) if len(labels) else None
        if accuracy is not None and majority is not None and accuracy <= majority:
            warnings.append(f"the model is no better than always answering the most frequent class: accuracy "
                            f"{accuracy:.3f} on the holdout is not above that class's share {majority:.3f}")
    else:
        r2 = metrics.get("r2")
        if r2 is not None and r2 <= 0:
            warnings.append(f"the model is no better than predicting the mean: r2 {r2:.3f} on the holdout is not "
                            "above 0")
    return warnings


def beats(new: float | None, current: float | None, higher_is_better: bool) -> bool:
    """Whether a score strictly beats another (an undefined score never wins, and loses to any)."""
    if new is None:
        return False
    if current is None:
        return True
    return new > current if higher_is_better else new < current
