"""Batch inference: a file put under batch/<model>/ is scored by a state machine with a Distributed Map.

    batch/<model>/<file> ─(S3 Object Created, EventBridge)─► StartBatch (the execution named after the object
    version) ─► PlanBatch ─► ScoreParts (Distributed Map over the plan's parts: ScoreBatchPart each) ─► CompleteBatch
                  └──────────────── any failure ─► RecordBatchFailure (_ERROR.json) ─► BatchFailed (its reason)

Outputs go under batch-output/<model>/<file>/<job id>/ (functions/batch/jobs.py).
"""

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from functions.batch.jobs import INPUT_PREFIX, OUTPUT_PREFIX
from functions.batch.settings import BatchSettings, BatchStarterSettings
from infra.data import Data
from infra.nag import acknowledge, default_policy
from infra.registry import Registry
from infra.runtime import FunctionFactory
from infra.settings import PlatformSettings
from infra.storage import acknowledge_prefix_grants, grant_objects
from infra.training import THROTTLED, TRANSIENT_ERRORS

MODELS_PREFIX = "models/"  # the registered versions' artifacts (ONNX, skops)
# (state name, handler, result path, S3 prefixes read, S3 prefixes written, registry actions)
STEPS: dict[str, tuple[str, str, list[str], list[str], list[str]]] = {
    "PlanBatch": ("batch.handler.plan_batch", "$.plan", [INPUT_PREFIX], [OUTPUT_PREFIX], ["GetItem"]),
    "ScoreBatchPart": ("batch.handler.score_batch_part", "$", [MODELS_PREFIX], [OUTPUT_PREFIX], ["GetItem"]),
    "CompleteBatch": ("batch.handler.complete_batch", "$.result", [], [OUTPUT_PREFIX], []),
    "RecordBatchFailure": ("batch.handler.record_batch_failure", "$.failure", [], [OUTPUT_PREFIX], []),
}
MAP_STATE = "ScoreParts"
# What a part is given (the Map's ItemSelector): its job, the pinned version, where to write, the part itself.
PART_INPUT = {"job_id": "$.job_id", "model": "$.model", "version": "$.plan.version",
              "output_prefix": "$.plan.output_prefix", "part": "$$.Map.Item.Value"}


class PrefixResultWriter(sfn.ResultWriterV2):
    """The ResultWriter under batch-output/: the state machine's own S3 grant (below), not CDK's on every bucket."""

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return []


