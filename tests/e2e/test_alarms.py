"""Alarms end to end, on a local cloud of this module's own whose alarm periods are seconds long.

The session's local cloud evaluates alarms on their template periods (a minute and more): shortening them there
would make the other tests' alarms flap. This cloud is `mlops up` as a user starts it, with
MLOPS_ALARM_PERIOD_SCALE making a 60-second period 60 * SCALE seconds, on the template of a deployment whose drift
check runs every minute (drift_schedule_minutes=1: the drift alarm's period is a minute too, so
it follows).

- A canary roll-out whose challenger cannot be loaded: the champion answers every request, the challenger's
  errors put its alarm in ALARM, the alarm's state change reaches the roll-out function, which rolls back.
- A drift check on shifted predictions: the model's drift alarm goes to ALARM, and the "CloudWatch Alarm State
  Change" event reaches a queue subscribed to the default bus.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests
from typer.testing import CliRunner

from cli import main
from cli.main import app
from tests.background import Command, _free_port
from tests.conftest import CHURN_FEATURES
from tests.e2e.conftest import SPEC, csv_bytes, event_queue, register_spec, upload, wait_for, wait_for_capture

pytestmark = pytest.mark.e2e

SCALE = 0.05  # a 60-second period is 3 s: well above the log shipper's batches (0.5 s), which carry the metrics
MODEL = "alarms-e2e"
BOOT_S = 120
runner = CliRunner()


def one_minute_drift_schedule(template: dict) -> dict:
    """The template a deployment with drift_schedule_minutes=1 synthesizes: the drift function's setting, its
    schedule and the platform's drift alarm, which infra/monitoring.py derives from that one setting."""
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        variables = properties.get("Environment", {}).get("Variables", {})
        if "DRIFT_SCHEDULE_MINUTES" in variables:
            variables["DRIFT_SCHEDULE_MINUTES"] = "1"
        if resource["Type"] == "AWS::Events::Rule" and "DriftSchedule" in logical_id:
            properties["ScheduleExpression"] = "rate(1 minute)"
        if resource["Type"] == "AWS::CloudWatch::Alarm" and "DriftDetected" in logical_id:
            properties["Period"] = 60
    return template


@pytest.fixture(scope="module")
def cloud(synthesized_template, tmp_path_factory):
    """`mlops up` on its own ports and state directory, with alarm periods of seconds."""
    root = tmp_path_factory.mktemp("alarms-cloud")
    template = root / "template.json"
    template.write_text(json.dumps(one_minute_drift_schedule(json.loads(synthesized_template.read_text()))))
    workdir, home = root / "up", root / "home"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(MLOPS_HOME=str(home), MLOPS_ALARM_PERIOD_SCALE=str(SCALE))
    mlops = Path(sys.executable).with_name("mlops")
    command = Command([str(mlops), "up", "--warm", "--template", str(template), "--aws-port", str(_free_port()),
                       "--api-port", str(_free_port())], workdir / "mlops-up.log", cwd=workdir, env=env)
    try:
        outputs_file = workdir / ".mlops" / "outputs.json"
        deadline = time.monotonic() + BOOT_S
        while not outputs_file.exists():
            exited = command.process is not None and command.process.poll() is not None
            if command.failure or exited or time.monotonic() > deadline:
                pytest.fail(f"`mlops up` did not start: {command.output()[-3000:]}")
            time.sleep(0.1)
        yield {**json.loads(outputs_file.read_text()), "workdir": str(workdir), "home": str(home)}
    finally:
        command.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def platform(cloud):
    """The cloud's account as the CLI reaches it (plain boto3 clients: platform.client)."""
    from cli.platform import Platform

    return Platform(cloud, boto3.Session(aws_access_key_id="x", aws_secret_access_key="x",
                                         region_name=cloud["Region"]), cloud["Endpoint"])


@pytest.fixture(scope="module")
def cloud_aws(platform):
    return platform.client


@pytest.fixture(scope="module")
def registry(platform):
    return platform.registry


@pytest.fixture(scope="module")
def versions(cloud, cloud_aws) -> tuple[int, int]:
    """Two versions of MODEL waiting for a person's approval (the spec's approval is manual): trained at once."""
    register_spec(cloud_aws, cloud, MODEL, {**SPEC, "approval": "manual"})
    runs = [upload(cloud_aws, cloud, f"datasets/{MODEL}/{seed}.csv", csv_bytes(200, seed=seed)) for seed in (7, 8)]
    for run in runs:
        execution = wait_for(cloud_aws, run, timeout=120)
        assert execution["status"] == "SUCCEEDED", execution.get("cause") or execution
    return 1, 2


@pytest.fixture(scope="module")
def mlops(cloud):
    """`mlops ...` as a user runs it in the directory where `mlops up` wrote its outputs: its output."""
    def run(*args: str) -> str:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(cloud["workdir"])
            patch.setenv("MLOPS_HOME", cloud["home"])  # this cloud, never a developer's own
            patch.setattr(main.console, "width", 200)
            result = runner.invoke(app, list(args))
        assert result.exit_code == 0 and result.exception is None, (result.output, repr(result.exception))
        return result.output

    return run


@pytest.fixture(scope="module")
def champion(versions, mlops) -> int:
    """The first version, approved and made the champion by a person."""
    mlops("models", "approve", MODEL, str(versions[0]))
    mlops("models", "promote", MODEL, str(versions[0]))
    return versions[0]


