"""Model quality from delayed labels: labels joined with captured predictions, metrics equal to scikit-learn's."""

import gzip
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, roc_auc_score

from functions.feedback.store import StoredLabel
from functions.monitoring.quality import (
    Prediction,
    captured_predictions,
    emit_quality,
    join,
    model_quality,
    quality_metrics,
)
from functions.serving.capture import capture_lines, capture_record, hour_prefix
from tests.fakes import MemoryObjectStore
from tests.feedback.fakes import FakeFeedbackStore

NOW = datetime(2026, 3, 4, 12, 30, tzinfo=UTC)


def label(request_id: str, value, index: int = 0, at: datetime = NOW) -> StoredLabel:
    return StoredLabel(model="churn", request_id=request_id, index=index, label=value,
                       received_at=at.isoformat(timespec="microseconds"))


def record(request_id: str, predictions: list, probabilities=None, *, version: int = 1, variant: str = "champion",
           at: datetime = NOW - timedelta(minutes=5)) -> dict:
    return capture_record(model="churn", version=version, request_id=request_id, at=at,
                          inputs=[{"x": i} for i in range(len(predictions))], predictions=predictions,
                          probabilities=probabilities, variant=variant)


def test_binary_classification_metrics_equal_scikit_learns():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 200)
    scores = np.clip(truth * 0.3 + rng.random(200) * 0.7, 0, 1)
    predicted = (scores > 0.5).astype(int)
    pairs = [(["no", "yes"][t], Prediction(1, "champion", ["no", "yes"][p], [1 - s, s]))
             for t, p, s in zip(truth, predicted, scores, strict=True)]
    result = quality_metrics("classification", ["no", "yes"], pairs)
    assert result["labelled"] == 200
    assert result["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    assert result["f1"] == pytest.approx(f1_score(truth, predicted, average="macro"), abs=1e-12)  # as the holdout's
    assert result["roc_auc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)


def test_roc_auc_needs_both_classes_among_the_labels_and_probabilities():
    one_class = [("yes", Prediction(1, "champion", "yes", [0.2, 0.8])), ("yes", Prediction(1, "champion", "no",
                                                                                        [0.6, 0.4]))]
    result = quality_metrics("classification", ["no", "yes"], one_class)
    assert result["roc_auc"] is None and "every class" in result["roc_auc_note"]
    assert result["accuracy"] == 0.5
    no_probabilities = [("yes", Prediction(1, "champion", "yes", None)), ("no", Prediction(1, "champion", "no", None))]
    result = quality_metrics("classification", ["no", "yes"], no_probabilities)
    assert result["roc_auc"] is None and result["accuracy"] == 1.0 and result["f1"] == 1.0


def test_multiclass_f1_is_macro_and_roc_auc_one_vs_rest():
    classes = [0, 1, 2]
    truth, predicted = [0, 1, 2, 2, 1, 0], [0, 2, 2, 1, 1, 0]
    proba = [[0.8, 0.1, 0.1], [0.1, 0.3, 0.6], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3], [0.2, 0.6, 0.2], [0.7, 0.2, 0.1]]
    pairs = [(t, Prediction(1, "champion", p, q)) for t, p, q in zip(truth, predicted, proba, strict=True)]
    result = quality_metrics("classification", classes, pairs)
    assert result["f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert result["roc_auc"] == pytest.approx(roc_auc_score(truth, proba, multi_class="ovr"))


def test_a_prediction_outside_the_classes_counts_as_wrong_and_true_is_not_one():
    pairs = [(1, Prediction(1, "champion", True, None)), (0, Prediction(1, "champion", 0, None))]
    assert quality_metrics("classification", [0, 1], pairs)["accuracy"] == 0.5


def test_regression_metrics_equal_scikit_learns_and_skip_non_finite_predictions():
    truth, predicted = [1.0, 2.0, 3.5, -1.0], [1.5, 2.0, 2.5, 0.0]
    pairs = [(t, Prediction(1, "champion", p, None)) for t, p in zip(truth, predicted, strict=True)]
    result = quality_metrics("regression", None, pairs)
    assert result["mae"] == pytest.approx(mean_absolute_error(truth, predicted))
    assert result["rmse"] == pytest.approx(float(np.sqrt(np.mean((np.array(truth) - predicted) ** 2))))
    assert quality_metrics("regression", None, [(1.0, Prediction(1, "champion", "x", None))])["mae"] is None
    assert quality_metrics("regression", None, []) == {"labelled": 0, "mae": None, "rmse": None}


def test_split_requests_are_put_back_in_part_order_and_variants_kept_apart():
    whole = record("r-1", ["a", "b", "c", "d"], version=2)
    size = len(capture_lines(whole)[0])
    parts = [json.loads(line) for line in capture_lines(whole, max_bytes=size - 1)]
    assert len(parts) > 1
    rows = captured_predictions(reversed(parts + [record("r-1", ["z", "z", "z", "z"], variant="shadow")]))
    assert [rows["champion"][("r-1", i)].value for i in range(4)] == ["a", "b", "c", "d"]
    assert rows["shadow"][("r-1", 0)].value == "z"


def test_a_request_with_a_part_missing_is_left_out_and_a_part_delivered_twice_counts_once():
    whole = record("r-1", ["a", "b", "c", "d"])
    parts = [json.loads(line) for line in capture_lines(whole, max_bytes=len(capture_lines(whole)[0]) - 1)]
    assert len(parts) > 1
    # Without its first part, the rows' indexes are unknown: none of them is joined to a label.
    assert captured_predictions(parts[1:]) == {}
    twice = captured_predictions([*parts, parts[-1]])
    assert [twice["champion"][("r-1", i)].value for i in range(4)] == ["a", "b", "c", "d"]
    assert len(twice["champion"]) == 4


def test_join_counts_unmatched_labels_and_measures_shadows_apart():
    predictions = captured_predictions([
        record("r-1", ["yes", "no"], [[0.1, 0.9], [0.8, 0.2]], version=1),
        record("r-2", ["yes"], [[0.3, 0.7]], version=2, variant="challenger"),
        record("r-2", ["no"], [[0.6, 0.4]], version=3, variant="shadow"),
    ])
    labels = [label("r-1", "yes"), label("r-1", "yes", index=1), label("r-2", "yes"), label("ghost", "no"),
              label("r-1", "no", index=7)]
    section = join(labels, predictions, "classification", ["no", "yes"])
    assert (section["labels"], section["labelled"], section["unmatched"]) == (5, 3, 2)
    assert section["accuracy"] == pytest.approx(2 / 3)
    assert set(section["by_version"]) == {"1", "2"} and section["by_version"]["2"]["accuracy"] == 1.0
    assert section["shadow"]["3"]["accuracy"] == 0.0


def _deliver(objects: MemoryObjectStore, records: list[dict], name: str) -> None:
    text = "".join(line + "\n" for r in records for line in capture_lines(r))
    objects.put(hour_prefix("churn", NOW) + f"stream-1-{name}.gz", gzip.compress(text.encode()))


def test_model_quality_reads_the_windows_captures_and_labels():
    objects, feedback = MemoryObjectStore("bucket"), FakeFeedbackStore()
    _deliver(objects, [record("r-1", ["yes"], [[0.2, 0.8]]), record("r-2", ["no"], [[0.9, 0.1]]),
                       record("r-3", ["yes"], [[0.4, 0.6]]),
                       record("old", ["no"], [[0.9, 0.1]], at=NOW - timedelta(hours=30))], "a")
    objects.put(hour_prefix("churn", NOW) + "stream-1-b.gz", b"not gzip at all")
    feedback.put_labels([label("r-1", "yes"), label("r-2", "yes"), label("r-3", "no"), label("old", "no"),
                         label("stale", "no", at=NOW - timedelta(hours=48))])
    section = model_quality(objects, feedback, model="churn", task="classification", classes=["no", "yes"],
                            hours=24, now=NOW)
    # "old" was predicted before the window: its label is unmatched; "stale" was received before it: not read.
    assert (section["labels"], section["labelled"], section["unmatched"]) == (4, 3, 1)
    assert section["accuracy"] == pytest.approx(1 / 3) and section["roc_auc"] == 0.5 and section["window_hours"] == 24


def test_no_labels_reads_no_captures():
    objects = MemoryObjectStore("bucket")
    section = model_quality(objects, FakeFeedbackStore(), model="churn", task="regression", classes=None, hours=24,
                            now=NOW)
    assert section["labelled"] == 0 and section["mae"] is None


def test_metrics_are_one_emf_document_by_model(capsys):
    emit_quality({"labelled": 3, "accuracy": 0.5, "f1": 0.4, "roc_auc": None}, "churn", "Mlops")
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = document["_aws"]["CloudWatchMetrics"][0]
    assert metrics["Namespace"] == "Mlops" and any("model" in d for d in metrics["Dimensions"])
    assert {m["Name"] for m in metrics["Metrics"]} == {"LabelledPredictions", "Accuracy", "F1"}
    assert document["model"] == "churn" and document["Accuracy"] == [0.5]
    emit_quality({"labelled": 0}, "churn", "Mlops")
    emit_quality(None, "churn", "Mlops")
    assert capsys.readouterr().out == ""
