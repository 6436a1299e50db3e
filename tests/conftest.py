"""Shared test setup: a fake AWS environment (never a real account) and one CDK synth per session."""

import json
import os
from pathlib import Path

import pytest

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "Mlops",
    "POWERTOOLS_SERVICE_NAME": "tests",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cloud_assembly(tmp_path_factory):
    """The app synthesized once per session (jsii starts Node.js: seconds, not milliseconds)."""
    from app import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = build_app(outdir=str(outdir))
    assembly = app.synth()
    return assembly, stack


@pytest.fixture(scope="session")
def template_dict(cloud_assembly) -> dict:
    assembly, stack = cloud_assembly
    return json.loads(Path(assembly.directory, stack.template_file).read_text())


# --- AWS under moto, for the pipeline parts (data, features, training, registry) ---------------

PIPELINE_BUCKET = "mlops-test-data"
PIPELINE_TABLES = {"REGISTRY_TABLE": "registry", "DATASETS_TABLE": "datasets", "FEATURES_TABLE": "features"}
CHURN_SPEC = {
    "name": "churn",
    "task": "classification",
    "target": "churned",
    "entity_id": "customer_id",
    "features": [
        {"name": "tenure_months", "type": "numeric"},
        {"name": "monthly_charges", "type": "numeric"},
        {"name": "support_calls", "type": "numeric"},
        {"name": "plan", "type": "categorical"},
    ],
    "estimator": {"name": "logistic_regression", "params": {"max_iter": 300}},
    "metric": "roc_auc",
}
CHURN_FEATURES = [feature["name"] for feature in CHURN_SPEC["features"]]


def client_error(code: str, operation: str = "PutItem", **extra):
    """The ClientError boto3 raises when AWS answers `operation` with error `code`."""
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "injected"}, **extra}, operation)


def failing_with(code: str, operation: str = "PutItem"):
    """A stand-in for a boto3 call that AWS refuses with `code`."""
    def call(**kwargs):
        raise client_error(code, operation)

    return call


class PipelineAws:
    """The moto resources of one test: S3 bucket (versioned), the three tables, a state machine."""

    def __init__(self):
        import boto3

        self.bucket = PIPELINE_BUCKET
        self.s3 = boto3.client("s3")
        self.dynamodb = boto3.resource("dynamodb")
        self.sfn = boto3.client("stepfunctions")
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        self.tables = {}
        for name in PIPELINE_TABLES.values():
            self.tables[name] = self.dynamodb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                      {"AttributeName": "sk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        self.state_machine_arn = self.sfn.create_state_machine(
            name="pipeline",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/pipeline",
        )["stateMachineArn"]

    def upload(self, key: str, body: bytes) -> str:
        return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"]


@pytest.fixture
def pipeline_aws(monkeypatch):
    """moto AWS with the platform's storage, the handlers' environment pointing at it."""
    from moto import mock_aws

    from functions import aws

    aws.reset()
    with mock_aws():
        resources = PipelineAws()
        monkeypatch.setenv("DATA_BUCKET", resources.bucket)
        for variable, name in PIPELINE_TABLES.items():
            monkeypatch.setenv(variable, name)
        monkeypatch.setenv("STATE_MACHINE_ARN", resources.state_machine_arn)
        monkeypatch.setenv("CODE_VERSION", "test-1")
        yield resources
    aws.reset()


@pytest.fixture
def lambda_context():
    from types import SimpleNamespace

    return SimpleNamespace(
        function_name="test-function",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:test-function",
        memory_limit_in_mb=512,
        aws_request_id="00000000-0000-0000-0000-000000000000",
        log_group_name="/aws/lambda/test-function",
        log_stream_name="test",
        get_remaining_time_in_millis=lambda: 60_000,
    )


@pytest.fixture
def churn_spec():
    from functions.spec import ModelSpec

    return ModelSpec.model_validate(CHURN_SPEC)


@pytest.fixture
def churn_rows():
    """200 customers with a known signal (the demo's generator)."""
    from cli.demo_data import churn_frame

    return churn_frame(rows=200, seed=11)


# --- a served champion, for the serving and monitoring parts ------------------------------------


class Champion:
    """A model registered the way the pipeline registers it: spec, dataset (with profile), version, alias."""

    def __init__(self, spec, version, run_id, dataset_id, rows, pipeline, artifacts):
        self.spec, self.version, self.run_id, self.dataset_id = spec, version, run_id, dataset_id
        self.rows, self.pipeline, self.artifacts = rows, pipeline, artifacts

    @property
    def name(self) -> str:
        return self.spec.name


@pytest.fixture
def champion_factory(pipeline_aws):
    """make(spec, rows) runs the pipeline's own steps on `rows` and makes the model the champion of spec.name."""
    from functions.data.datasets import register_dataset
    from functions.data.store import DatasetStore
    from functions.features.build import model_frame
    from functions.features.store import write_frame
    from functions.registry.promotion import register_version
    from functions.registry.store import RegistryStore
    from functions.storage import sha256
    from functions.training.runs import evaluate_run, load_run_pipeline, train_run

    registry = RegistryStore(pipeline_aws.tables["registry"])
    datasets = DatasetStore(pipeline_aws.tables["datasets"])
    s3, bucket = pipeline_aws.s3, pipeline_aws.bucket

    def make(spec, rows, *, promote: bool = True) -> Champion:
        registry.put_spec(spec)
        data = rows.to_csv(index=False).encode()
        key = f"datasets/{spec.name}/train-{sha256(data)[:8]}.csv"
        version_id = pipeline_aws.upload(key, data)
        run_id = f"{spec.name}-{sha256(version_id.encode())[:16]}"
        registry.start_run(spec.name, run_id, bucket=bucket, key=key, version_id=version_id, code_version="test-1")
        dataset_id = register_dataset(s3, datasets, registry, model=spec.name, bucket=bucket, key=key,
                                      version_id=version_id, run_id=run_id)["dataset_id"]
        features_key = f"runs/{spec.name}/{run_id}/features.parquet"
        write_frame(s3, bucket, features_key, model_frame(rows, spec))
        training = train_run(s3, spec=spec, bucket=bucket, run_id=run_id, features_key=features_key,
                             dataset_id=dataset_id)
        metrics = evaluate_run(s3, spec=spec, bucket=bucket, training=training)["metrics"]
        version = register_version(s3, registry, spec=spec, bucket=bucket, run_id=run_id, dataset_id=dataset_id,
                                   training=training, metrics=metrics, code_version="test-1")["version"]
        if promote:
            registry.set_alias(spec.name, "champion", version, expected=registry.get_alias(spec.name, "champion"),
                               reason="test champion")
        artifacts = registry.get_version(spec.name, version)["artifacts"]
        return Champion(spec, version, run_id, dataset_id, rows, load_run_pipeline(s3, bucket, training), artifacts)

    return make


@pytest.fixture
def churn_champion(champion_factory, churn_spec, churn_rows) -> Champion:
    """Version 1 of `churn`, trained on churn_rows, served as ONNX."""
    return champion_factory(churn_spec, churn_rows)
