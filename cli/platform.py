"""What the CLI talks to: the local cloud (default) or a deployed stack (`--stack NAME`).

Both are described by the same outputs (bucket, tables, state machine, API URL and key), so
every command below works the same way against either.

Where the running local cloud is found: `mlops up` writes its outputs to `.mlops/outputs.json`
in the directory it runs in and to the state directory, `$MLOPS_HOME` (default `~/.mlops`), so
`mlops` finds it from anywhere; both files go when it stops. The CLI reads `$MLOPS_HOME` when
that variable is set (and nothing else), otherwise `./.mlops` then `~/.mlops`, and uses the
first whose cloud answers: a file left by a cloud that is no longer running is reported as such.
"""

import json
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.exceptions import ClientError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from functions.data.dynamo import DynamoDatasetStore
from functions.data.store import DatasetStore
from functions.errors import NotFound
from functions.records import Run
from functions.registry.dynamo import DynamoRegistryStore
from functions.registry.eventbridge import EventBridgePublisher, caller_arn
from functions.registry.store import RegistryStore
from functions.spec import is_model_name
from functions.storage.objects import ObjectStore, sha256
from functions.storage.s3 import S3ObjectStore
from functions.training.start import run_id_for

PROJECT_STATE_DIR = Path(".mlops")  # beside the project `mlops up` runs in
HOME_VARIABLE = "MLOPS_HOME"  # the state directory, where any `mlops` finds the running local cloud
OUTPUTS = "outputs.json"
PING_TIMEOUT_S = 2.0
# The outputs of infra/stack.py the CLI needs.
THROTTLE_RETRIES = 6
STACK_OUTPUTS = ("DataBucketName", "RegistryTableName", "ApiUrl", "ApiKeyId", "DriftFunctionName")


class PlatformError(Exception):
    """A failure the CLI reports in one line, without a traceback."""


def api_session() -> requests.Session:
    """An HTTP client for the API: a throttled request (429) is retried with backoff, after Retry-After when given,
    as the AWS SDKs do (API Gateway throttles before the function runs, so a retry repeats nothing)."""
    retry = Retry(total=THROTTLE_RETRIES, status_forcelist=[429], allowed_methods=None, backoff_factor=0.2,
                  respect_retry_after_header=True, raise_on_status=False)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def state_dir() -> Path:
    """Where `mlops up` writes its outputs for every `mlops` to find: $MLOPS_HOME, by default ~/.mlops."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".mlops").expanduser()


def outputs_files() -> list[Path]:
    """Where the CLI looks for the running local cloud's outputs, in order."""
    if os.environ.get(HOME_VARIABLE):
        return [state_dir() / OUTPUTS]
    candidates = [PROJECT_STATE_DIR / OUTPUTS, state_dir() / OUTPUTS]
    return [path for i, path in enumerate(candidates) if path.resolve() not in {c.resolve() for c in candidates[:i]}]


def answers(endpoint: str, timeout_s: float = PING_TIMEOUT_S) -> bool:
    """Whether anything answers HTTP at the endpoint (any status: moto answers every path)."""
    try:
        requests.head(endpoint, timeout=timeout_s)
    except requests.RequestException:
        return False
    return True


