"""The holdout metrics (shared.scoring) and the comparison the promotion gate makes."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from functions.shared.scoring import beats, classification_metrics, regression_metrics, score


def test_binary_metrics():
    y = [0, 0, 1, 1, 1]
    predictions = [0, 1, 1, 1, 0]
    probabilities = [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]]
    metrics = classification_metrics(y, predictions, probabilities, [0, 1])
    assert metrics["accuracy"] == pytest.approx(0.6)
    # macro precision: class 0: 1/2, class 1: 2/3
    assert metrics["precision"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert metrics["recall"] == pytest.approx((0.5 + 2 / 3) / 2)
    # 5 of the 6 (positive, negative) pairs are ranked right: 0.4 < 0.6 is the one that is not.
    assert metrics["roc_auc"] == pytest.approx(5 / 6)
    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"}


def test_binary_roc_auc_uses_the_second_class_as_positive_for_string_labels():
    y = ["no", "yes", "yes", "no"]
    probabilities = [[0.8, 0.2], [0.3, 0.7], [0.1, 0.9], [0.6, 0.4]]
    metrics = classification_metrics(y, ["no", "yes", "yes", "no"], probabilities, ["no", "yes"])
    assert metrics["roc_auc"] == 1.0 and metrics["f1"] == 1.0


def test_multiclass_roc_auc_is_one_vs_rest_macro():
    y = ["a", "b", "c", "a", "b", "c"]
    probabilities = [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3], [0.5, 0.3, 0.2],
                     [0.2, 0.2, 0.6]]
    metrics = classification_metrics(y, ["a", "b", "c", "b", "a", "c"], probabilities, ["a", "b", "c"])
    expected = roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=["a", "b", "c"])
    assert metrics["roc_auc"] == pytest.approx(expected)


def test_an_undefined_metric_is_left_out_rather_than_nan():
    metrics = classification_metrics([1, 1], [1, 0], [[0.2, 0.8], [0.6, 0.4]], [0, 1])
    assert "roc_auc" not in metrics and metrics["accuracy"] == 0.5
    assert all(math.isfinite(v) for v in metrics.values())
    assert "r2" not in regression_metrics([3.0], [2.0])


def test_regression_metrics():
    metrics = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 5.0])
    assert metrics["mae"] == pytest.approx(0.625)
    assert metrics["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert metrics["r2"] == pytest.approx(1 - 2.25 / 5.0)


class FixedPredictor:
    """A model that answers what it is told to (score only needs predict_columns and classes)."""

    def __init__(self, answers, classes=None):
        self.answers, self.classes = answers, classes

    def predict_columns(self, frame):
        labels, probabilities = self.answers
        return np.asarray(labels), None if probabilities is None else np.asarray(probabilities)


def test_score_grades_a_predictor_on_the_target_column_by_task(churn_spec):
    holdout = pd.DataFrame({"churned": [0, 1, 1, 0]})
    perfect = FixedPredictor(([0, 1, 1, 0], [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]]), classes=[0, 1])
    assert score(perfect, holdout, churn_spec) == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0,
                                                    "roc_auc": 1.0}
    regression = churn_spec.model_copy(update={"task": "regression", "target": "monthly_charges"})
    metrics = score(FixedPredictor(([10.0, 20.0], None)), pd.DataFrame({"monthly_charges": [10.0, 22.0]}), regression)
    assert metrics == pytest.approx({"mae": 1.0, "rmse": math.sqrt(2.0), "r2": 1 - 4.0 / 72.0})


@pytest.mark.parametrize(
    "new, current, higher, expected",
    [(0.9, 0.8, True, True), (0.8, 0.8, True, False), (0.7, 0.8, True, False),
     (1.0, 2.0, False, True), (2.0, 1.0, False, False), (None, 0.5, True, False), (0.5, None, True, True)],
)
def test_beats_respects_the_metric_direction_and_needs_a_strict_win(new, current, higher, expected):
    assert beats(new, current, higher) is expected


def test_chance_level_scores_are_warned_about(churn_spec):
    from functions.shared.scoring import chance_warnings

    y = [0] * 6 + [1] * 4
    good = {"accuracy": 0.9, "roc_auc": 0.95}
    assert chance_warnings(churn_spec, good, y) == []
    (coin,) = chance_warnings(churn_spec, {"accuracy": 0.7, "roc_auc": 0.515}, y)
    assert "chance level: ROC AUC 0.515 on the holdout is within 0.02 of 0.5" in coin
    (majority,) = chance_warnings(churn_spec, {"accuracy": 0.6, "roc_auc": 0.8}, y)
    assert "accuracy 0.600 on the holdout is not above that class's share 0.600" in majority
    regression = churn_spec.model_copy(update={"task": "regression", "metric": "rmse"})
    assert chance_warnings(regression, {"r2": 0.4}, [1.0, 2.0]) == []
    (mean,) = chance_warnings(regression, {"r2": -0.01}, [1.0, 2.0])
    assert "no better than predicting the mean: r2 -0.010" in mean
