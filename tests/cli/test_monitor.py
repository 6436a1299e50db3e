"""`mlops monitor run|report` and `mlops dashboard`, over in-memory ports and moto's CloudWatch."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from cli import dashboard, main, monitor
from cli.platform import Platform
from tests.fakes import MemoryObjectStore

runner = CliRunner()
HOSTILE = "<script>x</script>"
KEY = "reports/drift/churn/2026-05-06T10:30:00.000000Z.json"
REPORT = {"model": "churn", "version": 2, "samples": 120, "dataset_drift": False, "prediction_drift": False,
          "prediction": None, "drifted": True,
          "features": {"tenure": {"test": "ks", "statistic": 0.4, "pvalue": 1e-9, "threshold": 0.0025, "psi": 0.5,
                                  "samples": 120, "drifted": True},
                       HOSTILE: {"test": "chisquare", "statistic": 1.0, "pvalue": 0.5, "threshold": 0.0025,
                                 "psi": 0.01, "samples": 120, "drifted": False}}}


@pytest.fixture
def mlops(monkeypatch, tmp_path) -> Iterator:
    objects = MemoryObjectStore("data")
    platform = Platform({"Region": "us-east-1", "DashboardName": "platform", "DataBucketName": "data"},
                        boto3.Session(region_name="us-east-1"))
    platform.__dict__.update(objects=objects)
    answers: dict = {"reports": [{"model": "churn", "report_key": KEY}]}
    monkeypatch.setattr(Platform, "check_drift", lambda self, model=None: answers)
    monkeypatch.setattr(main, "platform", lambda stack: platform)
    monkeypatch.setattr(monitor.console, "width", 300)
    monkeypatch.setattr(main.err, "width", 300)
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str):
        result = runner.invoke(main.app, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    invoke.objects, invoke.answers, invoke.platform = objects, answers, platform
    yield invoke


def test_monitor_run_prints_the_summary_and_a_table(mlops):
    mlops.objects.put_json(KEY, REPORT)

    result = mlops("monitor", "run", "churn")

    assert result.exit_code == 0, result.output
    assert "churn v2: 1 of 2 features drifted; dataset drift: no; prediction drift: not checked" in result.output
    assert "tenure" in result.output and HOSTILE in result.output  # rich markup escaped: shown as it is
    assert KEY.removesuffix(".json") + ".html" in result.output
    assert mlops("drift", "churn").output == result.output  # the old name, the same command
    assert json.loads(mlops("monitor", "run", "--json").output) == mlops.answers


def test_monitor_run_reports_failed_models_and_refuses_bad_names(mlops):
    mlops.answers.clear()
    mlops.answers.update({"reports": [], "failed": [{"model": "churn", "error": "throttled"}]})
    result = mlops("monitor", "run")
    assert result.exit_code == 1 and "churn: the check failed: throttled" in result.output
    bad = mlops("monitor", "run", "Not A Model")
    assert bad.exit_code == 1 and "model names are lowercase" in bad.output
    mlops.answers.update({"reports": [], "failed": []})
    assert "nothing to check" in mlops("monitor", "run").output


def test_monitor_report_fetches_the_latest_page(mlops, tmp_path):
    for stamp in ("2026-05-06T09:00:00.000000Z", "2026-05-06T10:30:00.000000Z"):
        mlops.objects.put_bytes(f"reports/drift/churn/{stamp}.html", f"<html>{stamp}</html>".encode())
    mlops.objects.put_bytes("reports/drift/churn-two/2026-05-07T00:00:00.000000Z.html", b"<html>other</html>")

    result = mlops("monitor", "report", "churn")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "drift-churn.html").read_text() == "<html>2026-05-06T10:30:00.000000Z</html>"

    out = tmp_path / "pages"
    out.mkdir()
    assert mlops("monitor", "report", "churn", "--out", str(out)).exit_code == 0
    assert (out / "drift-churn.html").exists()


def test_monitor_report_opens_the_page_with_open(mlops, monkeypatch, tmp_path):
    mlops.objects.put_bytes("reports/drift/churn/2026-05-06T09:00:00.000000Z.html", b"<html></html>")
    opened = []
    monkeypatch.setattr(monitor.webbrowser, "open", opened.append)
    assert mlops("monitor", "report", "churn", "--out", "page.html", "--open").exit_code == 0
    assert opened == [(tmp_path / "page.html").resolve().as_uri()]


@pytest.mark.parametrize(("args", "message"), [
    (["churn"], "no drift report of 'churn' yet"),
    (["../etc"], "model names are lowercase"),
    (["churn", "--out", "/nonexistent/dir/page.html"], None),
])
def test_monitor_report_unhappy_paths(mlops, args, message):
    if message is None:
        mlops.objects.put_bytes("reports/drift/churn/2026-05-06T09:00:00.000000Z.html", b"<html></html>")
        message = "cannot write /nonexistent/dir/page.html"
    result = mlops("monitor", "report", *args)
    assert result.exit_code == 1 and message in result.output


# --- the dashboard -------------------------------------------------------------------------------------------


BODY = {"widgets": [
    {"type": "metric", "properties": {"title": "Predictions", "metrics": [
        ["Mlops", "Predictions", "model", "churn", {"stat": "Sum"}],
        [".", "Errors", ".", ".", {"stat": "Sum", "yAxis": "right"}],
        ["Mlops", "Hidden", "model", "churn", {"visible": False, "id": "hidden"}]]}},
    {"type": "metric", "properties": {"title": "Nothing here", "metrics": [["Mlops", "Never", {"stat": "Sum"}]]}},
    {"type": "alarm", "properties": {"title": "Alarms", "alarms": [
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:drift"]}},
    {"type": "text", "properties": {"markdown": "hello"}},
]}


def test_metric_queries_follow_the_dashboard_body_format():
    queries = dashboard.metric_queries(BODY["widgets"][0]["properties"], 300, prefix="q")
    assert [q["Id"] for q in queries] == ["q0", "q1", "hidden"]
    assert queries[1]["MetricStat"] == {"Metric": {"Namespace": "Mlops", "MetricName": "Errors",
                                                   "Dimensions": [{"Name": "model", "Value": "churn"}]},
                                        "Period": 300, "Stat": "Sum"}
    assert queries[1]["_right"] is True and queries[2]["ReturnData"] is False
    assert queries[2]["MetricStat"]["Stat"] == "Average"
    expression = dashboard.metric_queries({"metrics": [[{"expression": "FILL(a, 0)", "label": "x"}], "junk", []]},
                                          60, prefix="e")
    assert expression == [{"Id": "e0", "ReturnData": True, "Label": "x", "Expression": "FILL(a, 0)", "_right": False}]
    (search,) = dashboard.metric_queries({"metrics": [[{"expression": "SEARCH('{Mlops} x', 'Sum', 60)"}]]}, 120, "s")
    assert search["Period"] == 120


@mock_aws
def test_the_dashboard_draws_each_metric_widget_to_a_png(mlops, tmp_path):
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    cloudwatch.put_dashboard(DashboardName="platform", DashboardBody=json.dumps(BODY))
    cloudwatch.put_metric_alarm(AlarmName="drift", Namespace="Mlops", MetricName="Drift", Statistic="Maximum",
                                Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    cloudwatch.set_alarm_state(AlarmName="drift", StateValue="ALARM", StateReason="test")
    now = datetime.now(UTC)
    cloudwatch.put_metric_data(Namespace="Mlops", MetricData=[
        {"MetricName": name, "Dimensions": [{"Name": "model", "Value": "churn"}], "Value": float(i),
         "Timestamp": now - timedelta(minutes=i)} for i in range(1, 20) for name in ("Predictions", "Errors")])
    mlops.platform.__dict__["session"] = boto3.Session(region_name="us-east-1")

    result = mlops("dashboard", "--out", str(tmp_path / "board"), "--hours", "1")

    assert result.exit_code == 0, result.output
    pngs = sorted((tmp_path / "board").glob("*.png"))
    assert [p.name for p in pngs] == ["01-predictions.png", "02-nothing-here.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    page = (tmp_path / "board" / "dashboard.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "not drawn here" in page
    assert 'drift</td><td class="ALARM">' in page
    widgets = dashboard.read_widgets(cloudwatch, BODY, hours=1)
    assert [len(s.values) for s in widgets[0].series] == [19, 19]  # the hidden one not drawn
    assert widgets[0].series[1].right and not widgets[1].has_data
    assert widgets[2].alarms == [("drift", "ALARM")]


def test_the_dashboard_needs_a_dashboard(mlops):
    mlops.platform.outputs.pop("DashboardName")
    result = mlops("dashboard")
    assert result.exit_code == 1 and "no dashboard" in result.output


def test_draw_of_an_empty_widget_is_still_a_png():
    png = dashboard.draw(dashboard.Widget(title=HOSTILE, kind="metric"))
    assert png.startswith(b"\x89PNG")
