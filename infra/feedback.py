"""Feedback: delayed labels, from the API (POST /v1/models/{name}/feedback) and from files under feedback/<model>/.

    POST .../feedback ─► FeedbackApiFunction ─► feedback table (one item per request id and row, written once)
    feedback/<model>/<file> ─(S3 Object Created, EventBridge)─► FeedbackFileFunction ─► the same table
                                                              └─► feedback-results/<model>/<file>.json
    the drift check reads the labels received in its window (index `received`) and joins them with captures

The API route runs in a function of its own, built from the API's handler module (one OpenAPI document for
every route), with a role of its own: it may write labels and read the registry, and nothing of the predict
role (no model artifacts); the predict role may not write labels.
"""

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.feedback.dynamo import RECEIVED_INDEX
from functions.feedback.files import INPUT_PREFIX, RESULTS_PREFIX
from functions.feedback.settings import FeedbackSettings
from infra.data import Data
from infra.registry import Registry
from infra.runtime import FunctionFactory
from infra.settings import PlatformSettings
from infra.storage import acknowledge_prefix_grants, grant_objects, removal_policy, table

WRITE_ACTIONS = ("dynamodb:PutItem", "dynamodb:BatchGetItem")  # a transaction's Puts need PutItem


class Feedback(Construct):
    def __init__(self, scope: Construct, id: str, settings: PlatformSettings, functions: FunctionFactory,
                 data: Data, registry: Registry, dead_letters: sqs.IQueue):
        super().__init__(scope, id)
        self.table: dynamodb.Table = table(self, "Labels", removal_policy(settings.removal_policy),
                                           deletion_protection=settings.deletion_protection)
        self.table.add_global_secondary_index(
            index_name=RECEIVED_INDEX,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="received_at", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        environment = FeedbackSettings.environment(feedback_table=self.table.table_name)

        self.api_function = functions.create(
            self, "FeedbackApiFunction", handler="functions.serving.handler.feedback", service="feedback",
            description="Stores labels sent to POST /v1/models/{name}/feedback", memory_mb=512,
            timeout=Duration.seconds(29), environment=environment,
            reserved_concurrency=settings.serving_concurrency)
        self.file_function = functions.create(
            self, "FeedbackFileFunction", handler="functions.feedback.handler.ingest_label_file", service="feedback",
            description="Stores the labels of a file uploaded under feedback/<model>/", memory_mb=1024,
            timeout=Duration.minutes(5), environment=environment,
            reserved_concurrency=settings.pipeline_concurrency, on_failure=dead_letters)
        for fn in (self.api_function, self.file_function):
            # The table only, not its index (CDK's table.grant would add index/*).
            fn.add_to_role_policy(iam.PolicyStatement(actions=list(WRITE_ACTIONS), resources=[self.table.table_arn]))
            registry.table.grant(fn, "dynamodb:GetItem")  # the spec, the champion alias and its classes
        grant_objects(self.file_function, data.bucket, ["s3:GetObject", "s3:GetObjectVersion"], INPUT_PREFIX)
        grant_objects(self.file_function, data.bucket, ["s3:PutObject"], RESULTS_PREFIX)
        acknowledge_prefix_grants(self.file_function.role, data.bucket, [INPUT_PREFIX, RESULTS_PREFIX])

        self.upload_rule = events.Rule(
            self, "LabelFileUploaded",
            description="Stores the labels of a file uploaded under feedback/<model>/",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [data.bucket.bucket_name]},
                        "object": {"key": [{"prefix": INPUT_PREFIX}]}}),
            targets=[targets.LambdaFunction(self.file_function, retry_attempts=4, max_event_age=Duration.hours(2),
                                            dead_letter_queue=dead_letters)],
        )

    def grant_read(self, fn: lambda_.Function) -> None:
        """A function that reads labels (the drift check's quality section): the table's name, and Query on the
        index of labels by arrival (nothing else)."""
        for name, value in FeedbackSettings.environment(feedback_table=self.table.table_name).items():
            fn.add_environment(name, value)
        fn.add_to_role_policy(iam.PolicyStatement(actions=["dynamodb:Query"],
                                                  resources=[f"{self.table.table_arn}/index/{RECEIVED_INDEX}"]))
