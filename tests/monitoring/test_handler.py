"""The drift check Lambda: scheduled (every champion) or direct ({"model": x}), its reports and metrics."""

from datetime import datetime, timedelta, timezone

import pytest

from functions.errors import InvalidInput, NoChampion, NotFound, UnknownModel
from functions.monitoring import handler
from functions.registry.store import RegistryStore
from functions.spec import ModelSpec
from tests.monitoring.helpers import capture, shifted_instances
from tests.serving.events import emf_documents

SCHEDULED = {
    "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
    "source": "aws.events", "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/drift"], "detail": {},
}


def recent() -> datetime:
    """A capture time inside the handler's window (it checks the hours before its own clock)."""
    return datetime.now(timezone.utc) - timedelta(minutes=5)


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


def test_a_direct_check_reports_one_model_and_emits_its_metrics(churn_champion, pipeline_aws, lambda_context,
                                                                 capsys):
    capture(pipeline_aws, recent(), shifted_instances())
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


def test_the_schedule_checks_every_model_with_a_champion(churn_champion, champion_factory, churn_spec, pipeline_aws,
                                                         lambda_context, capsys):
    registry = RegistryStore(pipeline_aws.tables["registry"])
    quiet = ModelSpec.model_validate({**churn_spec.model_dump(), "name": "churn-quiet"})
    champion_factory(quiet, churn_champion.rows)  # a champion without traffic
    registry.put_spec(ModelSpec.model_validate({**churn_spec.model_dump(), "name": "idle"}))  # no champion
    capture(pipeline_aws, recent(), shifted_instances())
    capture(pipeline_aws, recent(), shifted_instances(), model="idle")
    capsys.readouterr()

    result = handler.check_drift(SCHEDULED, lambda_context)

    assert set(result) == {"reports"}
    by_model = {summary["model"]: summary for summary in result["reports"]}
    assert set(by_model) == {"churn", "churn-quiet"}
    assert by_model["churn"]["drifted"] is True and by_model["churn"]["samples"] == 90
    assert by_model["churn-quiet"]["drifted"] is False and by_model["churn-quiet"]["samples"] == 0
    assert "no captured requests" in by_model["churn-quiet"]["note"]
    assert {summary["model"] for summary in handler.check_drift({}, lambda_context)["reports"]} == set(by_model)

    metrics = metric_documents(capsys.readouterr().out)
    first_run = metrics["DriftDetected"][0]
    assert dimensions(first_run) == [["service"]]
    assert sorted(first_run["DriftDetected"]) == [0.0, 1.0] and sorted(first_run["DriftSamples"]) == [0.0, 90.0]
    assert {d["model"] for d in metrics["DriftScore"]} == {"churn", "churn-quiet"}


def test_one_failing_model_does_not_hide_the_others(churn_champion, churn_spec, pipeline_aws, lambda_context):
    registry = RegistryStore(pipeline_aws.tables["registry"])
    broken = ModelSpec.model_validate({**churn_spec.model_dump(), "name": "broken"})
    registry.put_spec(broken)
    registry.put_version("broken", 1, {"dataset_id": "f" * 64, "signature": [], "task": "classification"})
    registry.set_alias("broken", "champion", 1, expected=None, reason="test")  # its dataset is not registered
    capture(pipeline_aws, recent(), shifted_instances())

    result = handler.check_drift({}, lambda_context)

    assert [summary["model"] for summary in result["reports"]] == ["churn"]
    (failure,) = result["failed"]
    assert failure["model"] == "broken" and "no dataset" in failure["error"]
    with pytest.raises(NotFound, match="no dataset"):
        handler.check_drift({"model": "broken"}, lambda_context)  # asked for by name: its failure is the answer


@pytest.mark.parametrize("event", [{"model": 5}, {"model": ["churn"]}, {"model": {"name": "churn"}},
                                   {"model": True}, "churn", ["churn"], 7])
def test_a_bad_event_is_invalid_input(event, lambda_context):
    with pytest.raises(InvalidInput, match='takes {"model": "<name>"}'):
        handler.check_drift(event, lambda_context)


def test_a_check_of_an_unknown_model_or_one_without_champion_raises(pipeline_aws, lambda_context, churn_spec):
    with pytest.raises(UnknownModel):
        handler.check_drift({"model": "nosuch"}, lambda_context)
    with pytest.raises(UnknownModel) as raised:
        handler.check_drift({"model": "../" + "x" * 10_000}, lambda_context)
    assert len(raised.value.message) < 200

    RegistryStore(pipeline_aws.tables["registry"]).put_spec(churn_spec)
    with pytest.raises(NoChampion):
        handler.check_drift({"model": "churn"}, lambda_context)
    assert handler.check_drift({}, lambda_context) == {"reports": []}
