"""Data: the versioned data bucket (uploads start pipelines) and the datasets table."""

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge
from infra.settings import PlatformSettings
from infra.storage import removal_policy, table


class Data(Construct):
    def __init__(self, scope: Construct, id: str, settings: PlatformSettings):
        super().__init__(scope, id)
        policy = removal_policy(settings.removal_policy)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=policy,
        )
        acknowledge(self.access_logs, "AwsSolutions-S1",
                    "This is the access-log bucket itself; logging it to itself would loop.")
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            versioned=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-captures", prefix="captures/", expiration=Duration.days(90)),
                s3.LifecycleRule(id="old-versions", noncurrent_version_expiration=Duration.days(365)),
            ],
            removal_policy=policy,
        )
        # Native EventBridge notifications, set on the bucket itself rather than through
        # CDK's notifications custom resource (one Lambda and managed policy fewer).
        self.bucket.node.default_child.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
        self.datasets: dynamodb.Table = table(self, "Datasets", policy)
