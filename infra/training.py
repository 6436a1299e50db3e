"""Training: the pipeline state machine, its step functions, the upload rule that starts it, and
the rule that records a run FAILED when its execution fails, times out or is stopped."""

import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_cdk import CfnMapping, Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from functions.settings import StarterSettings
from functions.training.settings import TrainingSettings
from infra.data import Data
from infra.features import Features
from infra.nag import acknowledge, default_policy
from infra.registry import Registry
from infra.runtime import FUNCTIONS_DIR, FunctionFactory
from infra.settings import (
    DATA_STEPS,
    REGISTRY_STEPS,
    SAGEMAKER_STEPS,
    SAGEMAKER_TASK,
    SEARCH_STEPS,
    PlatformSettings,
    step_timeout_seconds,
)
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
    # The backend and the search (the training section below sits between PlanTraining and Train).
    ("PlanTraining", "training.handler.plan_training", "$.plan", ["runs/"], ["runs/"], {}),
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

# --- the training section, between PlanTraining and Train (Training.training_section) -------------------
#
#   PlanTraining ─► SearchStrategy ─inline─────► TrialsInline (a Map over $.plan.items) ───┐
#                        │         └distributed─► TrialsDistributed (ItemReader: trials.json) ┴► SelectBest ─┐
#                        └─(no search)────────────────────────────────────────────────────────► TrainingBackend
#   TrainingBackend ─sagemaker─► TrainOnSageMaker (createTrainingJob.sync) ─► CollectTraining ─► Evaluate
#                   └(lambda)──► Train ─► Evaluate
#
# Each trial is one Lambda invocation that records itself as a child run; a trial whose function fails
# past its retries is caught into a Pass state (its iteration ends; SelectBest records it FAILED).
# (state name, handler, result path, S3 prefixes read, S3 prefixes written, {table: actions}), as STEPS.
SECTION_STEPS: list[tuple[str, str, str, list[str], list[str], dict[str, list[str]]]] = [
    ("SelectBest", "training.handler.select_best", "$.search", ["runs/"], ["runs/"],
     {"registry": [PUT, UPDATE]}),  # a trial that left no result: its child run, FAILED
    ("CollectTraining", "training.handler.collect_training", "$.training", ["runs/"], ["runs/"], {}),
]
TRIAL = ("Trial", "training.handler.run_trial", ["runs/"], ["runs/"], {"registry": [PUT, UPDATE]})  # its child run
SEARCH_CHOICE = "SearchStrategy"
BACKEND_CHOICE = "TrainingBackend"
# What a trial is given (the Map's ItemSelector): its run, where the search is, and the trial (the Map's item).
TRIAL_INPUT = {"run_id": "$.run_id", "model": "$.model", "search_key": "$.plan.search_key",
               "trial": "$$.Map.Item.Value"}
# The plan's search -> the Map that runs it; its item processors' states (names are unique in a state machine).
SEARCH_MAPS = {"inline": "TrialsInline", "distributed": "TrialsDistributed"}
TRIAL_STATES = {"inline": ("InlineTrial", "InlineTrialNotFinished"),
                "distributed": ("DistributedTrial", "DistributedTrialNotFinished")}
# The SageMaker API's own errors (throttled, limits): another attempt with a new job name (-<retry count>).
SAGEMAKER_ERRORS = ["SageMaker.AmazonSageMakerException"]
# The scikit-learn framework image's registry account per region (the SageMaker Python SDK's
# image_uri_config/sklearn.json); the stack's region picks one (Fn::FindInMap).
SKLEARN_IMAGE_ACCOUNTS = {
    "af-south-1": "510948584623", "ap-east-1": "651117190479", "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698", "ap-northeast-3": "867004704886", "ap-south-1": "720646828776",
    "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285", "ca-central-1": "341280168497",
    "eu-central-1": "492215442770", "eu-north-1": "662702820516", "eu-south-1": "978288397137",
    "eu-west-1": "141502667606", "eu-west-2": "764974769150", "eu-west-3": "659782779980",
    "me-south-1": "801668240914", "sa-east-1": "737474898029", "us-east-1": "683313688378",
    "us-east-2": "257758044811", "us-west-1": "746614075791", "us-west-2": "246618743249",
}
SKLEARN_REPOSITORY = "sagemaker-scikit-learn"
# What the job's container installs (pip, from the source directory's requirements.txt) to run the entry
# point: the versions the Lambda image has, so the model it writes loads in the pipeline's functions.
JOB_PACKAGES = ("numpy", "pandas", "pyarrow", "pydantic", "scikit-learn", "scipy", "skops")
# SageMaker's scikit-learn container runs `sagemaker_program` from the source directory's root.
ENTRY_SHIM = ('"""SageMaker runs this: the training entry point of functions/training/train_entry.py."""\n'
              "import sys\n\nfrom functions.training.train_entry import main\n\nsys.exit(main())\n")