def predict(platform, instances: list[dict]) -> requests.Response:
    """A prediction through the CLI's API client: a request the key's usage plan throttles (429) is retried, as the
    AWS SDKs do, so a test that asks as fast as it can is not failed by the throttle it meets."""
    return platform.api("POST", f"/v1/models/{MODEL}/predict", {"instances": instances})


def the_alarm(cloud_aws, predicate) -> dict:
    """The one metric alarm of the account that `predicate` picks."""
    (alarm,) = [a for page in cloud_aws("cloudwatch").get_paginator("describe_alarms").paginate()
                for a in page["MetricAlarms"] if predicate(a)]
    return alarm


def test_an_alarm_during_a_rollout_rolls_it_back_and_the_champion_keeps_serving(cloud, platform, cloud_aws, registry,
                                                                               versions, champion, mlops):
    challenger = versions[1]
    mlops("models", "approve", MODEL, str(challenger))
    # The challenger's artifact is replaced: its sha256 no longer matches, so it cannot be loaded.
    artifacts = registry.get_version(MODEL, challenger).artifacts
    cloud_aws("s3").put_object(Bucket=cloud["DataBucketName"], Key=artifacts.onnx_key or artifacts.skops_key,
                               Body=b"not a model")
    mlops("rollout", "start", MODEL, str(challenger), "--share", "0.9", "--bake-minutes", "10")
    errors = the_alarm(cloud_aws, lambda a: a.get("MetricName") == "ModelErrors"
                       and a.get("Dimensions") == [{"Name": "variant", "Value": "challenger"}])
    assert errors["Period"] == 60  # as the template says; this cloud evaluates it over 60 * SCALE seconds

    instance = churn_instance()
    deadline, state, answered = time.monotonic() + 30, "", 0
    while state != "ALARM" and time.monotonic() < deadline:
        response = predict(platform, [instance])
        assert response.status_code == 200, response.text
        assert (response.json()["variant"], response.json()["version"]) == ("champion", champion)
        answered += 1
        (state,) = [a["StateValue"] for a in cloud_aws("cloudwatch").describe_alarms(
            AlarmNames=[errors["AlarmName"]])["MetricAlarms"]]
    assert state == "ALARM", f"{errors['AlarmName']} stayed {state} after {answered} requests"

    deadline, rollout = time.monotonic() + 20, {}
    while time.monotonic() < deadline:
        rollout = json.loads(mlops("rollout", "status", MODEL, "--json"))
        if rollout["status"] != "running":
            break
        time.sleep(0.2)
    assert (rollout["status"], rollout["champion"], rollout["challenger"]) == ("rolled_back", champion, challenger)
    assert errors["AlarmName"] in rollout["end_reason"]
    (entry,) = [e for e in registry.changes(MODEL) if e.action == "rollout_rollback"]
    assert (entry.rollout_id, entry.version, entry.from_version) == (rollout["rollout_id"], challenger, champion)
    assert errors["AlarmName"] in entry.reason and entry.actor == rollout["ended_by"]
    assert registry.get_alias(MODEL, "champion") == champion
    after = predict(platform, [instance])
    assert after.status_code == 200, after.text
    assert (after.json()["variant"], after.json()["version"]) == ("champion", champion)


def test_a_drift_check_puts_the_models_drift_alarm_in_alarm_and_its_change_reaches_the_bus(cloud, platform, cloud_aws,
                                                                                        champion):
    from cli.demo_data import churn_frame

    name = f"{cloud['StackName']}-model-{MODEL}-drift"  # functions/monitoring/alarms.py names it
    received = event_queue(cloud_aws, "drift-alarm-e2e", {
        "source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": [name], "state": {"value": ["ALARM"]}}})
    shifted = churn_frame(rows=300, seed=5, shift=1.0)[CHURN_FEATURES].to_dict("records")
    response = predict(platform, shifted)
    assert response.status_code == 200, response.text
    wait_for_capture(cloud_aws, cloud, MODEL, response.json()["request_id"])
    invoked = cloud_aws("lambda").invoke(FunctionName=cloud["DriftFunctionName"],
                                         Payload=json.dumps({"model": MODEL}).encode())
    assert "FunctionError" not in invoked, invoked["Payload"].read()
    (report,) = json.loads(invoked["Payload"].read())["reports"]
    assert report["drifted"] is True

    # Created by the check in INSUFFICIENT_DATA; in ALARM once the period of its datapoint is complete (and OK
    # again a period later: missing data is not breaching).
    deadline, state = time.monotonic() + 20, ""
    while state != "ALARM" and time.monotonic() < deadline:
        (alarm,) = cloud_aws("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
        state = alarm["StateValue"]
        time.sleep(0.1)
    assert state == "ALARM", alarm
    assert alarm["Period"] == 60 and alarm["MetricName"] == "ModelDriftDetected"
    events = received(1, timeout=20)  # one, unless the scheduled check (every minute here) drifted again since
    assert events, f"no state change of {name} reached the queue"
    event = events[0]
    assert event["source"] == "aws.cloudwatch" and event["detail"]["alarmName"] == name
    assert event["detail"]["state"]["value"] == "ALARM"
    assert event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["name"] == "ModelDriftDetected"


def churn_instance() -> dict:
    return {"tenure_months": 12.0, "monthly_charges": 70.0, "support_calls": 2, "plan": "basic"}
