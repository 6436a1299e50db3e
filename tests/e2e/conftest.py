"""The local cloud, started as a user starts it (`mlops up`), in its own process."""

import json
import time

import boto3
import pytest

from cli.demo_data import churn_frame
from cli.platform import api_session
from tests.background import background
from tests.conftest import CHURN_SPEC

# A spec file names no model. The session's models do not retrain on drift: a test that shifts their inputs
# would otherwise start a run that registers versions under the next test (tests/e2e/test_retraining.py has
# its own model that does).
SPEC = {**{key: value for key, value in CHURN_SPEC.items() if key != "name"}, "monitoring": {"retrain": False}}


@pytest.fixture(scope="package")  # `mlops up` stops when the e2e tests end
def local_cloud():
    """`mlops up`, started in the background when the tests were collected (tests/background.py)."""
    background.start(cloud=True)
    assert background.cloud is not None
    try:
        outputs = json.loads(background.wait_for_cloud().read_text())
    except RuntimeError as error:
        pytest.fail(str(error))
    outputs["workdir"] = str(background.cloud_dir)
    outputs["log"] = str(background.cloud.log)
    yield outputs
    background.cloud.stop()


@pytest.fixture(scope="package")
def aws(local_cloud):
    """Plain boto3 clients pointed at the local cloud: an AWS client that is not ours."""
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=local_cloud["Region"])
    return lambda service: session.client(service, endpoint_url=local_cloud["Endpoint"])


@pytest.fixture(scope="package")
def api(local_cloud):
    """The API as the CLI's client calls it: a request the key's usage plan throttles (429) is retried."""
    session = api_session()

    def call(method, path, *, key=True, **kwargs):
        headers = kwargs.pop("headers", {})
        if key:
            headers["x-api-key"] = local_cloud["ApiKey"]
        return session.request(method, local_cloud["ApiUrl"].rstrip("/") + path, headers=headers, timeout=60, **kwargs)

    return call


MODEL = "churn-e2e"


@pytest.fixture(scope="package", autouse=True)
def _training(local_cloud, aws) -> dict:
    """The upload that trains MODEL, made as the e2e tests start: the tests that do not need the
    model run first (tests/conftest.py orders them) while the pipeline trains it."""
    register_spec(aws, local_cloud, MODEL)
    return upload(aws, local_cloud, f"datasets/{MODEL}/train.csv", csv_bytes(300))


@pytest.fixture(scope="package")
def trained_model(_training, aws) -> str:
    """A model trained and promoted through the whole pipeline, once per session."""
    execution = wait_for(aws, _training)
    assert execution["status"] == "SUCCEEDED", execution.get("cause") or execution
    return MODEL


def register_spec(aws, outputs, name: str, spec: dict = SPEC) -> None:
    """As `mlops models create` stores it: one item in the registry table."""
    from cli.platform import Platform
    from functions.spec import ModelSpec

    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=outputs["Region"])
    Platform(outputs, session, outputs["Endpoint"]).registry.put_spec(ModelSpec.model_validate({**spec, "name": name}))


def upload_and_wait(aws, outputs, key: str, body: bytes, timeout: float = 240) -> dict:
    """Upload with plain boto3, then follow the execution through the Step Functions API."""
    return wait_for(aws, upload(aws, outputs, key, body), timeout)


def upload(aws, outputs, key: str, body: bytes) -> dict:
    """Upload with plain boto3: the run it starts, and the execution that runs it."""
    from functions.training.start import run_id_for

    version = aws("s3").put_object(Bucket=outputs["DataBucketName"], Key=key, Body=body)["VersionId"]
    run_id = run_id_for(key.split("/")[1], outputs["DataBucketName"], key, version)
    arn = outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + f":{run_id}"
    return {"run_id": run_id, "version_id": version, "executionArn": arn}


def wait_for(aws, started: dict, timeout: float = 240) -> dict:
    """The execution of an upload once it has ended, as the Step Functions API describes it."""
    sfn = aws("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            execution = sfn.describe_execution(executionArn=started["executionArn"])
            if execution["status"] != "RUNNING":
                return {**started, **execution}
        except sfn.exceptions.ExecutionDoesNotExist:
            pass
        time.sleep(0.1)
    pytest.fail(f"execution {started['run_id']} did not finish in {timeout} s")


def event_queue(aws, name: str, pattern: dict):
    """A rule with `pattern` on the default bus, delivering to a new SQS queue: made with the AWS API, as any
    subscriber makes it. Returns receive(count, timeout=30): every event received so far, once there are `count`
    (fewer when the timeout passed)."""
    sqs, events = aws("sqs"), aws("events")
    url = sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
    received: list[dict] = []

    def receive(count: int, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            received.extend(json.loads(m["Body"]) for m in messages)
        return received

    return receive


def csv_bytes(rows: int = 300, seed: int = 7, shift: float = 0.0) -> bytes:
    return churn_frame(rows=rows, seed=seed, shift=shift).to_csv(index=False).encode()


def wait_for_capture(aws, outputs, model: str, request_id: str, timeout: float = 60) -> tuple[str, list[dict]]:
    """The delivered capture object holding `request_id`'s records, and those records: a capture travels as a
    log line through CloudWatch Logs' subscription to Firehose, which delivers batches."""
    import gzip

    s3 = aws("s3")
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        listed = s3.list_objects_v2(Bucket=outputs["DataBucketName"], Prefix=f"captures/{model}/")
        for key in sorted({o["Key"] for o in listed.get("Contents", [])} - seen):
            seen.add(key)
            body = gzip.decompress(s3.get_object(Bucket=outputs["DataBucketName"], Key=key)["Body"].read())
            records = [json.loads(line) for line in body.splitlines() if line.strip()]
            if any(r.get("request_id") == request_id for r in records):
                return key, records
        time.sleep(0.2)
    pytest.fail(f"no capture of request {request_id} reached s3://{outputs['DataBucketName']}/captures/{model}/ "
                f"in {timeout} s")


DRIFT_MODEL = "drift-e2e"


@pytest.fixture(scope="package")
def drift_model(local_cloud, aws) -> str:
    """A model of the drift tests' own, trained once: its capture window holds only their requests. (MODEL's
    holds every e2e test's; a shift of 120 rows among a thousand unshifted ones is rightly not drift.)"""
    register_spec(aws, local_cloud, DRIFT_MODEL)
    execution = upload_and_wait(aws, local_cloud, f"datasets/{DRIFT_MODEL}/train.csv", csv_bytes(300))
    assert execution["status"] == "SUCCEEDED", execution.get("cause") or execution
    return DRIFT_MODEL
