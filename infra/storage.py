"""Defaults shared by the platform's tables and buckets, and narrow IAM grants."""

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge


def removal_policy(name: str) -> RemovalPolicy:
    return RemovalPolicy.DESTROY if name == "destroy" else RemovalPolicy.RETAIN


def table(scope: Construct, id: str, policy: RemovalPolicy, ttl_attribute: str | None = None) -> dynamodb.Table:
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
        removal_policy=policy,
    )


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
        acknowledge(role, f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{prefix}*]",
                    f"Objects under {prefix} are created at run time; the grant is limited to that prefix.")
