"""Automatic retraining (monitoring.retrain): drift or decay events start one retrain per model per cooldown,
each audited with the event that caused it; a spec can turn it off; bad events are refused.

Domain cases over the in-memory stores; the DynamoDB and S3 adapters under moto (the cooldown's conditional
write with concurrent events, the copy's metadata and version)."""

import io
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from functions.errors import InvalidInput, UnknownModel
from functions.feedback.store import StoredLabel
from functions.monitoring import retrain_handler
from functions.monitoring.events import DRIFT_DETECTED, QUALITY_DEGRADED, drift_event, quality_event
from functions.monitoring.retrain import (
    Feedback,
    MonitoringEventEnvelope,
    on_event,
    reason_of,
    retrain_key,
    with_rows,
)
from functions.training.start import run_id_for
from tests.conftest import PIPELINE_BUCKET, Stores
from tests.fakes import MemoryObjectStore
from tests.feedback.fakes import FakeFeedbackStore
from tests.monitoring.helpers import capture

NOW = datetime(2026, 5, 6, 10, 30, tzinfo=UTC)


class MemoryUploads:
    """Training uploads over a versioned in-memory bucket: a copy is a new version with its metadata."""

    def __init__(self, objects: MemoryObjectStore):
        self.objects, self.copies, self.written = objects, [], []

    def version_of(self, key: str) -> str | None:
        versions = self.objects.versions.get(key)
        return versions[-1][0] if versions else None

    def copy(self, *, source_key: str, source_version: str | None, key: str, metadata: dict[str, str]) -> str:
        self.copies.append((source_key, source_version, key, metadata))
        return self.objects.put(key, self.objects.get_bytes(source_key, version_id=source_version), metadata)

    def put(self, *, key: str, body: bytes, metadata: dict[str, str]) -> str:
        self.written.append((key, metadata))
        return self.objects.put(key, body, metadata)


def drift(event_id: str = "event-1", model: str = "churn", **detail: Any) -> MonitoringEventEnvelope:
    return MonitoringEventEnvelope.model_validate({
        "id": event_id, "source": "mlops.monitoring", "detail-type": DRIFT_DETECTED, "time": "2026-05-06T10:30:00Z",
        "detail": {"model": model, "version": 1, "drifted": ["tenure_months"],
                   "report_key": "reports/drift/churn/x.json", **detail}})


def start(stores: Stores, event: MonitoringEventEnvelope, *, now: datetime = NOW, cooldown_hours: float = 6,
          uploads: MemoryUploads | None = None, feedback: Feedback | None = None) -> dict:
    return on_event(stores.registry, stores.datasets, uploads or MemoryUploads(stores.objects), event=event,
                    bucket=PIPELINE_BUCKET, cooldown_hours=cooldown_hours, actor="arn:aws:sts::1:assumed-role/r/f",
                    feedback=feedback, now=now)


def test_a_drift_event_copies_the_latest_dataset_with_retrain_metadata_and_audits_the_cause(churn_champion, stores):
    uploads = MemoryUploads(stores.objects)
    (dataset,) = stores.datasets.list_datasets("churn")

    result = start(stores, drift(), uploads=uploads)

    assert result["started"] is True and result["dataset_id"] == dataset.dataset_id
    key = retrain_key("churn", dataset, "event-1")
    assert result["dataset_key"] == key and key.startswith("datasets/churn/retrain-") and key.endswith(".csv")
    ((source_key, source_version, copied_key, metadata),) = uploads.copies
    assert (source_key, source_version, copied_key) == (dataset.key, dataset.version_id, key)
    assert metadata == {"retrain": "true", "retrain-event": "event-1"}  # the pipeline retrains identical data
    version_id = uploads.version_of(key)
    assert result["run_id"] == run_id_for("churn", PIPELINE_BUCKET, key, version_id)  # the run the upload starts
    held = stores.registry.get_retrain("churn")
    assert held is not None and held.run_id == result["run_id"] and held.event_id == "event-1"
    (entry,) = [e for e in stores.registry.changes("churn") if e.action == "retrain"]
    assert entry.version == 1 and entry.actor.startswith("arn:aws:sts::") and entry.dataset_key == key
    assert entry.cause is not None and entry.cause["id"] == "event-1"
    assert entry.cause["detail-type"] == DRIFT_DETECTED and entry.cause["detail"]["drifted"] == ["tenure_months"]
    assert "tenure_months drifted" in entry.reason


