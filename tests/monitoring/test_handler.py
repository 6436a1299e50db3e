"""The drift check Lambda: scheduled (every champion) or direct ({"model": x}), its reports and metrics.

The handler's cases run over the in-memory stores (`memory_handler`); under moto, a direct check
proves the wiring and a scheduled one that a failing model, whether its lineage is broken or S3
is busy, does not hide the others.
"""

from datetime import UTC, datetime, timedelta

import pytest

from functions.data.dynamo import dataset_store
from functions.errors import InvalidInput, NoChampion, NotFound, RetryableError, UnknownModel
from functions.monitoring import handler
from functions.registry.dynamo import registry_store
from functions.spec import ModelSpec
from functions.storage.s3 import data_objects
from tests.conftest import client_error
from tests.fakes import throttled
from tests.monitoring.helpers import capture, serve_copy, shifted_instances
from tests.serving.events import emf_documents

SCHEDULED = {
    "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
    "source": "aws.events", "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/drift"], "detail": {},
}


def recent() -> datetime:
    """A capture time inside the handler's window (it checks the hours before its own clock)."""
    return datetime.now(UTC) - timedelta(minutes=5)


def metric_documents(out: str) -> dict[str, list[dict]]:
    """EMF documents by metric name."""
    found: dict[str, list[dict]] = {}
    for document in emf_documents(out):
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                found.setdefault(metric["Name"], []).append(document)
    return found


def dimensions(document: dict) -> list[list[str]]:
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    return directive["Dimensions"]


def test_a_direct_check_reports_one_model_and_emits_its_metrics(churn_champion_aws, pipeline_aws, lambda_context,
                                                                 capsys):
    capture(data_objects(), recent(), shifted_instances())
    capsys.readouterr()

    result = handler.check_drift({"model": "churn"}, lambda_context)

    (summary,) = result["reports"]
    assert set(result) == {"reports"}
    assert summary["model"] == "churn" and summary["version"] == 1
    assert summary["drifted"] is True and summary["samples"] == 90
    assert summary["report_key"].startswith("reports/drift/churn/")
    pipeline_aws.s3.head_object(Bucket=pipeline_aws.bucket, Key=summary["report_key"])

    metrics = metric_documents(capsys.readouterr().out)
    (service,) = metrics["DriftDetected"]
    assert metrics["DriftSamples"] == [service]
    # The alarm watches Mlops/DriftDetected with service=<its service> only: no other dimension may be added.
    assert dimensions(service) == [["service"]] and "model" not in service
    assert service["DriftDetected"] == [1.0] and service["DriftSamples"] == [90.0]
    (score,) = metrics["DriftScore"]
    assert dimensions(score) and all("model" in dimension_set for dimension_set in dimensions(score))
    assert score["model"] == "churn" and score["DriftScore"][0] > 0.2
    assert score["_aws"]["CloudWatchMetrics"][0]["Namespace"] == service["_aws"]["CloudWatchMetrics"][0]["Namespace"]


def test_the_schedule_checks_every_model_with_a_champion(churn_champion, churn_spec, stores, memory_handler,
                                                         lambda_context, capsys):
    dataset = stores.datasets.get_dataset("churn", churn_champion.dataset_id)
    serve_copy(stores.registry, stores.datasets, churn_champion, dataset, "churn-quiet")  # a champion, no traffic
    stores.registry.put_spec(ModelSpec.model_validate({**churn_spec.model_dump(), "name": "idle"}))  # no champion
    capture(stores.objects, recent(), shifted_instances())
    capture(stores.objects, recent(), shifted_instances(), model="idle")
    capsys.readouterr()

    result = memory_handler(SCHEDULED, lambda_context)

    assert set(result) == {"reports"}
    by_model = {summary["model"]: summary for summary in result["reports"]}
    assert set(by_model) == {"churn", "churn-quiet"}
    assert by_model["churn"]["drifted"] is True and by_model["churn"]["samples"] == 90
    assert by_model["churn-quiet"]["drifted"] is False and by_model["churn-quiet"]["samples"] == 0
    assert "no captured requests" in by_model["churn-quiet"]["note"]
    assert {summary["model"] for summary in memory_handler({}, lambda_context)["reports"]} == set(by_model)

    metrics = metric_documents(capsys.readouterr().out)
    first_run = metrics["DriftDetected"][0]
    assert dimensions(first_run) == [["service"]]
    assert sorted(first_run["DriftDetected"]) == [0.0, 1.0] and sorted(first_run["DriftSamples"]) == [0.0, 90.0]
    assert {d["model"] for d in metrics["DriftScore"]} == {"churn", "churn-quiet"}


