"""Data: the versioned data bucket (uploads start pipelines) and the datasets table."""

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.settings import PlatformSettings
from infra.storage import ABORT_INCOMPLETE_UPLOADS, expiring, removal_policy, table


class Data(Construct):
    def __init__(self, scope: Construct, id: str, settings: PlatformSettings):
        super().__init__(scope, id)
        policy = removal_policy(settings.removal_policy)
        # Versioned: a log deleted or overwritten by mistake (or on purpose) can be recovered.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            versioned=settings.access_logs_versioned,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[
                expiring("expire-logs", settings.access_logs_retention_days, settings.noncurrent_version_days),
                ABORT_INCOMPLETE_UPLOADS,
            ],
            removal_policy=policy,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            versioned=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data-bucket/",
            # Retention per prefix (settings); datasets and models, the lineage, are kept by default.
            lifecycle_rules=[
                *(
                    expiring(f"expire-{prefix.rstrip('/')}", days, settings.noncurrent_version_days, prefix)
                    for prefix, days in settings.retention_days().items()
                    if days is not None
                ),
                ABORT_INCOMPLETE_UPLOADS,
            ],
            removal_policy=policy,
        )
        # Native EventBridge notifications, set on the bucket itself rather than through
        # CDK's notifications custom resource (one Lambda and managed policy fewer).
        self.bucket.node.default_child.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
        self.datasets: dynamodb.Table = table(self, "Datasets", policy,
                                              deletion_protection=settings.deletion_protection)