def test_concurrent_events_start_one_retrain(churn_champion, stores):
    uploads = MemoryUploads(stores.objects)
    results: list[dict] = []
    barrier = threading.Barrier(8)

    def deliver(n: int) -> None:
        barrier.wait()
        results.append(start(stores, drift(f"event-{n}"), uploads=uploads))

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r["started"] for r in results) == 1
    assert all("within the cooldown of 6 hours" in r["reason"] for r in results if not r["started"])
    assert len(uploads.copies) == 1
    assert len([e for e in stores.registry.changes("churn") if e.action == "retrain"]) == 1


def test_the_cooldown_holds_a_second_event_back_and_lets_one_through_after_it(churn_champion, stores):
    uploads = MemoryUploads(stores.objects)
    assert start(stores, drift("first"), uploads=uploads)["started"] is True
    held = start(stores, drift("second"), now=NOW + timedelta(hours=5, minutes=59), uploads=uploads)
    assert held["started"] is False and "retrained at 2026-05-06T10:30:00" in held["reason"]
    after = start(stores, drift("third"), now=NOW + timedelta(hours=6, seconds=1), uploads=uploads)
    assert after["started"] is True and len(uploads.copies) == 2
    assert stores.registry.get_retrain("churn").event_id == "third"


def test_a_retried_delivery_of_the_claiming_event_finishes_its_start_once(churn_champion, stores):
    uploads = MemoryUploads(stores.objects)
    first = start(stores, drift(), uploads=uploads)
    again = start(stores, drift(), now=NOW + timedelta(minutes=1), uploads=uploads)
    assert again == first and len(uploads.copies) == 1
    assert len([e for e in stores.registry.changes("churn") if e.action == "retrain"]) == 1


def test_a_copy_that_failed_is_made_by_the_retry(churn_champion, stores):
    uploads = MemoryUploads(stores.objects)
    uploads.objects.faults.inject("get_bytes", RuntimeError("S3 was down"))
    with pytest.raises(RuntimeError):
        start(stores, drift(), uploads=uploads)
    uploads.objects.faults.clear()
    assert start(stores, drift(), uploads=uploads)["started"] is True  # the claim is this event's: it goes on
    assert len(uploads.copies) == 2 and len(uploads.objects.versions[uploads.copies[-1][2]]) == 1


def test_a_spec_with_retrain_off_starts_nothing_and_audits_nothing(churn_champion, stores):
    spec = stores.registry.get_spec("churn")
    stores.registry.put_spec(spec.model_copy(update={"monitoring": spec.monitoring.model_copy(
        update={"retrain": False})}))
    uploads = MemoryUploads(stores.objects)
    result = start(stores, drift(), uploads=uploads)
    assert result["started"] is False and "monitoring.retrain is false" in result["reason"]
    assert uploads.copies == [] and stores.registry.get_retrain("churn") is None
    assert not [e for e in stores.registry.changes("churn") if e.action == "retrain"]


def test_a_model_without_a_dataset_or_a_spec(churn_champion, stores):
    stores.datasets.datasets.clear()
    assert "no dataset version" in start(stores, drift())["reason"]
    with pytest.raises(UnknownModel):
        start(stores, drift(model="nobody"))


def test_a_quality_event_retrains_too(churn_champion, stores):
    event = MonitoringEventEnvelope.model_validate({
        "id": "q-1", "source": "mlops.monitoring", "detail-type": QUALITY_DEGRADED,
        "detail": {"model": "churn", "version": 1, "metric": "roc_auc", "value": 0.55, "threshold": 0.7}})
    assert start(stores, event)["started"] is True
    (entry,) = [e for e in stores.registry.changes("churn") if e.action == "retrain"]
    assert entry.reason == "Model Quality Degraded: roc_auc 0.55 < 0.7"
    rmse = MonitoringEventEnvelope.model_validate({
        "id": "q-2", "source": "mlops.monitoring", "detail-type": QUALITY_DEGRADED,
        "detail": {"model": "churn", "version": 1, "metric": "rmse", "value": 9.5, "threshold": 4.0}})
    assert reason_of(rmse) == "Model Quality Degraded: rmse 9.5 > 4.0"  # an error metric degrades upwards