class RunResultWriter(sfn.ResultWriterV2):
    """The Distributed Map's ResultWriter, under the run's prefix: the state machine's S3 grant is the pipeline's
    own, on runs/ (Training.acknowledge_section), not CDK's on every bucket for a bucket given by a JSON path."""

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return []


def sagemaker_source(functions_dir: Path) -> Path:
    """The training job's source directory as SageMaker takes it (sourcedir.tar.gz): the entry point's shim,
    the `functions` package and requirements.txt. Built the same way from the same files (a stable asset)."""
    pins = [line.strip() for line in (functions_dir / "requirements.txt").read_text().splitlines()
            if line.strip().split("==")[0].lower() in JOB_PACKAGES]
    files = {"train_entry.py": ENTRY_SHIM.encode(), "requirements.txt": ("\n".join(pins) + "\n").encode()}
    for path in sorted(functions_dir.rglob("*.py")):
        if "__pycache__" not in path.parts:
            files[f"functions/{path.relative_to(functions_dir).as_posix()}"] = path.read_bytes()
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    target = Path(tempfile.gettempdir()) / f"mlops-sourcedir-{hashlib.sha256(archive).hexdigest()[:16]}"
    target.mkdir(exist_ok=True)
    (target / "sourcedir.tar.gz").write_bytes(archive)
    return target / "sourcedir.tar.gz"


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
        # The Distributed Map writes its results with ResultWriterV2 (bucket and prefix from the run's state).
        self.node.set_context("@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2", True)
        tables = {"datasets": data.datasets, "features": features.online, "registry": registry.table}

        def grant_items(fn: lambda_.IFunction, actions: dict[str, list[str]]) -> None:
            for table_name, table_actions in actions.items():
                table: dynamodb.Table = tables[table_name]
                table.grant(fn, *(f"dynamodb:{action}" for action in table_actions))

        def memory_mb(name: str) -> int:
            if name in DATA_STEPS + SEARCH_STEPS + SAGEMAKER_STEPS:
                return settings.training_memory_mb
            return settings.registry_step_memory_mb if name in REGISTRY_STEPS else settings.record_step_memory_mb

        def step_function(name: str, handler: str, reads: list[str], writes: list[str],
                          table_actions: dict[str, list[str]], *, environment: dict[str, str] | None = None,
                          concurrency: int | None = settings.pipeline_concurrency) -> lambda_.IFunction:
            fn = functions.create(
                self,
                f"{name}Function",
                handler=f"functions.{handler}",
                service="training",
                description=f"Training pipeline step {name}",
                memory_mb=memory_mb(name),
                timeout=Duration.seconds(step_timeout_seconds(settings, name)),
                environment=environment,
                reserved_concurrency=concurrency,
            )
            for prefix in reads:
                grant_objects(fn, data.bucket, ["s3:GetObject", "s3:GetObjectVersion"], prefix)
            for prefix in writes:
                grant_objects(fn, data.bucket, ["s3:GetObject", "s3:PutObject"], prefix)
            acknowledge_prefix_grants(fn.role, data.bucket, sorted(set(reads + writes)))
            grant_items(fn, table_actions)
            return fn

        def task(name: str, fn: lambda_.IFunction, result_path: str, timeout_of: str | None = None,
                 payload: sfn.TaskInput | None = None) -> tasks.LambdaInvoke:
            invoke = tasks.LambdaInvoke(
                self,
                name,
                lambda_function=fn,
                payload_response_only=True,
                retry_on_service_exceptions=False,
                result_path=result_path,
                payload=payload,
                task_timeout=sfn.Timeout.duration(
                    Duration.seconds(step_timeout_seconds(settings, timeout_of or name))),
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

        def caught(state: sfn.TaskStateBase | sfn.MapBase) -> None:
            """Every state of the run catches into RecordFailure, the error at $.error."""
            state.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")

        self.step_functions: dict[str, lambda_.IFunction] = {}
        states = []
        for name, handler, result_path, reads, writes, table_actions in STEPS:
            environment = None
            if name == "PlanTraining":
                environment = TrainingSettings.environment(
                    sagemaker_threshold_cells=settings.sagemaker_threshold_cells,
                    distributed_search_threshold=settings.search_distributed_threshold)
            fn = step_function(name, handler, reads, writes, table_actions, environment=environment)
            self.step_functions[name] = fn
            state = task(name, fn, result_path)
            caught(state)
            states.append(state)
        self.step_functions["RecordFailure"] = record_failure_fn
        for name in REGISTRY_CHANGES:  # the steps that change the registry announce each change on EventBridge
            registry.grant_announce(self.step_functions[name])
        # RegisterDataset names an earlier run of the same identity (dataset content, spec, code version)
        # that succeeded, unless the upload asks for a retrain: such a run trains nothing and goes
        # straight to RecordSuccess, which records the run it matches.
        register, *trains, record_success = states
        names = [name for name, *_ in STEPS]
        plan, train, evaluate = (states[names.index(name)] for name in ("PlanTraining", "Train", "Evaluate"))
        for state, following in zip(trains, [*trains[1:], record_success], strict=True):
            if state is plan:
                plan.next(self.training_section(settings, data, step_function, task, caught, train, evaluate))
                continue
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
            "logs:DescribeResourcePolicies, logs:DescribeLogGroups), and listing a SageMaker resource's tags "
            "(sagemaker:ListTags, CDK's training-job task).",
        )
        self.acknowledge_section(pipeline_policy, data)

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

    def training_section(self, settings: PlatformSettings, data: Data,
                         step_function: Callable[..., lambda_.IFunction], task: Callable[..., tasks.LambdaInvoke],
                         caught: Callable[[Any], None], train: sfn.State, evaluate: sfn.State) -> sfn.Choice:
        """The states between PlanTraining and Train (the diagram above SECTION_STEPS); returns the first."""
        section: dict[str, tasks.LambdaInvoke] = {}
        for name, handler, result_path, reads, writes, table_actions in SECTION_STEPS:
            fn = step_function(name, handler, reads, writes, table_actions)
            self.step_functions[name] = fn
            section[name] = task(name, fn, result_path)
            caught(section[name])
        trial_name, trial_handler, trial_reads, trial_writes, trial_tables = TRIAL
        trial_fn = step_function(trial_name, trial_handler, trial_reads, trial_writes, trial_tables,
                                 concurrency=settings.search_max_concurrency)
        self.step_functions[trial_name] = trial_fn

        def trial(mode: str) -> sfn.IChainable:
            """One trial: its function retried as every step's; past the retries its iteration still ends."""
            name, not_finished = TRIAL_STATES[mode]
            invoke = task(name, trial_fn, "$", timeout_of=trial_name)
            invoke.add_catch(sfn.Pass(self, not_finished, comment="The trial left no result: SelectBest records "
                                      "it FAILED"), errors=["States.ALL"], result_path="$.error")
            return invoke

        item_selector = {field: sfn.JsonPath.string_at(path) for field, path in TRIAL_INPUT.items()}
        inline = sfn.Map(self, SEARCH_MAPS["inline"], items_path="$.plan.items", item_selector=item_selector,
                         max_concurrency=settings.search_max_concurrency, result_path=sfn.JsonPath.DISCARD)
        inline.item_processor(trial("inline"))
        distributed = sfn.DistributedMap(
            self, SEARCH_MAPS["distributed"],
            item_reader=sfn.S3JsonItemReader(bucket_name_path=sfn.JsonPath.string_at("$.bucket"),
                                             key=sfn.JsonPath.string_at("$.plan.trials_key")),
            item_selector=item_selector, max_concurrency=settings.search_max_concurrency,
            tolerated_failure_percentage=settings.search_tolerated_failure_percentage,
            result_writer_v2=RunResultWriter(
                bucket_name_path=sfn.JsonPath.string_at("$.bucket"),
                prefix=sfn.JsonPath.format("runs/{}/{}/search/map", sfn.JsonPath.string_at("$.model"),
                                           sfn.JsonPath.string_at("$.run_id"))),
            map_execution_type=sfn.StateMachineType.STANDARD, label="trials", result_path=sfn.JsonPath.DISCARD,
        )
        distributed.item_processor(trial("distributed"))
        select_best = section["SelectBest"]
        for search_map in (inline, distributed):
            caught(search_map)
            search_map.next(select_best)

        backend = sfn.Choice(self, BACKEND_CHOICE)
        select_best.next(backend)
        train_on_sagemaker = self.sagemaker_task(settings, data)
        caught(train_on_sagemaker)
        train_on_sagemaker.next(section["CollectTraining"])
        section["CollectTraining"].next(evaluate)
        backend.when(sfn.Condition.string_equals("$.plan.backend", "sagemaker"), train_on_sagemaker).otherwise(train)
        return (sfn.Choice(self, SEARCH_CHOICE)
                .when(sfn.Condition.string_equals("$.plan.search", "inline"), inline)
                .when(sfn.Condition.string_equals("$.plan.search", "distributed"), distributed)
                .otherwise(backend))

    def sagemaker_task(self, settings: PlatformSettings, data: Data) -> tasks.SageMakerCreateTrainingJob:
        """A SageMaker training job (scikit-learn framework image) running the training entry point, and its role."""
        stack = Stack.of(self)
        accounts = CfnMapping(self, "SklearnImageAccounts", mapping={
            region: {"account": account} for region, account in SKLEARN_IMAGE_ACCOUNTS.items()})
        image_account = accounts.find_in_map(stack.region, "account")
        image = (f"{image_account}.dkr.ecr.{stack.region}.{stack.url_suffix}/{SKLEARN_REPOSITORY}:"
                 f"{settings.sagemaker_framework_version}-cpu-py3")
        source = s3_assets.Asset(self, "TrainingSource", path=str(sagemaker_source(FUNCTIONS_DIR)))

        # The job's role: the run's inputs and outputs under runs/ of the data bucket, the image, the source, logs.
        self.sagemaker_role = iam.Role(self, "TrainingJobRole",
                                       assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                                       description="Runs the pipeline's SageMaker training jobs")
        grant_objects(self.sagemaker_role, data.bucket, ["s3:GetObject", "s3:PutObject", "s3:ListBucket"], "runs/")
        acknowledge_prefix_grants(self.sagemaker_role, data.bucket, ["runs/"])
        source_arn = f"arn:{stack.partition}:s3:::{source.s3_bucket_name}/{source.s3_object_key}"
        self.sagemaker_role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[source_arn]))
        self.sagemaker_role.add_to_policy(iam.PolicyStatement(
            actions=["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            resources=[f"arn:{stack.partition}:ecr:{stack.region}:{image_account}:repository/{SKLEARN_REPOSITORY}"]))
        self.sagemaker_role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        log_group = f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/TrainingJobs"
        self.sagemaker_role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[log_group, f"{log_group}:log-stream:*"]))
        job_policy = default_policy(self.sagemaker_role)
        acknowledge(job_policy, "AwsSolutions-IAM5[Resource::*]",
                    "ecr:GetAuthorizationToken accepts no resource but '*' (pulling the scikit-learn image).")
        acknowledge(job_policy, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
                    "<AWS::AccountId>:log-group:/aws/sagemaker/TrainingJobs:log-stream:*]",
                    "SageMaker names a job's log streams at run time (<job name>/algo-1-<time>), in the one log "
                    "group SageMaker writes training jobs' logs to.")
        return tasks.SageMakerCreateTrainingJob(
            self, SAGEMAKER_TASK,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,  # createTrainingJob.sync: waits for the job's end
            training_job_name=sfn.JsonPath.format("{}-{}", sfn.JsonPath.string_at("$.plan.job.name"),
                                                  sfn.JsonPath.string_at("$$.State.RetryCount")),
            # The role's grants are the ones above: the task's own for JSON-path S3 locations would be on '*'.
            role=self.sagemaker_role.without_policy_updates(),
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=tasks.DockerImage.from_registry(image), training_input_mode=tasks.InputMode.FILE),
            hyperparameters={  # as the SageMaker Python SDK passes a script-mode job's (JSON strings)
                "sagemaker_program": json.dumps("train_entry.py"),
                "sagemaker_submit_directory": json.dumps(f"s3://{source.s3_bucket_name}/{source.s3_object_key}"),
                "sagemaker_region": json.dumps(stack.region),
                "sagemaker_container_log_level": "20",
            },
            input_data_config=[
                tasks.Channel(channel_name=channel, data_source=tasks.DataSource(s3_data_source=tasks.S3DataSource(
                    s3_data_type=tasks.S3DataType.S3_PREFIX, s3_location=tasks.S3Location.from_json_expression(path))))
                for channel, path in (("features", "$.plan.job.features_uri"), ("config", "$.plan.job.config_uri"))
            ],
            output_data_config=tasks.OutputDataConfig(
                s3_output_location=tasks.S3Location.from_json_expression("$.plan.job.output_uri")),
            resource_config=tasks.ResourceConfig(
                instance_count=1, instance_type=ec2.InstanceType(settings.sagemaker_instance_type.removeprefix("ml.")),
                volume_size=Size.gibibytes(settings.sagemaker_volume_gb)),
            stopping_condition=tasks.StoppingCondition(
                max_runtime=Duration.minutes(settings.sagemaker_max_runtime_minutes)),
            result_selector={"job_name": sfn.JsonPath.string_at("$.TrainingJobName"),
                             "status": sfn.JsonPath.string_at("$.TrainingJobStatus"),
                             "model_artifacts": sfn.JsonPath.string_at("$.ModelArtifacts.S3ModelArtifacts")},
            result_path="$.training_job",
            task_timeout=sfn.Timeout.duration(Duration.seconds(step_timeout_seconds(settings, SAGEMAKER_TASK))),
        ).add_retry(errors=SAGEMAKER_ERRORS, interval=Duration.seconds(10), max_attempts=3, backoff_rate=2)

    def acknowledge_section(self, pipeline_policy: Any, data: Data) -> None:
        """The state machine's grants for the training section: the Distributed Map's S3 reads and writes, its
        child executions, and the SageMaker training jobs (their names are made at run time)."""
        role = self.state_machine.role
        # The ItemReader reads trials.json, the ResultWriter writes the map run's results: both under runs/.
        grant_objects(role, data.bucket, ["s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts",
                                          "s3:AbortMultipartUpload"], "runs/")
        acknowledge_prefix_grants(role, data.bucket, ["runs/"])
        acknowledge(pipeline_policy, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
                    "<AWS::AccountId>:training-job/*]",
                    "A run's training job is named at run time (sagemaker:CreateTrainingJob, "
                    "sagemaker:DescribeTrainingJob, sagemaker:StopTrainingJob, sagemaker:AddTags: CDK's .sync task).")
        map_policy = self.state_machine.node.find_child("DistributedMapPolicy").node.default_child
        machine = json.dumps({"Fn::Select": [6, {"Fn::Split": [":", {"Ref": Stack.of(self).get_logical_id(
            self.state_machine.node.default_child)}]}]}, separators=(",", ":"))  # its name, as cdk-nag prints it
        executions = "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:" + machine
        acknowledge(map_policy, f"AwsSolutions-IAM5[Resource::{executions}:*]",
                    "The Distributed Map follows and stops the child executions of its own state machine, named at "
                    "run time (states:DescribeExecution, states:StopExecution).")
        acknowledge(map_policy, f"AwsSolutions-IAM5[Resource::{executions}/trials:*]",
                    "The Distributed Map may redrive its own map run's child executions, named at run time "
                    "(states:RedriveExecution).")
