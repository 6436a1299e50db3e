"""`mlops runs` and `mlops models show`: every run with how it ended and why, models with no spec included
(an upload for such a model makes a run that fails, and the user must see why)."""

from collections.abc import Iterator

import boto3
import pytest
from typer.testing import CliRunner

from cli import main
from cli.platform import Platform
from functions.records import Run
from tests.fakes import MemoryRegistryStore

runner = CliRunner()
NO_SPEC = "no model spec named 'nobody' is registered; create it with `mlops models create nobody --spec FILE`"


def run(model: str, run_id: str, started: str, **fields) -> Run:
    return Run(model=model, run_id=run_id, bucket="data", key=f"datasets/{model}/train.csv", version_id="v1",
               code_version="c1", started_at=started, **fields)


@pytest.fixture
def registry(churn_spec) -> MemoryRegistryStore:
    store = MemoryRegistryStore()
    store.put_spec(churn_spec)
    store.start_run(run("churn", "churn-1", "2026-01-02T10:00:00.123456+00:00", status="SUCCEEDED",
                        ended_at="2026-01-02T10:01:00+00:00", dataset_id="d" * 64, model_version=3, promoted=True,
                        metrics={"roc_auc": 0.81}))
    store.start_run(run("nobody", "nobody-1", "2026-01-03T09:00:00+00:00", status="FAILED",
                        ended_at="2026-01-03T09:00:02+00:00", failed_step="RegisterDataset", error_type="UnknownModel",
                        failure_reason=NO_SPEC))
    return store


@pytest.fixture
def mlops(registry, monkeypatch) -> Iterator:
    platform = Platform({"Region": "us-east-1"}, boto3.Session(region_name="us-east-1"))
    platform.__dict__["registry"] = registry  # the registry port, in memory
    monkeypatch.setattr(main, "platform", lambda stack: platform)
    monkeypatch.setattr(main.console, "width", 400)  # a cell's text on one line, as the assertions read it

    def invoke(*args: str):
        result = runner.invoke(main.app, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    invoke.registry = registry
    yield invoke


def test_runs_list_shows_every_models_runs_latest_first_with_the_failure_and_its_reason(mlops) -> None:
    result = mlops("runs", "list")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "-1 " in line]
    assert len(rows) == 2 and "nobody-1" in rows[0] and "churn-1" in rows[1], "the latest first"
    assert "FAILED" in rows[0] and "RegisterDataset" in rows[0] and NO_SPEC in rows[0]
    assert "2026-01-03 09:00:00  09:00:02" in rows[0], "ended the same day: its time"
    assert "SUCCEEDED" in rows[1] and "v3" in rows[1] and "dddddddd " in rows[1]


def test_in_a_narrow_terminal_the_reasons_follow_the_table_whole(mlops, monkeypatch) -> None:
    monkeypatch.setattr(main.console, "width", 80)
    output = " ".join(mlops("runs", "list").output.split())  # the reason may wrap: its words, in order
    assert f"nobody-1: {NO_SPEC}" in output


def test_runs_list_of_one_model_and_of_a_model_without_runs(mlops) -> None:
    result = mlops("runs", "list", "nobody")
    assert result.exit_code == 0 and "nobody-1" in result.output and "churn-1" not in result.output
    assert "No runs of model 'ghost'" in mlops("runs", "list", "ghost").output


def test_runs_show_tells_one_run_in_full(mlops) -> None:
    result = mlops("runs", "show", "nobody", "nobody-1")
    assert result.exit_code == 0, result.output
    for expected in ("FAILED", "RegisterDataset", "UnknownModel", NO_SPEC, "s3://data/datasets/nobody/train.csv",
                     "(version v1)", "c1"):
        assert expected in result.output
    shown = mlops("runs", "show", "churn", "churn-1").output
    assert "v3" in shown and "roc_auc=0.81" in shown and "True" in shown and "warning" not in shown
    mlops.registry.start_run(run("churn", "churn-2", "2026-01-04T00:00:00+00:00", status="SUCCEEDED", model_version=3,
                                 duplicate_of="churn-1", warnings=["10 of 210 rows are exact duplicates"]))
    shown = mlops("runs", "show", "churn", "churn-2").output
    assert "duplicate of" in shown and "churn-1 (the same data" in shown
    assert "10 of 210 rows are exact duplicates" in shown


def test_runs_show_of_an_unknown_run_is_one_clear_line(mlops) -> None:
    result = mlops("runs", "show", "nobody", "nobody-9")
    assert result.exit_code == 1 and "run 'nobody-9' of model 'nobody' does not exist" in result.output


def test_models_show_of_a_model_with_runs_but_no_spec_shows_the_runs_and_says_the_spec_is_missing(mlops) -> None:
    result = mlops("models", "show", "nobody")
    assert result.exit_code == 0, result.output
    assert "no model spec is registered" in result.output and "mlops models create nobody" in result.output
    assert "nobody-1" in result.output and "RegisterDataset" in result.output and NO_SPEC in result.output


def test_models_show_of_a_model_with_nothing_is_still_an_error(mlops) -> None:
    result = mlops("models", "show", "ghost")
    assert result.exit_code == 1 and "no model spec named 'ghost'" in result.output


def test_models_show_and_list_of_a_model_with_a_spec(mlops) -> None:
    shown = mlops("models", "show", "churn")
    assert shown.exit_code == 0 and "churn-1" in shown.output and "SUCCEEDED" in shown.output
    listed = mlops("models", "list")
    assert "churn" in listed.output and "Runs of models with no spec: nobody" in listed.output


@pytest.fixture(params=["memory", "dynamo"])
def store(request, boto_session):
    """The registry port on both backends: the in-memory fake and the DynamoDB adapter (moto)."""
    if request.param == "memory":
        yield MemoryRegistryStore()
        return
    from moto import mock_aws

    from functions.registry.dynamo import DynamoRegistryStore

    with mock_aws():
        table = boto_session.resource("dynamodb").create_table(
            TableName="registry", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        yield DynamoRegistryStore(table)


def test_the_models_with_runs_are_listed_with_or_without_a_spec(store, churn_spec) -> None:
    assert store.list_run_models() == []
    store.put_spec(churn_spec)  # a spec, no run yet
    store.put_spec(churn_spec.model_copy(update={"name": "idle"}))
    store.start_run(run("zeta", "zeta-1", "2026-01-01T00:00:00+00:00"))
    store.start_run(run("churn", "churn-1", "2026-01-01T00:00:00+00:00"))
    store.start_run(run("churn", "churn-2", "2026-01-02T00:00:00+00:00"))
    store.version_for_run("churn", "churn-2")  # other items of the model are not runs
    assert store.list_run_models() == ["churn", "zeta"]