# --- labelled feedback in the training rows ----------------------------------------------------------------------

def feedback_of(stores: Stores, labels: FakeFeedbackStore) -> Feedback:
    return Feedback(labels, stores.objects, hours=14 * 24)


def label(request_id: str, index: int, value: Any, at: datetime) -> StoredLabel:
    return StoredLabel(model="churn", request_id=request_id, index=index, label=value,
                       received_at=at.isoformat(timespec="microseconds"))


def served(stores: Stores, at: datetime, rows: int = 6) -> list[dict]:
    """`rows` requests' instances captured at `at` (two records a request: split in parts), as served."""
    instances = [{"tenure_months": float(i), "monthly_charges": 50.0 + i, "support_calls": i % 3,
                  "plan": ["basic", "premium"][i % 2]} for i in range(rows)]
    capture(stores.objects, at, instances, per_request=3)  # request ids r-0 (rows 0-2) and r-3 (rows 3-5)
    return instances


def labelled(stores: Stores, *labels: tuple[str, int, Any, timedelta]) -> tuple[Any, datetime, FakeFeedbackStore]:
    """The dataset, when it was made, and a labels store holding `labels` (request id, row, label, received that
    long after the dataset was made) for requests served an hour after it."""
    (dataset,) = stores.datasets.list_datasets("churn")
    made = datetime.fromisoformat(dataset.created_at)
    served(stores, made + timedelta(hours=1))
    store = FakeFeedbackStore()
    store.put_labels([label(request_id, index, value, made + after) for request_id, index, value, after in labels])
    return dataset, made, store


def training_file(stores: Stores, key: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(stores.objects.get_bytes(key)))


def test_the_labels_received_since_the_dataset_join_their_captured_rows_in_the_training_file(churn_champion, stores):
    (dataset,) = stores.datasets.list_datasets("churn")
    made = datetime.fromisoformat(dataset.created_at)
    now = made + timedelta(days=2)
    instances = served(stores, made + timedelta(hours=1))
    labels = FakeFeedbackStore()
    labels.put_labels([label("r-0", 1, 1, made + timedelta(days=1)), label("r-3", 2, 0, made + timedelta(days=1)),
                       label("unknown", 0, 1, made + timedelta(days=1)),  # no capture: left out, counted
                       label("r-0", 0, 0, made - timedelta(minutes=1))])  # before the dataset: not new
    uploads = MemoryUploads(stores.objects)

    result = start(stores, drift(), now=now, uploads=uploads, feedback=feedback_of(stores, labels))

    assert result["started"] is True and (result["labels"], result["feedback_rows"]) == (3, 2)
    key = result["dataset_key"]
    assert key == retrain_key("churn", dataset, "event-1", with_feedback=True) and key.endswith(".parquet")
    assert uploads.copies == [] and uploads.written == [(key, {"retrain": "true", "retrain-event": "event-1"})]
    assert result["run_id"] == run_id_for("churn", PIPELINE_BUCKET, key, uploads.version_of(key))
    frame = training_file(stores, key)
    assert len(frame) == dataset.rows + 2
    added = frame.iloc[dataset.rows:].reset_index(drop=True)
    assert list(added["customer_id"]) == ["feedback:r-0:1", "feedback:r-3:2"]
    assert list(added["churned"]) == [1, 0]
    for row, instance in zip(added.to_dict("records"), [instances[1], instances[5]], strict=True):
        assert {name: row[name] for name in instance} == instance
    original = frame.iloc[:dataset.rows]
    assert original["customer_id"].notna().all() and not original["customer_id"].str.startswith("feedback:").any()
    assert stores.registry.get_retrain("churn").feedback_since == dataset.created_at


