"""Shared test setup: a fake AWS environment (never a real account), in-memory stores, and what is
expensive (the CDK synth, a trained champion) built once per session."""

import copy
import json
import os
from pathlib import Path

import pytest
from moto import mock_aws
from moto.core.config import default_user_config

from tests.background import background
from tests.fakes import MemoryDatasetStore, MemoryExecutions, MemoryObjectStore, MemoryOnlineStore, MemoryRegistryStore

PIPELINE_BUCKET = "mlops-test-data"
PIPELINE_TABLES = {"REGISTRY_TABLE": "registry", "DATASETS_TABLE": "datasets", "FEATURES_TABLE": "features"}
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:pipeline"

# The environment every function gets from the template, pointed at the test resources (moto's).
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "Mlops",
    "POWERTOOLS_SERVICE_NAME": "tests",
    "DATA_BUCKET": PIPELINE_BUCKET,
    "STATE_MACHINE_ARN": STATE_MACHINE_ARN,
    "CODE_VERSION": "test-1",
    "MODEL_ALARM_PREFIX": "mlops-test-model",
    **PIPELINE_TABLES,
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)
# moto otherwise drops boto3's default session at every mock_aws, and a new session parses botocore's
# endpoint and service data again (0.1-0.4 s a test). moto is imported above, so every session carries
# its request hook.
default_user_config["core"]["reset_boto3_session"] = False

ROOT = Path(__file__).resolve().parent.parent


# The slow processes some tests need: started once the tests are collected, waited for when needed.
TEMPLATE_FIXTURES = {"synthesized_template", "template_dict"}


def _stage(item: pytest.Item) -> int:
    """0: the unit tests; 1: those of the synthesized app; 2: end to end; 3: end to end with the trained model;
    4: marked last (it stops the local cloud)."""
    names = set(getattr(item, "fixturenames", ()))
    if item.get_closest_marker("last"):
        return 4
    if "local_cloud" in names:
        return 3 if "trained_model" in names else 2
    return 1 if names & TEMPLATE_FIXTURES or item.path.parent.name == "infra" else 0


@pytest.hookimpl(tryfirst=True)  # marked before -m selects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read the synthesized app run last (the end-to-end ones very last, those that need the
    trained model after the others), so that the synth, the local cloud and its first training run in the
    background while the other tests run. They are marked `app`: `make test` runs them (-m app) beside
    the others (-m "not app"), in a second process, since they mostly wait for the local cloud."""
    items.sort(key=_stage)
    for item in items:
        if _stage(item):
            item.add_marker(pytest.mark.app)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start what the selected tests need (tests/background.py), so that it boots while others run."""
    stages = {_stage(item) for item in session.items}
    background.start(synth=bool(stages - {0}), cloud=bool(stages & {2, 3, 4}))


def pytest_sessionfinish() -> None:
    background.stop()


@pytest.fixture(scope="session")
def synthesized_template() -> Path:
    """The template `npx cdk synth` made from cdk.json (the app `cdk deploy` uses), with cdk-nag's checks."""
    background.start(synth=True)
    assert background.synth is not None
    assert background.synth.wait() == 0, background.synth.output()[-3000:]
    return background.template


@pytest.fixture(scope="session")
def template_dict(synthesized_template) -> dict:
    return json.loads(synthesized_template.read_text())


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


def reset_execution_environment() -> None:
    """Forget the settings, clients and stores a warm function keeps (a test may change what they see)."""
    from functions import aws, settings
    from functions.data import dynamo as data_dynamo
    from functions.features import dynamo as features_dynamo
    from functions.monitoring import aws as monitoring_aws
    from functions.monitoring import loop
    from functions.monitoring import settings as monitoring_settings
    from functions.pipeline import executions
    from functions.registry import dynamo as registry_dynamo
    from functions.storage import s3

    aws.reset()
    for cached in (settings.settings, settings.starter_settings, s3.data_objects, registry_dynamo.registry_store,
                   data_dynamo.dataset_store, features_dynamo.online_store, executions.pipeline_executions,
                   monitoring_settings.monitoring_settings, monitoring_aws.monitoring_events,
                   monitoring_aws.model_alarms, monitoring_aws.training_uploads):
        cached.cache_clear()
    loop.reset()


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
        assert self.state_machine_arn == STATE_MACHINE_ARN

    def upload(self, key: str, body: bytes) -> str:
        return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"]

    def seed(self, stores: "Stores") -> None:
        """Copy what in-memory stores hold (a session's champion, say) into the moto resources."""
        from functions.data.dynamo import DynamoDatasetStore
        from functions.registry.dynamo import DynamoRegistryStore
        from functions.storage.objects import sha256

        for key, versions in stores.objects.versions.items():
            for _, data in versions:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=data,
                                   Metadata={"sha256": sha256(data)})
        registry = DynamoRegistryStore(self.tables["registry"])
        memory = stores.registry
        for name in memory.specs:
            registry.put_spec(memory.get_spec(name))
        for model, run_id in memory.runs:
            registry.start_run(memory.get_run(model, run_id))
        for version in memory.versions.values():
            registry.put_version(version)
        for (model, run_id), number in memory.reservations.items():
            self.tables["registry"].put_item(Item={"pk": f"MODEL#{model}", "sk": f"RUNVERSION#{run_id}",
                                                   "version": number})
        for model, number in memory.counters.items():
            self.tables["registry"].put_item(Item={"pk": f"MODEL#{model}", "sk": "COUNTER", "next_version": number})
        for entry in memory.audit:
            expected = registry.get_alias(entry.model, entry.alias)
            registry.set_alias(entry.model, entry.alias, entry.version, expected=expected, reason=entry.reason)
        datasets = DynamoDatasetStore(self.tables["datasets"])
        for dataset in stores.datasets.datasets.values():
            datasets.put_dataset(dataset)


