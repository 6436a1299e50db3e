"""Training: the pipeline state machine, its step functions, and the upload rule that starts it."""

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from functions.settings import StarterSettings
from infra.data import Data
from infra.features import Features
from infra.nag import acknowledge
from infra.registry import Registry
from infra.runtime import FunctionFactory
from infra.settings import PlatformSettings
from infra.storage import acknowledge_prefix_grants, grant_objects

# Errors worth another attempt: Lambda's own transient failures and our RetryableError.
TRANSIENT_ERRORS = [
    "RetryableError",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]

# (state name, handler in functions/, result path, S3 prefixes read, S3 prefixes written, tables written)
STEPS = [
    ("RegisterDataset", "data.handler.register_dataset", "$.dataset", ["datasets/"], [], ["datasets"]),
    ("ValidateDataset", "data.handler.validate_dataset", "$.validation", ["datasets/"], ["runs/"], []),
    ("BuildFeatures", "features.handler.build_features", "$.features", ["datasets/"], ["runs/"], ["features"]),
    ("Train", "training.handler.train", "$.training", ["runs/"], ["runs/"], []),
    ("Evaluate", "training.handler.evaluate", "$.evaluation", ["runs/"], [], []),
    ("RegisterModel", "registry.handler.register_model", "$.registration", ["runs/"], ["models/"], ["registry"]),
    ("Promote", "registry.handler.promote", "$.promotion", ["runs/", "models/"], [], ["registry"]),
    ("RecordSuccess", "training.handler.record_success", "$.run", [], [], ["registry"]),
]


class Training(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        settings: PlatformSettings,
        functions: FunctionFactory,
        data: Data,
        features: Features,
        registry: Registry,
    ):
        super().__init__(scope, id)
        tables = {"datasets": data.datasets, "features": features.online, "registry": registry.table}
        timeout = Duration.minutes(settings.training_timeout_minutes)

        def step_function(name: str, handler: str, reads: list[str], writes: list[str],
                          writes_tables: list[str]) -> lambda_.IFunction:
            fn = functions.create(
                self,
                f"{name}Function",
                handler=f"functions.{handler}",
                service="training",
                description=f"Training pipeline step {name}",
                memory_mb=settings.training_memory_mb,
                timeout=timeout,
            )
            for prefix in reads:
                grant_objects(fn, data.bucket, ["s3:GetObject", "s3:GetObjectVersion"], prefix)
            for prefix in writes:
                grant_objects(fn, data.bucket, ["s3:GetObject", "s3:PutObject"], prefix)
            acknowledge_prefix_grants(fn.role, data.bucket, sorted(set(reads + writes)))
            for table_name, table in tables.items():
                if table_name in writes_tables:
                    table.grant_read_write_data(fn)
                else:
                    table.grant_read_data(fn)
            return fn

        def task(name: str, fn: lambda_.IFunction, result_path: str) -> tasks.LambdaInvoke:
            invoke = tasks.LambdaInvoke(
                self,
                name,
                lambda_function=fn,
                payload_response_only=True,
                retry_on_service_exceptions=False,
                result_path=result_path,
                task_timeout=sfn.Timeout.duration(timeout),
            )
            invoke.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2)
            return invoke

        record_failure_fn = step_function(
            "RecordFailure", "training.handler.record_failure", [], [], ["registry"]
        )
        record_failure = task("RecordFailure", record_failure_fn, "$.run").next(
            sfn.Fail(self, "RunFailed", cause="The training run failed; its record says why.", error="RunFailed")
        )

        self.step_functions: dict[str, lambda_.IFunction] = {}
        states = []
        for name, handler, result_path, reads, writes, writes_tables in STEPS:
            fn = step_function(name, handler, reads, writes, writes_tables)
            self.step_functions[name] = fn
            state = task(name, fn, result_path)
            state.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")
            states.append(state)
        self.step_functions["RecordFailure"] = record_failure_fn
        # RegisterDataset names an earlier run of the same identity (dataset content, spec, code version)
        # that succeeded, unless the upload asks for a retrain: such a run trains nothing and goes
        # straight to RecordSuccess, which records the run it matches.
        register, *trains, record_success = states
        for state, following in zip(trains, [*trains[1:], record_success], strict=True):
            state.next(following)
        record_success.next(sfn.Succeed(self, "RunSucceeded"))
        register.next(sfn.Choice(self, "AlreadyTrained")
                      .when(sfn.Condition.is_string("$.dataset.duplicate_of"), record_success)
                      .otherwise(trains[0]))
        definition = register

        self.state_machine = sfn.StateMachine(
            self,
            "Pipeline",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.minutes(settings.pipeline_timeout_minutes),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.LogGroup(
                    self,
                    "PipelineLogs",
                    retention=logs.RetentionDays.ONE_MONTH,
                    removal_policy=RemovalPolicy.DESTROY,
                ),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,
            ),
        )

        for fn in self.step_functions.values():
            logical_id = Stack.of(fn).get_logical_id(fn.node.default_child)
            acknowledge(
                self.state_machine.role,
                f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
                "The pipeline may invoke any version of its own step function (CDK's LambdaInvoke grant).",
            )
        acknowledge(
            self.state_machine.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray tracing of the state machine accepts no resource but '*'.",
        )

        # An upload under datasets/<model>/ starts a run; the function names the execution
        # after the object version, so a duplicate event starts nothing.
        self.start_function = functions.create(
            self,
            "StartPipelineFunction",
            handler="functions.training.handler.start_pipeline",
            service="training",
            description="Starts the training pipeline for an uploaded dataset",
            memory_mb=512,
            environment=StarterSettings.environment(state_machine_arn=self.state_machine.state_machine_arn),
        )
        self.state_machine.grant_start_execution(self.start_function)
        registry.table.grant_read_write_data(self.start_function)
        self.upload_rule = events.Rule(
            self,
            "DatasetUploaded",
            description="Starts the training pipeline when a dataset is uploaded under datasets/<model>/",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [data.bucket.bucket_name]},
                    "object": {"key": [{"prefix": "datasets/"}]},
                },
            ),
            targets=[
                targets.LambdaFunction(
                    self.start_function, retry_attempts=4, max_event_age=Duration.hours(2)
                )
            ],
        )
