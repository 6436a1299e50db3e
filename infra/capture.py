"""Capture delivery: the predict function's capture lines, from its log group to S3, off the request path.

The handler prints each capture as one marked JSON line (functions/serving/capture.py); Lambda sends it
to the function's log group. A subscription filter there selects the capture lines and hands them
(CloudWatch Logs' gzip'd DATA_MESSAGE envelopes) to a Data Firehose delivery stream, which
decompresses them, extracts each log event's message, partitions the records by model and by their
own UTC day and hour (a JQ query), and writes them batched and GZIP-compressed to
captures/<model>/dt=YYYY-MM-DD/hour=HH/; records it cannot process go to captures/_errors/.
Each service has its own role: CloudWatch Logs may only put records into this stream, Firehose may
only write objects under captures/ (and its own error log).
"""

from aws_cdk import ArnFormat, Aws, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from functions.serving.capture import ERRORS_PREFIX, FILTER_PATTERN, OBJECT_SUFFIX, PARTITION_QUERY, PREFIX
from infra.settings import PlatformSettings
from infra.storage import acknowledge_prefix_grants, grant_objects

# Firehose's expressions: the partition keys of PARTITION_QUERY, and its own error type and arrival time.
OBJECT_PREFIX = (f"{PREFIX}/!{{partitionKeyFromQuery:model}}/dt=!{{partitionKeyFromQuery:dt}}/"
                 "hour=!{partitionKeyFromQuery:hour}/")
ERROR_PREFIX = f"{ERRORS_PREFIX}/!{{firehose:error-output-type}}/dt=!{{timestamp:yyyy-MM-dd}}/"
Cfn = firehose.CfnDeliveryStream


def _processor(kind: str, **parameters: str) -> firehose.CfnDeliveryStream.ProcessorProperty:
    return Cfn.ProcessorProperty(type=kind, parameters=[
        Cfn.ProcessorParameterProperty(parameter_name=name, parameter_value=value)
        for name, value in parameters.items()
    ] or None)


class Capture(Construct):
    def __init__(self, scope: Construct, id: str, settings: PlatformSettings, bucket: s3.IBucket,
                 function: lambda_.Function):
        super().__init__(scope, id)
        # Firehose's own record of what it could not deliver or process.
        errors = logs.LogGroup(self, "DeliveryErrors", retention=logs.RetentionDays.ONE_MONTH,
                               removal_policy=RemovalPolicy.DESTROY)
        error_stream = logs.LogStream(self, "S3Delivery", log_group=errors, removal_policy=RemovalPolicy.DESTROY)

        self.delivery_role = iam.Role(
            self, "DeliveryRole", description="Lets Data Firehose write the captures to S3",
            # Only this account's delivery streams may use it (the confused-deputy guard Firehose documents).
            assumed_by=iam.ServicePrincipal("firehose.amazonaws.com",
                                            conditions={"StringEquals": {"sts:ExternalId": Aws.ACCOUNT_ID}}),
        )
        grant_objects(self.delivery_role, bucket, ["s3:PutObject", "s3:AbortMultipartUpload"], f"{PREFIX}/")
        self.delivery_role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"], resources=[bucket.bucket_arn]))
        self.delivery_role.add_to_policy(iam.PolicyStatement(
            actions=["logs:PutLogEvents"],
            resources=[Stack.of(self).format_arn(service="logs", resource="log-group",
                                                 resource_name=f"{errors.log_group_name}:log-stream:"
                                                               f"{error_stream.log_stream_name}",
                                                 arn_format=ArnFormat.COLON_RESOURCE_NAME)],
        ))
        acknowledge_prefix_grants(self.delivery_role, bucket, [f"{PREFIX}/"])

        config = Cfn.ExtendedS3DestinationConfigurationProperty(
            bucket_arn=bucket.bucket_arn,
            role_arn=self.delivery_role.role_arn,
            prefix=OBJECT_PREFIX,
            error_output_prefix=ERROR_PREFIX,
            # Batched: an object per partition at most every interval (or size); dynamic partitioning
            # takes 60 s and 64 MiB at least.
            buffering_hints=Cfn.BufferingHintsProperty(
                interval_in_seconds=settings.capture_buffer_seconds, size_in_m_bs=settings.capture_buffer_mb),
            compression_format="GZIP",
            file_extension=OBJECT_SUFFIX,
            dynamic_partitioning_configuration=Cfn.DynamicPartitioningConfigurationProperty(
                enabled=True, retry_options=Cfn.RetryOptionsProperty(duration_in_seconds=300)),
            processing_configuration=Cfn.ProcessingConfigurationProperty(enabled=True, processors=[
                # CloudWatch Logs sends gzip'd envelopes of log events: unzipped, and each event's message a record.
                _processor("Decompression", CompressionFormat="GZIP"),
                _processor("CloudWatchLogProcessing", DataMessageExtraction="true"),
                _processor("MetadataExtraction", MetadataExtractionQuery=PARTITION_QUERY, JsonParsingEngine="JQ-1.6"),
                _processor("AppendDelimiterToRecord"),  # newline-delimited records
            ]),
            cloud_watch_logging_options=Cfn.CloudWatchLoggingOptionsProperty(
                enabled=True, log_group_name=errors.log_group_name, log_stream_name=error_stream.log_stream_name),
        )
        self.stream = Cfn(
            self, "Stream",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=(
                Cfn.DeliveryStreamEncryptionConfigurationInputProperty(key_type="AWS_OWNED_CMK")),
            extended_s3_destination_configuration=config,
        )
        self.stream.node.add_dependency(self.delivery_role)  # its policy too: Firehose checks access on creation

        self.subscription_role = iam.Role(
            self, "SubscriptionRole", description="Lets CloudWatch Logs hand the capture lines to Firehose",
            assumed_by=iam.ServicePrincipal("logs.amazonaws.com", conditions={"StringLike": {
                "aws:SourceArn": Stack.of(self).format_arn(service="logs", resource="*")}}),
        )
        self.subscription_role.add_to_policy(iam.PolicyStatement(
            actions=["firehose:PutRecord", "firehose:PutRecordBatch"], resources=[self.stream.attr_arn]))
        self.subscription = logs.CfnSubscriptionFilter(
            self, "Subscription",
            log_group_name=function.log_group.log_group_name,
            filter_pattern=FILTER_PATTERN,
            destination_arn=self.stream.attr_arn,
            role_arn=self.subscription_role.role_arn,
        )
        # CloudWatch Logs sends a test record when the filter is created: the role must already allow it.
        self.subscription.node.add_dependency(self.subscription_role)