def test_no_new_label_copies_the_dataset_as_it_is(churn_champion, stores):
    _, made, labels = labelled(stores, ("r-0", 0, 1, -timedelta(hours=1)))
    uploads = MemoryUploads(stores.objects)
    result = start(stores, drift(), now=made + timedelta(days=1), uploads=uploads,
                   feedback=feedback_of(stores, labels))
    assert result["labels"] == 0 and "feedback_rows" not in result and result["dataset_key"].endswith(".csv")
    assert len(uploads.copies) == 1 and uploads.written == []


def test_the_next_retrain_adds_the_labels_received_since_the_previous_one_started(churn_champion, stores):
    dataset, made, labels = labelled(stores, ("r-0", 0, 1, timedelta(hours=2)))
    feedback, uploads = feedback_of(stores, labels), MemoryUploads(stores.objects)
    first_at = made + timedelta(hours=3)
    first = start(stores, drift("first"), now=first_at, uploads=uploads, feedback=feedback)
    assert first["feedback_rows"] == 1
    # The pipeline registers the training file as the latest dataset version, a little after the retrain started;
    # a label received in between belongs to the next retrain, the one before it is in the file already.
    stores.datasets.put_dataset(dataset.model_copy(update={
        "dataset_id": "retrained", "key": first["dataset_key"], "version_id": uploads.version_of(first["dataset_key"]),
        "rows": dataset.rows + 1, "created_at": (first_at + timedelta(minutes=2)).isoformat()}))
    labels.put_labels([label("r-3", 0, 0, first_at + timedelta(minutes=1)),
                       label("r-3", 1, 1, first_at + timedelta(hours=1))])
    second = start(stores, drift("second"), now=first_at + timedelta(hours=7), uploads=uploads, feedback=feedback)
    assert second["started"] is True and second["dataset_id"] == "retrained"
    assert (second["labels"], second["feedback_rows"]) == (2, 2)
    added = training_file(stores, second["dataset_key"]).iloc[dataset.rows:]
    assert list(added["customer_id"]) == ["feedback:r-0:0", "feedback:r-3:0", "feedback:r-3:1"]


def test_a_retried_delivery_writes_the_training_file_with_the_same_labels(churn_champion, stores):
    dataset, made, labels = labelled(stores, ("r-0", 2, 1, timedelta(hours=2)))
    uploads, feedback = MemoryUploads(stores.objects), feedback_of(stores, labels)
    uploads.objects.faults.inject("get_bytes", RuntimeError("S3 was down"))
    with pytest.raises(RuntimeError):
        start(stores, drift(), now=made + timedelta(hours=3), uploads=uploads, feedback=feedback)
    uploads.objects.faults.clear()
    labels.put_labels([label("r-0", 1, 1, made + timedelta(hours=4))])  # after the retrain started: not its
    again = start(stores, drift(), now=made + timedelta(hours=5), uploads=uploads, feedback=feedback)
    assert (again["labels"], again["feedback_rows"]) == (1, 1) and len(uploads.written) == 1
    assert list(training_file(stores, again["dataset_key"]).iloc[dataset.rows:]["customer_id"]) == ["feedback:r-0:2"]


def test_coded_categories_and_integer_ids_become_text_beside_the_feedbacks(churn_spec):
    from functions.shared.tabular import frame_bytes

    dataset = pd.DataFrame({"customer_id": [5, 6], "tenure_months": [1.0, None], "monthly_charges": [9.0, 8.0],
                            "support_calls": [0, 1], "plan": [1.0, None], "churned": [0, 1], "note": ["a", "b"]})
    rows = pd.DataFrame({"tenure_months": [3.0], "monthly_charges": [7.5], "support_calls": [2], "plan": ["2"],
                         "churned": pd.Series([1], dtype=object), "customer_id": ["feedback:r:0"]})
    combined = with_rows(dataset, rows, churn_spec)
    assert combined["plan"].tolist() == ["1", None, "2"]  # the text training makes of 1.0; missing stays missing
    assert combined["customer_id"].tolist() == ["5", "6", "feedback:r:0"]
    assert combined["note"].tolist()[:2] == ["a", "b"] and pd.isna(combined["note"].iloc[2])
    stored = pd.read_parquet(io.BytesIO(frame_bytes(combined, "retrain.parquet")))  # one file holds both
    assert stored["churned"].tolist() == [0, 1, 1] and stored["tenure_months"].isna().tolist() == [False, True, False]


