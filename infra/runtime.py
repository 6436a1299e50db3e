"""How every function of the platform is packaged and given its role, logs and tracing.

All handlers ship in one container image (functions/Dockerfile): scikit-learn, pandas, scipy
and onnxruntime together exceed Lambda's 250 MB limit for zip packages and layers, while an
image may hold 10 GB. Each function is the same image with its own command (the handler).
`cdk synth` only stages the build context; Docker is needed at `cdk deploy`.
"""

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge, default_policy
from infra.settings import PlatformSettings

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"


class FunctionFactory:
    """Creates the platform's Lambda functions with one set of defaults."""

    def __init__(self, settings: PlatformSettings, common_env: dict[str, str]):
        self.settings = settings
        self.common_env = common_env

    def create(
        self,
        scope: Construct,
        id: str,
        *,
        handler: str,
        service: str,
        description: str,
        memory_mb: int = 1024,
        timeout: Duration | None = None,
        environment: dict[str, str] | None = None,
        reserved_concurrency: int | None = None,
        on_failure: sqs.IQueue | None = None,
    ) -> lambda_.DockerImageFunction:
        """A function; `on_failure`: where an asynchronous invocation goes once Lambda's retries are spent."""
        log_group = logs.LogGroup(
            scope,
            f"{id}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # An own role instead of the AWSLambdaBasicExecutionRole managed policy: it may
        # write to this function's log group only.
        role = iam.Role(
            scope,
            f"{id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs {handler}",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        function = lambda_.DockerImageFunction(
            scope,
            id,
            code=lambda_.DockerImageCode.from_image_asset(
                str(FUNCTIONS_DIR),
                cmd=[handler],
                exclude=["__pycache__", "**/__pycache__", "*.pyc"],
            ),
            description=description,
            memory_size=memory_mb,
            timeout=timeout or Duration.seconds(30),
            role=role,
            log_group=log_group,
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            architecture=lambda_.Architecture.X86_64,
            environment={
                **self.common_env,
                "POWERTOOLS_SERVICE_NAME": service,
                **(environment or {}),
            },
        )
        if on_failure is not None:
            function.configure_async_invoke(on_failure=destinations.SqsDestination(on_failure), retry_attempts=2,
                                            max_event_age=Duration.hours(6))
        acknowledge(default_policy(role), "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray tracing's xray:PutTraceSegments and xray:PutTelemetryRecords accept no resource but '*'.")
        return function