@dataclass
class Platform:
    outputs: dict
    session: boto3.Session
    endpoint: str | None = None

    @classmethod
    def local(cls, outputs_file: Path | None = None) -> "Platform":
        """The running local cloud, from its outputs file (by default, the first of outputs_files() that answers)."""
        stale = []
        for path in [outputs_file] if outputs_file else outputs_files():
            try:
                outputs = json.loads(path.read_text())
                endpoint = outputs["Endpoint"]
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError, KeyError):
                stale.append(f"{path} is unreadable")
                continue
            if not answers(endpoint):
                stale.append(f"{path} was written by a local cloud that has stopped ({endpoint} does not answer)")
                continue
            session = boto3.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing", region_name=outputs["Region"]
            )
            return cls(outputs, session, endpoint)
        start = "start it with `mlops up` (or run `mlops demo`)"
        if stale:
            raise PlatformError(f"the local cloud is not running: {'; '.join(stale)}; {start}")
        looked = " or ".join(str(path) for path in ([outputs_file] if outputs_file else outputs_files()))
        raise PlatformError(f"the local cloud is not running (no {looked}): {start}")

    @classmethod
    def deployed(cls, stack_name: str, region: str | None = None) -> "Platform":
        session = boto3.Session(region_name=region)
        try:
            stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ValidationError":
                raise PlatformError(f"no stack named {stack_name!r} in {session.region_name}: deploy it with "
                                    "`npx cdk deploy`, or pass its name") from None
            raise
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        missing = sorted(set(STACK_OUTPUTS) - set(outputs))
        if missing:
            raise PlatformError(f"stack {stack_name!r} is not an MLOps platform stack (no {', '.join(missing)} output)")
        key = session.client("apigateway").get_api_key(apiKey=outputs["ApiKeyId"], includeValue=True)["value"]
        return cls({**outputs, "ApiKey": key, "Region": session.region_name, "StackName": stack_name}, session)

    def client(self, service: Any) -> Any:
        """A client of the platform's account (or the local cloud): `service` is a boto3 service name."""
        return self.session.client(service, endpoint_url=self.endpoint)

    @cached_property
    def registry(self) -> RegistryStore:
        resource = self.session.resource("dynamodb", endpoint_url=self.endpoint)
        return DynamoRegistryStore(resource.Table(self.outputs["RegistryTableName"]))

    @property
    def bucket(self) -> str:
        return self.outputs["DataBucketName"]

    @cached_property
    def events(self) -> EventBridgePublisher:
        """The registry's events, put on the default bus of the platform's account with the user's credentials."""
        return EventBridgePublisher(self.client("events"))

    @cached_property
    def actor(self) -> str:
        """Who the user is, as the audit trail records it: their STS caller identity ARN."""
        return caller_arn(self.client("sts"))

    @cached_property
    def objects(self) -> ObjectStore:
        """The data bucket (datasets, runs' artifacts, models), through the object-storage port."""
        return S3ObjectStore(self.client("s3"), self.bucket)

    @cached_property
    def datasets(self) -> DatasetStore:
        """The dataset versions and their lineage (the datasets table)."""
        if "DatasetsTableName" not in self.outputs:
            raise PlatformError("the platform's outputs name no datasets table (DatasetsTableName)")
        resource = self.session.resource("dynamodb", endpoint_url=self.endpoint)
        return DynamoDatasetStore(resource.Table(self.outputs["DatasetsTableName"]))

    # --- data
    def push_dataset(self, model: str, path: Path, retrain: bool = False) -> dict:
        """Upload a dataset; with `retrain`, its run trains even when an identical run succeeded before
        (the object's metadata says so: functions.data.datasets.RETRAIN_METADATA)."""
        if not is_model_name(model):
            raise PlatformError("model names are lowercase letters, digits and dashes (at most 63), "
                                "starting with a letter")
        if not path.is_file():
            raise PlatformError(f"{path} is not a file")
        if path.suffix.lower() not in {".csv", ".parquet"}:
            raise PlatformError("datasets are CSV (.csv) or Parquet (.parquet) files")
        key = f"datasets/{model}/{path.name}"
        body = path.read_bytes()
        metadata = {"retrain": "true"} if retrain else {}
        response = self.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata)
        return {
            "bucket": self.bucket,
            "key": key,
            "version_id": response.get("VersionId"),
            "sha256": sha256(body),
            "run_id": run_id_for(model, self.bucket, key, response.get("VersionId")),
        }

    # --- runs
    def wait_for_run(self, model: str, run_id: str, timeout_s: float = 300, poll_s: float = 0.25) -> Run:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                run = self.registry.get_run(model, run_id)
            except NotFound:  # not recorded yet: the upload's event is still on its way
                run = None
            if run and run.status in {"SUCCEEDED", "FAILED"}:
                return run
            time.sleep(poll_s)
        raise PlatformError(f"run {run_id} did not finish within {timeout_s:.0f} s")

    # --- serving
    @cached_property
    def http(self) -> requests.Session:
        session = api_session()
        session.headers["x-api-key"] = self.outputs["ApiKey"]
        return session

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> requests.Response:
        return self.http.request(method, self.outputs["ApiUrl"].rstrip("/") + path, json=body, timeout=timeout)

    # --- monitoring
    def check_drift(self, model: str | None = None) -> dict:
        payload = json.dumps({"model": model} if model else {}).encode()
        response = self.client("lambda").invoke(FunctionName=self.outputs["DriftFunctionName"], Payload=payload)
        result = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            raise PlatformError(f"the drift check failed: {result.get('errorMessage', 'see its logs')}")
        return result