@pytest.mark.parametrize("event", [
    None, [], "drift", {}, {"id": "x", "source": "mlops.monitoring", "detail-type": DRIFT_DETECTED},
    {"id": "x", "source": "mlops.monitoring", "detail-type": DRIFT_DETECTED, "detail": {"version": 1}},
    {"id": "", "source": "mlops.monitoring", "detail-type": DRIFT_DETECTED, "detail": {"model": "churn"}},
    {"id": "x" * 500, "source": "mlops.monitoring", "detail-type": DRIFT_DETECTED, "detail": {"model": "churn"}},
    {"id": "x", "source": "mlops.monitoring", "detail-type": DRIFT_DETECTED, "detail": {"model": ["churn"]}},
])
def test_malformed_events_are_refused(event, lambda_context):
    with pytest.raises(InvalidInput):
        retrain_handler.start_retrain(event, lambda_context)


@pytest.mark.parametrize("detail_type, model, error", [
    ("Scheduled Event", "churn", InvalidInput), (DRIFT_DETECTED, "../../etc", UnknownModel),
    (DRIFT_DETECTED, "a" * 5000, UnknownModel), (DRIFT_DETECTED, "churn\nx", UnknownModel),
])
def test_events_of_another_kind_or_with_hostile_names_are_refused(stores, detail_type, model, error):
    event = MonitoringEventEnvelope.model_validate({"id": "x", "source": "mlops.monitoring",
                                                    "detail-type": detail_type, "detail": {"model": model}})
    with pytest.raises(error) as raised:
        start(stores, event)
    assert len(str(raised.value)) < 300  # a hostile name is never echoed whole
    assert stores.registry.retrains == {}


def test_drift_and_quality_events_have_the_documented_shape():
    report = {"model": "churn", "version": 3, "drifted": True, "dataset_drift": False, "drift_share": 0.25,
              "prediction_drift": False, "samples": 1200, "window_hours": 24,
              "generated_at": "2026-01-31T12:00:05+00:00",
              "report_key": "reports/drift/churn/a.json",
              "features": {"tenure_months": {"test": "ks", "statistic": 0.4, "pvalue": 1e-12, "threshold": 0.0025,
                                             "psi": 0.9, "drifted": True, "samples": 1200},
                           "plan": {"test": "chisquare", "statistic": 1.0, "pvalue": 0.5, "threshold": 0.0025,
                                    "psi": 0.01, "drifted": False},
                           "new": {"test": None, "drifted": False}},
              "prediction": {"test": "ks", "statistic": 0.1, "pvalue": 0.2, "threshold": 0.0025, "psi": 0.0,
                             "drifted": False}}
    event = drift_event(report)
    assert event is not None and event.detail_type == "Model Drift Detected"
    assert set(event.detail) == {"model", "version", "drifted", "prediction_drift", "dataset_drift", "drift_share",
                                 "scores", "samples", "window_hours", "report_key", "time"}
    assert event.detail["drifted"] == ["tenure_months"] and set(event.detail["scores"]) == {
        "tenure_months", "plan", "prediction"}
    assert event.detail["scores"]["tenure_months"]["pvalue"] == 1e-12 and event.time == report["generated_at"]
    assert drift_event({**report, "drifted": False}) is None
    assert drift_event({k: v for k, v in report.items() if k != "report_key"}) is None  # not stored: not announced
    quality = quality_event({"model": "churn", "version": 3, "metric": "roc_auc", "value": 0.6, "threshold": 0.7,
                             "labelled": 412, "window_hours": 24, "degraded": True, "report_key": "reports/q.json"})
    assert quality is not None and quality.detail_type == "Model Quality Degraded"
    assert set(quality.detail) == {"model", "version", "metric", "value", "threshold", "labelled", "window_hours",
                                   "report_key", "time"}
    assert quality_event({"model": "churn", "degraded": False, "report_key": "k"}) is None


# --- the adapters under moto


