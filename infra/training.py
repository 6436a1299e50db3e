"""Training: the pipeline state machine, its step functions, the upload rule that starts it, and
the rule that records a run FAILED when its execution fails, times out or is stopped."""

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from functions.settings import StarterSettings
from infra.data import Data
from infra.features import Features
from infra.nag import acknowledge, default_policy
from infra.registry import Registry
from infra.runtime import FunctionFactory
from infra.settings import DATA_STEPS, REGISTRY_STEPS, PlatformSettings, step_timeout_seconds
from infra.storage import acknowledge_prefix_grants, grant_objects

# Errors worth another attempt soon: Lambda's own transient failures and our RetryableError.
TRANSIENT_ERRORS = [
    "RetryableError",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
]
# A step throttled by its reserved concurrency waits longer: other runs hold its slots for minutes.
THROTTLED = ["Lambda.TooManyRequestsException"]

# DynamoDB actions: each function is granted the ones its store calls make, on the tables it uses.
GET, PUT, UPDATE, DELETE, QUERY = "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"
BATCH_WRITE, CONDITION_CHECK = "BatchWriteItem", "ConditionCheckItem"

# (state name, handler in functions/, result path, S3 prefixes read, S3 prefixes written, {table: actions})
STEPS: list[tuple[str, str, str, list[str], list[str], dict[str, list[str]]]] = [
    ("RegisterDataset", "data.handler.register_dataset", "$.dataset", ["datasets/"], ["runs/"],
     {"registry": [GET, UPDATE], "datasets": [GET, PUT, UPDATE]}),  # spec and runs; dataset version, identity
    ("ValidateDataset", "data.handler.validate_dataset", "$.validation", ["datasets/"], ["runs/"], {}),
    ("BuildFeatures", "features.handler.build_features", "$.features", ["datasets/"], ["runs/"], {}),
    ("Train", "training.handler.train", "$.training", ["runs/"], ["runs/"], {}),
    ("Evaluate", "training.handler.evaluate", "$.evaluation", ["runs/"], ["runs/"], {}),
    ("RegisterModel", "registry.handler.register_model", "$.registration", ["runs/"], ["models/"],
     {"registry": [GET, PUT, UPDATE]}),  # the run's version number (counter), the version
    ("Promote", "registry.handler.promote", "$.promotion", ["runs/", "models/"], [],
     {"registry": [GET, PUT, UPDATE, QUERY, CONDITION_CHECK]}),  # approval, aliases (each one transaction with
    # its audit and history entries, an alias checking the version is approved), the trail
    # Off the path to a registered model: each entity's latest values, in parallel batches.
    ("PublishFeatures", "features.handler.publish_features", "$.publication", ["runs/"], [],
     {"features": [BATCH_WRITE]}),
    ("RecordSuccess", "training.handler.record_success", "$.run", [], [], {"registry": [UPDATE]}),
]
# The steps that change the registry (a version registered; approved, aliases moved): each change is an event.
REGISTRY_CHANGES = ("RegisterModel", "Promote")
# The run's failure; a version number reserved but never registered is given back (one transaction).
RECORD_FAILURE = ("training.handler.record_failure", {"registry": [UPDATE, GET, DELETE, CONDITION_CHECK]})


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
        dead_letters: sqs.IQueue,
    ):
        super().__init__(scope, id)
        tables = {"datasets": data.datasets, "features": features.online, "registry": registry.table}

        def grant_items(fn: lambda_.IFunction, actions: dict[str, list[str]]) -> None:
            for table_name, table_actions in actions.items():
                table: dynamodb.Table = tables[table_name]
                table.grant(fn, *(f"dynamodb:{action}" for action in table_actions))

        def memory_mb(name: str) -> int:
            if name in DATA_STEPS:
                return settings.training_memory_mb
            return settings.registry_step_memory_mb if name in REGISTRY_STEPS else settings.record_step_memory_mb

        def step_function(name: str, handler: str, reads: list[str], writes: list[str],
                          table_actions: dict[str, list[str]]) -> lambda_.IFunction:
            fn = functions.create(
                self,
                f"{name}Function",
                handler=f"functions.{handler}",
                service="training",
                description=f"Training pipeline step {name}",
                memory_mb=memory_mb(name),
                timeout=Duration.seconds(step_timeout_seconds(settings, name)),
                reserved_concurrency=settings.pipeline_concurrency,
            )
            for prefix in reads:
                grant_objects(fn, data.bucket, ["s3:GetObject", "s3:GetObjectVersion"], prefix)
            for prefix in writes:
                grant_objects(fn, data.bucket, ["s3:GetObject", "s3:PutObject"], prefix)
            acknowledge_prefix_grants(fn.role, data.bucket, sorted(set(reads + writes)))
            grant_items(fn, table_actions)
            return fn

        def task(name: str, fn: lambda_.IFunction, result_path: str) -> tasks.LambdaInvoke:
            invoke = tasks.LambdaInvoke(
                self,
                name,
                lambda_function=fn,
                payload_response_only=True,
                retry_on_service_exceptions=False,
                result_path=result_path,
                task_timeout=sfn.Timeout.duration(Duration.seconds(step_timeout_seconds(settings, name))),
            )
            invoke.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2)
            invoke.add_retry(errors=THROTTLED, interval=Duration.seconds(10), max_attempts=8, backoff_rate=2,
                             max_delay=Duration.minutes(2), jitter_strategy=sfn.JitterType.FULL)
            return invoke

        record_failure_handler, record_failure_actions = RECORD_FAILURE
        record_failure_fn = step_function("RecordFailure", record_failure_handler, [], [], record_failure_actions)
        # The execution fails with the run's reason as its cause (what describe-execution and the
        # console show); RecordFailure bounds it (MAX_REASON_CHARS).
        record_failure = task("RecordFailure", record_failure_fn, "$.run").next(
            sfn.Fail(self, "RunFailed", cause_path="$.run.failure_reason", error="RunFailed")
        )

        self.step_functions: dict[str, lambda_.IFunction] = {}
        states = []
        for name, handler, result_path, reads, writes, table_actions in STEPS:
            fn = step_function(name, handler, reads, writes, table_actions)
            self.step_functions[name] = fn
            state = task(name, fn, result_path)
            state.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")
            states.append(state)
        self.step_functions["RecordFailure"] = record_failure_fn
        for name in REGISTRY_CHANGES:  # the steps that change the registry announce each change on EventBridge
            registry.grant_announce(self.step_functions[name])
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

        pipeline_policy = default_policy(self.state_machine.role)
        for fn in self.step_functions.values():
            logical_id = Stack.of(fn).get_logical_id(fn.node.default_child)
            acknowledge(
                pipeline_policy,
                f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
                "The pipeline may invoke any version of its own step function (CDK's LambdaInvoke grant).",
            )
        acknowledge(
            pipeline_policy,
            "AwsSolutions-IAM5[Resource::*]",
            "These actions accept no resource but '*': X-Ray tracing of the state machine (xray:PutTraceSegments, "
            "xray:PutTelemetryRecords, xray:GetSamplingRules, xray:GetSamplingTargets) and the delivery of its "
            "execution logs to CloudWatch Logs (logs:CreateLogDelivery, logs:GetLogDelivery, "
            "logs:UpdateLogDelivery, logs:DeleteLogDelivery, logs:ListLogDeliveries, logs:PutResourcePolicy, "
            "logs:DescribeResourcePolicies, logs:DescribeLogGroups).",
        )

        # An upload under datasets/<model>/ starts a run; the function names the execution
        # after the object version, so a duplicate event starts nothing. EventBridge invokes it
        # asynchronously: an event it cannot deliver, and one the function fails on after
        # Lambda's retries, goes to the dead-letter queue.
        self.start_function = functions.create(
            self,
            "StartPipelineFunction",
            handler="functions.training.handler.start_pipeline",
            service="training",
            description="Starts the training pipeline for an uploaded dataset",
            memory_mb=settings.record_step_memory_mb,
            timeout=Duration.seconds(settings.record_step_timeout_seconds),
            environment=StarterSettings.environment(state_machine_arn=self.state_machine.state_machine_arn),
            reserved_concurrency=settings.pipeline_concurrency,
            on_failure=dead_letters,
        )
        self.state_machine.grant_start_execution(self.start_function)
        grant_items(self.start_function, {"registry": [PUT]})  # the run, RUNNING
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
                    self.start_function, retry_attempts=4, max_event_age=Duration.hours(2),
                    dead_letter_queue=dead_letters,
                )
            ],
        )

        # A run whose execution ends without recording it (timed out, stopped, or failed
        # outside the pipeline's catch) is recorded FAILED with the reason; a run already
        # recorded SUCCEEDED or FAILED is left as it is. The execution is named after its run.
        self.ended_function = functions.create(
            self,
            "RunEndedFunction",
            handler="functions.training.handler.record_execution_end",
            service="training",
            description="Records a run FAILED when its execution ends without recording it",
            memory_mb=settings.record_step_memory_mb,
            timeout=Duration.seconds(settings.record_step_timeout_seconds),
            reserved_concurrency=settings.pipeline_concurrency,
            on_failure=dead_letters,
        )
        # The run if still RUNNING; the version number a failed run reserved but never registered (as RecordFailure).
        grant_items(self.ended_function, RECORD_FAILURE[1])
        self.ended_rule = events.Rule(
            self,
            "RunEnded",
            description="Records a run FAILED when its pipeline execution fails, times out or is stopped",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "stateMachineArn": [self.state_machine.state_machine_arn],
                    "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                },
            ),
            targets=[
                targets.LambdaFunction(
                    self.ended_function, retry_attempts=4, max_event_age=Duration.hours(2),
                    dead_letter_queue=dead_letters,
                )
            ],
        )