@pytest.fixture
def pipeline_aws():
    """moto AWS with the platform's storage; the handlers' environment (set above) points at it."""
    reset_execution_environment()
    with mock_aws():
        yield PipelineAws()
    reset_execution_environment()


@pytest.fixture(scope="session")
def boto_session():
    """boto3's default session, kept for the whole run (see reset_boto3_session above)."""
    import boto3

    return boto3._get_default_session()


# --- in-memory stores, for domain tests ---------------------------------------------------------


class Stores:
    """One of each port, in memory: what a domain function is given instead of AWS."""

    def __init__(self):
        self.objects = MemoryObjectStore(PIPELINE_BUCKET)
        self.registry = MemoryRegistryStore()
        self.datasets = MemoryDatasetStore()
        self.online = MemoryOnlineStore()
        self.executions = MemoryExecutions()

    def copy(self) -> "Stores":
        return copy.deepcopy(self)


@pytest.fixture
def stores() -> Stores:
    return Stores()


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

    def __init__(self, spec, version, run_id, dataset_id, rows, pipeline, record):
        self.spec, self.version, self.run_id, self.dataset_id = spec, version, run_id, dataset_id
        self.rows, self.pipeline, self.record = rows, pipeline, record

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def artifacts(self):
        return self.record.artifacts


def train_champion(stores: Stores, spec, rows, *, promote: bool = True) -> Champion:
    """Run the pipeline's own steps on `rows` in `stores` and make the model the champion of spec.name."""
    from functions.data.datasets import register_dataset
    from functions.features.build import model_frame
    from functions.records import Run, RunArtifact
    from functions.registry.promotion import register_version
    from functions.shared.models import load_verified_pipeline
    from functions.storage.objects import sha256
    from functions.training.runs import evaluate_run, train_run

    stores.registry.put_spec(spec)
    data = rows.to_csv(index=False).encode()
    key = f"datasets/{spec.name}/train-{sha256(data)[:8]}.csv"
    version_id = stores.objects.put(key, data)
    run_id = f"{spec.name}-{sha256(version_id.encode())[:16]}"
    stores.registry.start_run(Run(model=spec.name, run_id=run_id, bucket=stores.objects.bucket, key=key,
                                  version_id=version_id, code_version="test-1"))
    dataset_id = register_dataset(stores.objects, stores.datasets, stores.registry, model=spec.name, key=key,
                                  version_id=version_id, run_id=run_id, code_version="test-1").dataset_id
    features_key = f"runs/{spec.name}/{run_id}/features.parquet"
    stores.objects.put_frame(features_key, model_frame(rows, spec))
    training = train_run(stores.objects, spec=spec, run_id=run_id, features_key=features_key, dataset_id=dataset_id)
    evaluation = evaluate_run(stores.objects, spec=spec, training=training)
    metrics = evaluation.metrics
    # What RecordSuccess records of the run: the drift check finds the version's reference profile there.
    stores.registry.update_run(spec.name, run_id, artifacts={"reference": RunArtifact(
        key=evaluation.reference_key, sha256=evaluation.reference_sha256)})
    version = register_version(stores.objects, stores.registry, spec=spec, run_id=run_id, dataset_id=dataset_id,
                               training=training, metrics=metrics, code_version="test-1").version
    if promote:
        stores.registry.set_alias(spec.name, "champion", version,
                                  expected=stores.registry.get_alias(spec.name, "champion"), reason="test champion")
    pipeline = load_verified_pipeline(stores.objects, training.model_key, training.model_sha256, training.trusted_types)
    return Champion(spec, version, run_id, dataset_id, rows, pipeline, stores.registry.get_version(spec.name, version))


@pytest.fixture
def champion_factory(stores):
    """make(spec, rows, promote=True) trains a champion of spec.name in this test's stores."""
    return lambda spec, rows, promote=True: train_champion(stores, spec, rows, promote=promote)


@pytest.fixture(scope="session")
def _churn_trained():
    """The churn champion, trained once per session; each test gets its own copy of the stores."""
    from cli.demo_data import churn_frame
    from functions.spec import ModelSpec

    trained = Stores()
    champion = train_champion(trained, ModelSpec.model_validate(CHURN_SPEC), churn_frame(rows=200, seed=11))
    return trained, champion


@pytest.fixture
def churn_champion(_churn_trained, stores) -> Champion:
    """Version 1 of `churn`, trained on churn_rows, served as ONNX, in this test's `stores`."""
    trained, champion = _churn_trained
    vars(stores).update(vars(trained.copy()))
    for store in vars(stores).values():
        store.faults.calls.clear()  # a test counts its own calls, not the training's
    return champion


@pytest.fixture
def churn_champion_aws(churn_champion, stores, pipeline_aws) -> Champion:
    """The same champion in moto's S3 and DynamoDB, for handler tests."""
    pipeline_aws.seed(stores)
    return churn_champion