class Batch(Construct):
    def __init__(self, scope: Construct, id: str, settings: PlatformSettings, functions: FunctionFactory,
                 data: Data, registry: Registry, dead_letters: sqs.IQueue):
        super().__init__(scope, id)
        self.node.set_context("@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2", True)
        timeout = Duration.minutes(settings.batch_timeout_minutes)
        environment = BatchSettings.environment(batch_max_bytes=settings.batch_max_bytes,
                                                batch_rows_per_part=settings.batch_rows_per_part)
        self.functions: dict[str, lambda_.IFunction] = {}
        for name, (handler, _, reads, writes, registry_actions) in STEPS.items():
            fn = functions.create(self, f"{name}Function", handler=f"functions.{handler}", service="batch",
                                  description=f"Batch inference step {name}", memory_mb=settings.batch_memory_mb,
                                  timeout=timeout, environment=environment,
                                  reserved_concurrency=(settings.batch_max_concurrency if name == "ScoreBatchPart"
                                                        else settings.pipeline_concurrency))
            for prefix in reads:
                grant_objects(fn, data.bucket, ["s3:GetObject", "s3:GetObjectVersion"], prefix)
            for prefix in writes:
                grant_objects(fn, data.bucket, ["s3:GetObject", "s3:PutObject"], prefix)
            acknowledge_prefix_grants(fn.role, data.bucket, sorted(set(reads + writes)))
            if registry_actions:
                registry.table.grant(fn, *(f"dynamodb:{action}" for action in registry_actions))
            self.functions[name] = fn

        def task(name: str, *, result_path: str | None = None) -> tasks.LambdaInvoke:
            invoke = tasks.LambdaInvoke(self, name, lambda_function=self.functions[name], payload_response_only=True,
                                        retry_on_service_exceptions=False,
                                        result_path=result_path or STEPS[name][1],
                                        task_timeout=sfn.Timeout.duration(timeout))
            invoke.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2)
            invoke.add_retry(errors=THROTTLED, interval=Duration.seconds(10), max_attempts=8, backoff_rate=2,
                             max_delay=Duration.minutes(2), jitter_strategy=sfn.JitterType.FULL)
            return invoke

        record_failure = task("RecordBatchFailure").next(
            sfn.Fail(self, "BatchFailed", cause_path="$.failure.reason", error="BatchFailed"))
        plan = task("PlanBatch")
        parts = sfn.DistributedMap(
            self, MAP_STATE,
            item_reader=sfn.S3JsonItemReader(bucket_name_path=sfn.JsonPath.string_at("$.bucket"),
                                             key=sfn.JsonPath.string_at("$.plan.items_key")),
            item_selector={name: sfn.JsonPath.string_at(path) for name, path in PART_INPUT.items()},
            max_concurrency=settings.batch_max_concurrency,
            # A part the model refuses ends its item with a report (CompleteBatch fails the job with it); an item that
            # fails past its retries fails the map at once: no job is complete without each of its parts.
            tolerated_failure_percentage=0,
            result_writer_v2=PrefixResultWriter(
                bucket_name_path=sfn.JsonPath.string_at("$.bucket"),
                prefix=sfn.JsonPath.format("{}_map", sfn.JsonPath.string_at("$.plan.output_prefix"))),
            map_execution_type=sfn.StateMachineType.STANDARD, label="parts", result_path=sfn.JsonPath.DISCARD,
        )
        parts.item_processor(task("ScoreBatchPart", result_path="$"))
        complete = task("CompleteBatch")
        for state in (plan, parts, complete):
            state.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")
        definition = plan.next(parts).next(complete).next(sfn.Succeed(self, "BatchSucceeded"))
        self.state_machine = sfn.StateMachine(
            self, "Jobs",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.minutes(settings.batch_job_timeout_minutes),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.LogGroup(self, "JobsLogs", retention=logs.RetentionDays.ONE_MONTH,
                                          removal_policy=RemovalPolicy.DESTROY),
                level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        self._acknowledge(data)

        # An upload under batch/<model>/ starts a job, named after the object version (a duplicate event: none).
        self.start_function = functions.create(
            self, "StartBatchFunction", handler="functions.batch.handler.start_batch", service="batch",
            description="Starts a batch inference job for a file uploaded under batch/<model>/",
            memory_mb=settings.record_step_memory_mb, timeout=Duration.seconds(settings.record_step_timeout_seconds),
            environment=BatchStarterSettings.environment(
                batch_state_machine_arn=self.state_machine.state_machine_arn),
            reserved_concurrency=settings.pipeline_concurrency, on_failure=dead_letters)
        self.state_machine.grant_start_execution(self.start_function)
        self.upload_rule = events.Rule(
            self, "BatchFileUploaded",
            description="Starts a batch inference job when a file is uploaded under batch/<model>/",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [data.bucket.bucket_name]},
                        "object": {"key": [{"prefix": INPUT_PREFIX}]}}),
            targets=[targets.LambdaFunction(self.start_function, retry_attempts=4, max_event_age=Duration.hours(2),
                                            dead_letter_queue=dead_letters)],
        )

    def _acknowledge(self, data: Data) -> None:
        role = self.state_machine.role
        # The ItemReader reads the plan's items file, the ResultWriter writes the map run's results: batch-output/.
        grant_objects(role, data.bucket, ["s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts",
                                          "s3:AbortMultipartUpload"], OUTPUT_PREFIX)
        acknowledge_prefix_grants(role, data.bucket, [OUTPUT_PREFIX])
        policy = default_policy(role)
        for fn in self.functions.values():
            logical_id = Stack.of(fn).get_logical_id(fn.node.default_child)
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
                        "The batch state machine may invoke any version of its own step function (CDK's LambdaInvoke "
                        "grant).")
        acknowledge(policy, "AwsSolutions-IAM5[Resource::*]",
                    "These actions accept no resource but '*': X-Ray tracing of the state machine "
                    "(xray:PutTraceSegments, xray:PutTelemetryRecords, xray:GetSamplingRules, xray:GetSamplingTargets) "
                    "and the delivery of its execution logs to CloudWatch Logs (logs:CreateLogDelivery, "
                    "logs:GetLogDelivery, logs:UpdateLogDelivery, logs:DeleteLogDelivery, logs:ListLogDeliveries, "
                    "logs:PutResourcePolicy, logs:DescribeResourcePolicies, logs:DescribeLogGroups).")
        map_policy = self.state_machine.node.find_child("DistributedMapPolicy").node.default_child
        machine = ('{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"'
                   + Stack.of(self).get_logical_id(self.state_machine.node.default_child) + '"}]}]}')
        executions = "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:" + machine
        acknowledge(map_policy, f"AwsSolutions-IAM5[Resource::{executions}:*]",
                    "The Distributed Map follows and stops the child executions of its own state machine, named at "
                    "run time (states:DescribeExecution, states:StopExecution).")
        acknowledge(map_policy, f"AwsSolutions-IAM5[Resource::{executions}/parts:*]",
                    "The Distributed Map may redrive its own map run's child executions, named at run time "
                    "(states:RedriveExecution).")
