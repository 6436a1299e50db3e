"""One drift check over the in-memory stores: captures of a window against the champion's training profile."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from functions.errors import IntegrityError, NoChampion, RetryableError, UnknownModel
from functions.feedback.store import StoredLabel
from functions.monitoring.check import check_model
from functions.serving.capture import MARKER
from tests.conftest import Stores
from tests.fakes import lost_reply, throttled
from tests.feedback.fakes import FakeFeedbackStore
from tests.monitoring.helpers import capture, deliver, instances, shifted_instances

NOW = datetime(2026, 5, 6, 10, 30, tzinfo=UTC)
FEATURE_FIELDS = {"kind", "test", "statistic", "pvalue", "threshold", "drifted", "psi", "samples", "reference_samples"}


def check(stores: Stores, model: str = "churn", *, hours: int = 24, now: datetime = NOW) -> dict:
    return check_model(stores.objects, stores.registry, stores.datasets, model=model, window_hours=hours,
                       psi_threshold=0.2, ks_pvalue=0.01, now=now)


def test_the_report_of_training_like_traffic_keeps_its_contract(churn_champion, stores):
    rows = instances(churn_champion.rows)
    capture(stores.objects, NOW - timedelta(hours=3), rows[:100])
    capture(stores.objects, NOW - timedelta(minutes=5), rows[100:])

    report = check(stores)

    assert report["report_key"] == "reports/drift/churn/2026-05-06T10:30:00.000000Z.json"
    assert report["html_key"] == "reports/drift/churn/2026-05-06T10:30:00.000000Z.html"
    assert {k: v for k, v in report.items() if k not in {"report_key", "html_key"}} == stores.objects.get_json(
        report["report_key"])
    assert report["model"] == "churn" and report["version"] == 1 and report["window_hours"] == 24
    assert report["samples"] == 200 and report["requests"] == 8 and report["versions"] == {"1": 200}
    assert report["skipped"] == 0 and report["truncated"] is False
    assert report["dataset_id"] == churn_champion.dataset_id
    assert report["drifted"] is False
    assert set(report["features"]) == set(churn_champion.spec.feature_names)
    for name, feature in report["features"].items():
        assert set(feature) >= FEATURE_FIELDS, name
        assert feature["drifted"] is False, name
        assert feature["psi"] < 0.1, name  # the training rows themselves (and the holdout's)
    # 200 live rows against a training column of 160: p-value tests, Bonferroni over the columns tested
    tested = [f for f in report["features"].values() if f["test"] in {"ks", "chisquare"}]
    assert len(tested) == len(report["features"])
    assert {f["threshold"] for f in tested} == {0.01 / len(tested)}
    # These captures carry no model outputs (the helper leaves them out): said, not guessed
    assert report["prediction"] is None and "carries no model outputs" in report["prediction_note"]
    assert report["features"]["tenure_months"]["test"] == "ks" and report["features"]["tenure_months"]["pvalue"] > 0.5
    assert report["features"]["plan"]["test"] == "chisquare"
    assert report["reference"]["source"] == "version" and report["reference"]["key"].endswith("/reference.npz")
    assert report["drift_score"] == max(f["psi"] for f in report["features"].values())


def test_shifted_traffic_is_drift(churn_champion, stores):
    capture(stores.objects, NOW - timedelta(minutes=1), shifted_instances())

    report = check(stores)

    assert report["drifted"] is True and report["samples"] == 90
    assert report["features"]["tenure_months"]["drifted"] and report["features"]["monthly_charges"]["drifted"]
    assert report["features"]["monthly_charges"]["pvalue"] < 1e-6
    assert report["drift_score"] > 0.2
    assert stores.objects.get_json(report["report_key"])["drifted"] is True


def test_captures_outside_the_window_are_ignored(churn_champion, stores):
    shifted = shifted_instances()
    capture(stores.objects, NOW - timedelta(hours=3), shifted)  # before the window, in a partition not listed
    capture(stores.objects, NOW - timedelta(hours=2, minutes=10), shifted)  # a listed partition, before the window
    capture(stores.objects, NOW + timedelta(minutes=1), shifted)  # after the check's time
    capture(stores.objects, NOW - timedelta(minutes=50), instances(churn_champion.rows), per_request=200)

    report = check(stores, hours=2)

    assert report["samples"] == 200 and report["requests"] == 1 and report["drifted"] is False
    assert report["window_hours"] == 2


def test_unreadable_captures_are_skipped(churn_champion, stores):
    rows = shifted_instances()
    (key,) = capture(stores.objects, NOW - timedelta(minutes=10), rows, per_request=90)
    partition = key.rsplit("/", 1)[0] + "/"
    at = (NOW - timedelta(minutes=5)).isoformat()
    odd = {MARKER: 1, "model": "churn", "version": 1, "timestamp": at, "inputs": [1, "x", None, rows[0]]}
    lines = ["{not json", "[1, 2]", json.dumps({MARKER: 1, "timestamp": at, "inputs": "abc"}), json.dumps(odd)]
    deliver(stores.objects, partition, lines, NOW - timedelta(minutes=4))
    stores.objects.put(f"{partition}captures-1-2026-01-01-01-12-00-corrupt.gz", b"\x1f\x8b not gzip after all")
    stores.objects.put(f"{partition}README.txt", b"not a capture")
    stores.objects.faults.calls.clear()

    report = check(stores)

    assert report["samples"] == 91 and report["requests"] == 2
    assert report["skipped"] == 3 + 1 + 3  # three unreadable lines, one unreadable object, three non-object rows
    assert report["drifted"] is True
    # README.txt is not a delivered object: never read (the fourth read is the version's reference profile)
    assert stores.objects.faults.calls.count("get_bytes") == 4


def test_labels_join_the_captures_of_the_drift_checks_own_reading(churn_champion, stores):
    rows = instances(churn_champion.rows)[:90]
    capture(stores.objects, NOW - timedelta(minutes=10), rows, predictions=[0, 1] * 45)  # requests r-0, r-30, r-60
    feedback = FakeFeedbackStore()
    at = (NOW - timedelta(minutes=1)).isoformat()
    feedback.put_labels([StoredLabel(model="churn", request_id=request_id, index=index, label=label, received_at=at)
                         for request_id, index, label in [("r-0", 0, 0), ("r-0", 1, 0), ("r-60", 0, 0),
                                                          ("unknown", 0, 1)]])
    stores.objects.faults.calls.clear()

    report = check_model(stores.objects, stores.registry, stores.datasets, model="churn", window_hours=24,
                         psi_threshold=0.2, ks_pvalue=0.01, now=NOW, feedback=feedback)

    quality = report["quality"]
    assert (quality["labels"], quality["labelled"], quality["unmatched"]) == (4, 3, 1)
    assert quality["accuracy"] == pytest.approx(2 / 3) and report["samples"] == 90
    assert stores.objects.faults.calls.count("get_bytes") == 2  # the capture object once, the reference profile


def test_no_traffic_is_a_report_that_decides_nothing(churn_champion, stores):
    report = check(stores, hours=6)
    assert report["samples"] == 0 and report["drifted"] is False and report["features"] == {}
    assert report["note"] == "no captured requests in the last 6 hours: nothing to compare"
    assert report["drift_score"] == 0.0 and stores.objects.get_json(report["report_key"])["samples"] == 0


def test_a_check_needs_a_known_model_with_a_champion(stores, churn_spec):
    with pytest.raises(UnknownModel):
        check(stores, "nosuch")
    with pytest.raises(UnknownModel) as raised:
        check(stores, "x" * 10_000)
    assert "x" * 65 not in raised.value.message

    stores.registry.put_spec(churn_spec)
    with pytest.raises(NoChampion):
        check(stores)
    assert stores.objects.keys("reports/") == []


@pytest.mark.parametrize("store, operation", [("objects", "list_keys"), ("objects", "get_bytes"),
                                              ("registry", "get_alias"), ("registry", "get_run")])
def test_busy_storage_fails_the_check_as_retryable_and_writes_no_report(churn_champion, stores, store, operation):
    capture(stores.objects, NOW - timedelta(minutes=1), shifted_instances())
    getattr(stores, store).faults.inject(operation, throttled())

    with pytest.raises(RetryableError):
        check(stores)
    assert stores.objects.keys("reports/") == []
    assert check(stores)["drifted"] is True  # storage is back: the retry checks every capture


def test_a_report_is_keyed_by_its_check_time_so_a_retry_after_a_lost_reply_writes_it_once(churn_champion, stores):
    capture(stores.objects, NOW - timedelta(minutes=1), shifted_instances())
    stores.objects.faults.inject("put_bytes", lost_reply(), after=True)

    with pytest.raises(RetryableError):
        check(stores)
    report = check(stores)  # the same check again: its report goes under the same key

    assert stores.objects.keys("reports/") == sorted([report["report_key"], report["html_key"]])
    assert stores.objects.get_json(report["report_key"])["samples"] == 90


def test_a_version_without_a_reference_falls_back_to_its_dataset_profile_and_says_so(churn_champion, stores):
    stores.registry.update_run("churn", churn_champion.run_id, artifacts={})  # registered before references
    capture(stores.objects, NOW - timedelta(minutes=1), shifted_instances())

    report = check(stores)

    assert report["reference"]["source"] == "profile" and "no reference profile" in report["reference"]["warning"]
    assert report["features"]["monthly_charges"]["reference_samples"] == 101  # the profile's quantiles
    assert report["drifted"] is True and report["features"]["plan"]["test"] == "chisquare"


@pytest.mark.parametrize("stored", [b"tampered", b""])
def test_a_reference_that_does_not_match_its_sha256_is_refused_and_no_report_is_written(churn_champion, stores,
                                                                                        stored):
    key = stores.registry.get_run("churn", churn_champion.run_id).artifacts["reference"].key
    stores.objects.put_bytes(key, stored)
    capture(stores.objects, NOW - timedelta(minutes=1), shifted_instances())

    with pytest.raises(IntegrityError):
        check(stores)
    assert stores.objects.keys("reports/") == []


def test_prediction_drift_is_checked_on_the_captured_probabilities(churn_champion, stores):
    from functions.serving.capture import capture_lines, capture_record, hour_prefix

    rows = instances(churn_champion.rows)
    at = NOW - timedelta(minutes=2)
    record = capture_record(model="churn", version=1, request_id="r-1", at=at, inputs=rows,
                            predictions=[1] * len(rows), probabilities=[[0.02, 0.98]] * len(rows))
    deliver(stores.objects, hour_prefix("churn", at), capture_lines(record), at)

    report = check(stores)

    assert report["prediction"]["test"] == "ks" and report["prediction"]["samples"] == len(rows)
    assert report["prediction_drift"] is True and report["drifted"] is True  # a model suddenly sure of churn
    assert not any(f["drifted"] for f in report["features"].values())  # on inputs like the training data's