def test_one_failing_model_does_not_hide_the_others(churn_champion_aws, stores, lambda_context, monkeypatch):
    dataset = stores.datasets.get_dataset("churn", churn_champion_aws.dataset_id)
    serve_copy(registry_store(), dataset_store(), churn_champion_aws, None, "broken")  # its dataset is not registered
    serve_copy(registry_store(), dataset_store(), churn_champion_aws, dataset, "busy")
    objects = data_objects()
    for model in ("busy", "churn"):
        capture(objects, recent(), shifted_instances(), model=model)
    # S3 throttles the listing of busy's captures (boto3's own retries are spent).
    list_objects = objects.client.list_objects_v2

    def listing(**kwargs):
        if kwargs["Prefix"].startswith("captures/busy/"):
            raise client_error("SlowDown", "ListObjectsV2")
        return list_objects(**kwargs)

    monkeypatch.setattr(objects.client, "list_objects_v2", listing)

    result = handler.check_drift({}, lambda_context)

    assert [summary["model"] for summary in result["reports"]] == ["churn"]
    assert result["reports"][0]["drifted"] is True
    failed = {failure["model"]: failure["error"] for failure in result["failed"]}
    assert set(failed) == {"broken", "busy"}
    assert "no dataset" in failed["broken"] and "try again" in failed["busy"]
    # Asked for by name, a model's failure is the answer.
    with pytest.raises(NotFound, match="no dataset"):
        handler.check_drift({"model": "broken"}, lambda_context)
    with pytest.raises(RetryableError):
        handler.check_drift({"model": "busy"}, lambda_context)


@pytest.mark.parametrize("operation", ["list_keys", "get_bytes"])
def test_busy_storage_fails_only_the_model_it_hits(churn_champion, stores, memory_handler, lambda_context, capsys,
                                                   operation):
    dataset = stores.datasets.get_dataset("churn", churn_champion.dataset_id)
    serve_copy(stores.registry, stores.datasets, churn_champion, dataset, "churn-copy")
    for model in ("churn", "churn-copy"):
        capture(stores.objects, recent(), shifted_instances(), model=model)
    stores.objects.faults.inject(operation, throttled("reading captures"))  # models are checked by name: churn first
    capsys.readouterr()

    result = memory_handler(SCHEDULED, lambda_context)

    (failure,) = result["failed"]
    assert failure["model"] == "churn" and "try again" in failure["error"]
    (summary,) = result["reports"]
    assert summary["model"] == "churn-copy" and summary["drifted"] is True and summary["samples"] == 90
    assert stores.objects.keys("reports/drift/churn/") == []
    assert {d["model"] for d in metric_documents(capsys.readouterr().out)["DriftScore"]} == {"churn-copy"}


@pytest.mark.parametrize("event", [{"model": 5}, {"model": ["churn"]}, {"model": {"name": "churn"}},
                                   {"model": True}, "churn", ["churn"], 7])
def test_a_bad_event_is_invalid_input(event, lambda_context):
    with pytest.raises(InvalidInput, match='takes {"model": "<name>"}'):
        handler.check_drift(event, lambda_context)


def test_a_check_of_an_unknown_model_or_one_without_champion_raises(stores, memory_handler, lambda_context,
                                                                    churn_spec):
    with pytest.raises(UnknownModel):
        memory_handler({"model": "nosuch"}, lambda_context)
    with pytest.raises(UnknownModel) as raised:
        memory_handler({"model": "../" + "x" * 10_000}, lambda_context)
    assert len(raised.value.message) < 200

    stores.registry.put_spec(churn_spec)
    with pytest.raises(NoChampion):
        memory_handler({"model": "churn"}, lambda_context)
    assert memory_handler({}, lambda_context) == {"reports": []}
