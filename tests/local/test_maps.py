"""The local cloud's Distributed Map (local/maps.py): an integer ToleratedFailurePercentage parses, tolerated
failures are enforced, and the ResultWriter reads its bucket from the state's input and writes the results."""

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local import maps, patches
from local.runtime import LambdaRuntime
from tests.local.conftest import WAIT_S

ROLE = "arn:aws:iam::123456789012:role/machine"
BUCKET = "map-results"


@pytest.fixture
def aws() -> Iterator[Any]:
    runtime = LambdaRuntime({}, preload=[])
    patches.apply(runtime)
    try:
        with mock_aws():
            yield lambda service: boto3.client(service, region_name="us-east-1")
    finally:
        patches.remove()
        runtime.stop()


def distributed(tolerance: dict[str, Any]) -> str:
    """A Distributed Map over the input's items, each failing when it says so, its results written to S3."""
    processor = {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "Check",
                 "States": {"Check": {"Type": "Choice", "Choices": [{"Variable": "$.fail", "BooleanEquals": True,
                                                                     "Next": "Broken"}], "Default": "Fine"},
                            "Broken": {"Type": "Fail", "Error": "Broken", "Cause": "asked to fail"},
                            "Fine": {"Type": "Pass", "End": True}}}
    return json.dumps({"StartAt": "Items", "States": {"Items": {
        "Type": "Map", "ItemsPath": "$.items", "ItemProcessor": processor, "Label": "items", "End": True,
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                         "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "States.Format('out/{}', $.name)"}},
        **tolerance}}})


def execute(aws: Any, definition: str, payload: dict[str, Any]) -> dict[str, Any]:
    sfn = aws("stepfunctions")
    arn = sfn.create_state_machine(name=f"m{time.monotonic_ns()}", definition=definition,
                                   roleArn=ROLE)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError("the execution did not end")


ITEMS = {"bucket": BUCKET, "name": "run-1",
         "items": [{"fail": False}, {"fail": True}, {"fail": False}, {"fail": False}]}


def test_an_integer_tolerated_failure_percentage_parses_and_tolerates_up_to_it(aws):
    aws("s3").create_bucket(Bucket=BUCKET)
    assert execute(aws, distributed({"ToleratedFailurePercentage": 25}), ITEMS)["status"] == "SUCCEEDED"


@pytest.mark.parametrize("tolerance", [{}, {"ToleratedFailurePercentage": 20}, {"ToleratedFailureCount": 0}])
def test_more_failed_items_than_tolerated_fail_the_map_run(aws, tolerance):
    aws("s3").create_bucket(Bucket=BUCKET)
    execution = execute(aws, distributed(tolerance), ITEMS)
    assert execution["status"] == "FAILED" and execution["error"] == "States.ExceedToleratedFailureThreshold"


def test_the_result_writer_takes_its_bucket_from_the_input_and_writes_each_execution(aws):
    s3 = aws("s3")
    s3.create_bucket(Bucket=BUCKET)
    assert execute(aws, distributed({"ToleratedFailureCount": 1}), ITEMS)["status"] == "SUCCEEDED"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="out/run-1/")["Contents"]]
    (manifest,) = [k for k in keys if k.endswith("manifest.json")]
    files = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest)["Body"].read())["ResultFiles"]
    succeeded = json.loads(s3.get_object(Bucket=BUCKET, Key=files["SUCCEEDED"][0]["Key"])["Body"].read())
    failed = json.loads(s3.get_object(Bucket=BUCKET, Key=files["FAILED"][0]["Key"])["Body"].read())
    assert [json.loads(e["Input"]) for e in succeeded] == [{"fail": False}] * 3
    assert all(e["Status"] == "SUCCEEDED" and json.loads(e["Output"]) == {"fail": False} for e in succeeded)
    assert [(json.loads(e["Input"]), e["Status"]) for e in failed] == [({"fail": True}, "FAILED")]


@pytest.mark.parametrize("failed, total, count, percentage, over", [
    (0, 4, 0, 0.0, False), (1, 4, 0, 0.0, True),  # nothing declared: any failure
    (1, 4, 0, 25.0, False), (2, 4, 0, 25.0, True),  # a share
    (1, 4, 1, 0.0, False), (2, 4, 1, 0.0, True),  # a count
    (2, 4, 1, 75.0, True),  # either one exceeded
])
def test_the_tolerance_is_a_count_or_a_share(failed, total, count, percentage, over):
    assert maps.exceeded(failed, total, count, percentage) is over


def test_an_integer_percentage_is_parsed_as_the_same_number():
    program, _ = maps.parse(distributed({"ToleratedFailurePercentage": 100}))
    assert program is not None