def test_the_dynamodb_cooldown_lets_one_of_concurrent_claims_through(churn_champion_aws, stores):
    """On moto whose operations run alone, as DynamoDB's transactions are serializable (local.dynamodb, as on the
    local cloud): in-process moto interleaves two transactions' condition checks and writes."""
    from functions.registry.dynamo import registry_store
    from local.dynamodb import atomic_dynamodb

    registry = registry_store()
    results: list[dict] = []
    barrier = threading.Barrier(6)
    uploads = MemoryUploads(stores.objects)

    def deliver(n: int) -> None:
        barrier.wait()
        results.append(on_event(registry, stores.datasets, uploads, event=drift(f"e-{n}"), bucket=PIPELINE_BUCKET,
                                cooldown_hours=6, actor="tester", now=NOW))

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(6)]
    with atomic_dynamodb():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(results) == 6, "every delivery was answered"
    assert sum(r["started"] for r in results) == 1 and len(uploads.copies) == 1
    (entry,) = [e for e in registry.changes("churn") if e.action == "retrain"]
    assert entry.cause is not None and entry.cause["detail"]["model"] == "churn"
    held = registry.get_retrain("churn")
    assert held is not None and held.run_id == next(r["run_id"] for r in results if r["started"])


def test_the_s3_copy_carries_the_retrain_metadata_and_its_run_starts_from_its_version(churn_champion_aws, stores,
                                                                                      pipeline_aws):
    from functions.data.dynamo import dataset_store
    from functions.monitoring.aws import training_uploads
    from functions.registry.dynamo import registry_store

    (dataset,) = dataset_store().list_datasets("churn")
    moto_version = pipeline_aws.s3.head_object(Bucket=PIPELINE_BUCKET, Key=dataset.key)["VersionId"]
    stores.datasets.datasets[("churn", dataset.dataset_id)] = dataset.model_copy(update={"version_id": moto_version})
    result = on_event(registry_store(), stores.datasets, training_uploads(), event=drift(), bucket=PIPELINE_BUCKET,
                      cooldown_hours=6, actor="tester", now=NOW)
    assert result["started"] is True
    head = pipeline_aws.s3.head_object(Bucket=PIPELINE_BUCKET, Key=result["dataset_key"])
    assert head["Metadata"] == {"retrain": "true", "retrain-event": "event-1"}
    assert result["run_id"] == run_id_for("churn", PIPELINE_BUCKET, result["dataset_key"], head["VersionId"])
    assert training_uploads().version_of("datasets/churn/none.csv") is None


def test_the_s3_training_file_with_feedback_is_written_with_the_retrain_metadata(churn_champion_aws, pipeline_aws):
    from functions.monitoring.aws import training_uploads

    version = training_uploads().put(key="datasets/churn/retrain-x.parquet", body=b"PAR1",
                                     metadata={"retrain": "true", "retrain-event": "e"})
    head = pipeline_aws.s3.head_object(Bucket=PIPELINE_BUCKET, Key="datasets/churn/retrain-x.parquet")
    assert head["VersionId"] == version and head["Metadata"] == {"retrain": "true", "retrain-event": "e"}


def test_the_handler_under_moto_starts_a_retrain_from_an_eventbridge_event(churn_champion_aws, pipeline_aws, stores,
                                                                           lambda_context, monkeypatch):
    monkeypatch.setattr(retrain_handler, "feedback_store", FakeFeedbackStore)  # no label: the dataset is copied
    (dataset,) = stores.datasets.list_datasets("churn")  # seeded objects get moto's version ids
    moto_version = pipeline_aws.s3.head_object(Bucket=PIPELINE_BUCKET, Key=dataset.key)["VersionId"]
    pipeline_aws.tables["datasets"].update_item(Key={"pk": "MODEL#churn", "sk": f"DATASET#{dataset.dataset_id}"},
                                                UpdateExpression="SET version_id = :v",
                                                ExpressionAttributeValues={":v": moto_version})
    event = {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": DRIFT_DETECTED,
             "source": "mlops.monitoring", "account": "123456789012", "time": "2026-05-06T10:30:00Z",
             "region": "us-east-1", "resources": [],
             "detail": {"model": "churn", "version": 1, "drifted": ["tenure_months"], "report_key": "r.json"}}
    result = retrain_handler.start_retrain(event, lambda_context)
    assert result["started"] is True, result
    assert retrain_handler.start_retrain({**event, "id": "another"}, lambda_context)["started"] is False
