"""Defaults shared by the platform's tables, buckets and queues, and narrow IAM grants."""

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge, default_policy


def removal_policy(name: str) -> RemovalPolicy:
    return RemovalPolicy.DESTROY if name == "destroy" else RemovalPolicy.RETAIN


def table(scope: Construct, id: str, policy: RemovalPolicy, *, deletion_protection: bool,
          ttl_attribute: str | None = None) -> dynamodb.Table:
    """An on-demand table keyed by (pk, sk), encrypted, with point-in-time recovery."""
    return dynamodb.Table(
        scope,
        id,
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=ttl_attribute,
        deletion_protection=deletion_protection,
        removal_policy=policy,
    )


# Parts of uploads never completed: invisible, yet stored and billed.
ABORT_INCOMPLETE_UPLOADS = s3.LifecycleRule(id="abort-incomplete-uploads",
                                            abort_incomplete_multipart_upload_after=Duration.days(7))


def expiring(id: str, days: int, noncurrent_days: int, prefix: str | None = None) -> s3.LifecycleRule:
    """Objects (under `prefix`) removed for good after `days`, in a versioned bucket too.

    The current version expires (S3 puts a delete marker on top), the version it leaves behind
    is deleted `noncurrent_days` later, and S3 removes the delete marker left alone (an
    expiration in days implies it).
    """
    return s3.LifecycleRule(id=id, prefix=prefix, expiration=Duration.days(days),
                            noncurrent_version_expiration=Duration.days(noncurrent_days))


def dead_letter_queue(scope: Construct, id: str) -> sqs.Queue:
    """Where events that could not be delivered or processed are kept, for 14 days (encrypted, TLS-only)."""
    queue = sqs.Queue(scope, id, encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                      retention_period=Duration.days(14))
    acknowledge(queue.node.default_child, "AwsSolutions-SQS3",
                "This queue is itself a dead-letter queue: of EventBridge targets and of asynchronous "
                "Lambda invocations (their on-failure destination); nothing consumes it to fail again.")
    return queue


def grant_objects(grantee: iam.IGrantable, bucket: s3.IBucket, actions: list[str], prefix: str) -> None:
    """Grant object actions under one key prefix, and say why the wildcard is needed."""
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=actions, resources=[bucket.arn_for_objects(f"{prefix}*")])
    )
    if "s3:ListBucket" not in actions:
        return
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        )
    )


def acknowledge_prefix_grants(role: iam.IRole, bucket: s3.IBucket, prefixes: list[str]) -> None:
    """Object keys are data: a grant can only name their prefix, never each key."""
    logical_id = Stack.of(bucket).get_logical_id(bucket.node.default_child)
    for prefix in prefixes:
        acknowledge(default_policy(role), f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{prefix}*]",
                    f"Objects under {prefix} are created at run time; the grant is limited to that prefix.")
