"""`mlops monitor run|report` and `mlops dashboard` against the local cloud: predictions, a check, its pages."""

import gzip
import time
from html.parser import HTMLParser

import pytest

from cli import monitor
from cli.demo_data import churn_frame
from tests.conftest import CHURN_FEATURES
from tests.e2e.conftest import DRIFT_MODEL
from tests.e2e.test_cli import mlops  # noqa: F401 - the fixture: `mlops ...` against the session's cloud

pytestmark = pytest.mark.e2e


def captured(aws, outputs, model: str, request_id: str, timeout: float = 60) -> None:
    """Wait until Firehose (which delivers in batches) has written the request's capture."""
    s3, deadline = aws("s3"), time.monotonic() + timeout
    while time.monotonic() < deadline:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=outputs["DataBucketName"],
                                                              Prefix=f"captures/{model}/")
        for item in (i for page in pages for i in page.get("Contents", [])):
            body = s3.get_object(Bucket=outputs["DataBucketName"], Key=item["Key"])["Body"].read()
            if request_id.encode() in (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body):
                return
        time.sleep(0.5)
    pytest.fail(f"the capture of {request_id} was not delivered within {timeout} s")


@pytest.fixture(scope="module")
def shifted_traffic(drift_model, api, aws, local_cloud) -> None:
    rows = churn_frame(rows=120, seed=8, shift=1.0)[CHURN_FEATURES].to_dict("records")
    response = api("POST", f"/v1/models/{drift_model}/predict", json={"instances": rows})
    assert response.status_code == 200, response.text
    captured(aws, local_cloud, drift_model, response.json()["request_id"])


def metrics_arrived(aws, name: str, timeout: float = 60) -> None:
    """Wait until CloudWatch holds a data point of `name` (Mlops, service=monitoring) from the last hour: metrics
    travel as EMF log lines, shipped in batches, as on AWS where they show after a delay too."""
    from datetime import UTC, datetime, timedelta

    cloudwatch, deadline = aws("cloudwatch"), time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = datetime.now(UTC)
        points = cloudwatch.get_metric_statistics(
            Namespace="Mlops", MetricName=name, Dimensions=[{"Name": "service", "Value": "monitoring"}],
            StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=1), Period=3600,
            Statistics=["SampleCount"])["Datapoints"]
        if points:
            return
        time.sleep(0.5)
    pytest.fail(f"no {name} data point reached CloudWatch within {timeout} s")


def test_monitor_run_report_and_dashboard(shifted_traffic, mlops, tmp_path, monkeypatch, aws):  # noqa: F811
    monkeypatch.setattr(monitor.console, "width", 200)  # a table cell's text on one line, as the assertions read it
    ran = mlops("monitor", "run", DRIFT_MODEL)
    assert ran.exit_code == 0, ran.output
    assert "features drifted; dataset drift:" in ran.output and "tenure_months" in ran.output

    page = tmp_path / "report.html"
    fetched = mlops("monitor", "report", DRIFT_MODEL, "--out", str(page))
    assert fetched.exit_code == 0, fetched.output
    html = page.read_text()
    HTMLParser().feed(html)
    assert "features drifted" in html and html.count("<svg") >= 1  # tenure_months drifted: its plot

    metrics_arrived(aws, "DriftSamples")
    board = tmp_path / "board"
    drawn = mlops("dashboard", "--out", str(board), "--hours", "1")
    assert drawn.exit_code == 0, drawn.output
    pngs = sorted(board.glob("*.png"))
    assert pngs and all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    assert (board / "dashboard.html").read_text().count("data:image/png;base64,") == len(pngs)
    drift_row = next(line for line in drawn.output.splitlines() if "│ Drift " in line)
    assert int(drift_row.split("│")[3]) > 0  # points: the check's DriftDetected and DriftSamples


def test_monitor_report_of_a_model_never_checked_says_so(local_cloud, mlops):  # noqa: F811
    result = mlops("monitor", "report", "never-checked")
    assert result.exit_code == 1 and "no drift report of 'never-checked' yet" in result.output
