"""One drift check under moto: captures of a window against the champion's training profile."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from functions.data.store import DatasetStore
from functions.errors import NoChampion, UnknownModel
from functions.monitoring.check import check_model
from functions.registry.store import RegistryStore
from tests.monitoring.helpers import capture, instances, shifted_instances

NOW = datetime(2026, 5, 6, 10, 30, tzinfo=timezone.utc)
FEATURE_FIELDS = {"psi", "ks_stat", "ks_pvalue", "drifted"}


@pytest.fixture
def stores(pipeline_aws):
    return RegistryStore(pipeline_aws.tables["registry"]), DatasetStore(pipeline_aws.tables["datasets"])


def check(aws, stores, model="churn", *, hours=24, now=NOW):
    registry, datasets = stores
    return check_model(aws.s3, registry, datasets, bucket=aws.bucket, model=model, window_hours=hours,
                       psi_threshold=0.2, ks_pvalue=0.01, now=now)


def stored(aws, key) -> dict:
    return json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read())


def test_the_report_of_training_like_traffic_keeps_its_contract(churn_champion, pipeline_aws, stores):
    rows = instances(churn_champion.rows)
    capture(pipeline_aws, NOW - timedelta(hours=3), rows[:100])
    capture(pipeline_aws, NOW - timedelta(minutes=5), rows[100:])

    report = check(pipeline_aws, stores)

    assert report["report_key"] == "reports/drift/churn/2026-05-06T10:30:00.000000Z.json"
    assert {k: v for k, v in report.items() if k != "report_key"} == stored(pipeline_aws, report["report_key"])
    assert report["model"] == "churn" and report["version"] == 1 and report["window_hours"] == 24
    assert report["samples"] == 200 and report["requests"] == 8 and report["versions"] == {"1": 200}
    assert report["skipped"] == 0 and report["truncated"] is False
    assert report["dataset_id"] == churn_champion.dataset_id
    assert report["drifted"] is False
    assert set(report["features"]) == set(churn_champion.spec.feature_names)
    for name, feature in report["features"].items():
        assert FEATURE_FIELDS <= set(feature), name
        assert feature["drifted"] is False, name
        assert feature["psi"] == pytest.approx(0, abs=1e-4), name  # the training rows themselves
    assert report["features"]["tenure_months"]["ks_pvalue"] > 0.5
    assert report["features"]["plan"]["ks_stat"] is None  # categorical: PSI only
    assert report["drift_score"] == max(f["psi"] for f in report["features"].values())


def test_shifted_traffic_is_drift(churn_champion, pipeline_aws, stores):
    capture(pipeline_aws, NOW - timedelta(minutes=1), shifted_instances())

    report = check(pipeline_aws, stores)

    assert report["drifted"] is True and report["samples"] == 90
    assert report["features"]["tenure_months"]["drifted"] and report["features"]["monthly_charges"]["drifted"]
    assert report["features"]["monthly_charges"]["ks_pvalue"] < 0.01
    assert report["drift_score"] > 0.2
    assert stored(pipeline_aws, report["report_key"])["drifted"] is True


def test_captures_outside_the_window_are_ignored(churn_champion, pipeline_aws, stores):
    shifted = shifted_instances()
    capture(pipeline_aws, NOW - timedelta(hours=3), shifted)  # before the window, in a partition not listed
    capture(pipeline_aws, NOW - timedelta(hours=2, minutes=10), shifted)  # a listed partition, before the window
    capture(pipeline_aws, NOW + timedelta(minutes=1), shifted)  # after the check's time
    capture(pipeline_aws, NOW - timedelta(minutes=50), instances(churn_champion.rows), per_request=200)

    report = check(pipeline_aws, stores, hours=2)

    assert report["samples"] == 200 and report["requests"] == 1 and report["drifted"] is False
    assert report["window_hours"] == 2


def test_unreadable_captures_are_skipped(churn_champion, pipeline_aws, stores):
    rows = shifted_instances()
    (key,) = capture(pipeline_aws, NOW - timedelta(minutes=10), rows, per_request=90)
    partition = key.rsplit("/", 1)[0]
    epoch_ms = int((NOW - timedelta(minutes=5)).timestamp() * 1000)
    for index, body in enumerate([b"{not json", b"[1, 2]", b'{"inputs": "abc"}', b"\xff\xfe",
                                  json.dumps({"version": 1, "inputs": [1, "x", None, rows[0]]}).encode()]):
        pipeline_aws.upload(f"{partition}/{epoch_ms + index:013d}-bad-{index}.json", body)
    pipeline_aws.upload(f"{partition}/README.txt", b"not a capture")  # not named like one: not even read

    report = check(pipeline_aws, stores)

    assert report["samples"] == 91 and report["requests"] == 2
    assert report["skipped"] == 4 + 3  # four unreadable objects, three instances that are not objects
    assert report["drifted"] is True


def test_no_traffic_is_a_report_that_decides_nothing(churn_champion, pipeline_aws, stores):
    report = check(pipeline_aws, stores, hours=6)
    assert report["samples"] == 0 and report["drifted"] is False and report["features"] == {}
    assert report["note"] == "no captured requests in the last 6 hours: nothing to compare"
    assert report["drift_score"] == 0.0 and stored(pipeline_aws, report["report_key"])["samples"] == 0


def test_a_check_needs_a_known_model_with_a_champion(pipeline_aws, stores, churn_spec):
    registry, _ = stores
    with pytest.raises(UnknownModel):
        check(pipeline_aws, stores, "nosuch")
    with pytest.raises(UnknownModel) as raised:
        check(pipeline_aws, stores, "x" * 10_000)
    assert "x" * 65 not in raised.value.message

    registry.put_spec(churn_spec)
    with pytest.raises(NoChampion):
        check(pipeline_aws, stores)
    listed = pipeline_aws.s3.list_objects_v2(Bucket=pipeline_aws.bucket, Prefix="reports/")
    assert listed.get("KeyCount", 0) == 0
