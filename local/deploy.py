"""Creates the synthesized stack's resources on the local cloud, through the AWS APIs.

This stands in for CloudFormation (moto's cannot yet take the CDK's asset-based template):
it walks the template in dependency order and makes the API calls CloudFormation would
make, with the template's own names, properties, environment variables, state machine
definition, rules and routes. Types with no local effect (API Gateway's account role,
Lambda permissions) are recorded but not called.

Some settings are created in moto, readable through the AWS APIs, but not acted on locally:
bucket lifecycle rules (moto expires nothing), and a rule target's dead-letter queue and retry
policy (they serve when EventBridge cannot deliver, and the local delivery to a deployed
function always can). A function's asynchronous invocation config is acted on: the local
runtime retries a failed event and sends it on to its on-failure destination (local/runtime.py).
"""

import json
import logging
from collections.abc import Callable
from typing import Any

import boto3

from local.runtime import FunctionConfig, LambdaRuntime
from local.template import Resource, StackTemplate

log = logging.getLogger("mlops.local")

# Resources whose effect the local cloud does not need (IAM is not enforced by moto, API
# Gateway is served by local.gateway from the template itself).
NO_LOCAL_EFFECT = {
    "AWS::Lambda::Permission",
    "AWS::ApiGateway::Account",
    "AWS::ApiGateway::Resource",
    "AWS::ApiGateway::Method",
    "AWS::ApiGateway::Deployment",
    "AWS::ApiGateway::RequestValidator",
    "AWS::ApiGateway::Model",
    "AWS::ApiGateway::GatewayResponse",
    "AWS::SNS::TopicPolicy",
    "AWS::CDK::Metadata",
}


class Deployer:
    def __init__(self, template: StackTemplate, session: boto3.Session, endpoint: str, runtime: LambdaRuntime):
        self.t = template
        self.endpoint = endpoint
        self.session = session
        self.runtime = runtime
        self._clients: dict[str, Any] = {}
        self.handlers: dict[str, Callable[[Resource, dict], dict]] = {
            "AWS::S3::Bucket": self._bucket,
            "AWS::S3::BucketPolicy": self._bucket_policy,
            "AWS::DynamoDB::Table": self._table,
            "AWS::IAM::Role": self._role,
            "AWS::IAM::Policy": self._policy,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::Logs::LogStream": self._log_stream,
            "AWS::Logs::SubscriptionFilter": self._subscription_filter,
            "AWS::KinesisFirehose::DeliveryStream": self._delivery_stream,
            "AWS::Lambda::Function": self._function,
            "AWS::Lambda::Version": self._version,
            "AWS::Lambda::Alias": self._alias,
            "AWS::CodeDeploy::Application": self._codedeploy_application,
            "AWS::CodeDeploy::DeploymentGroup": self._deployment_group,
            "AWS::StepFunctions::StateMachine": self._state_machine,
            "AWS::Events::Rule": self._rule,
            "AWS::ApiGateway::RestApi": self._rest_api,
            "AWS::ApiGateway::Stage": self._stage,
            "AWS::ApiGateway::ApiKey": self._api_key,
            "AWS::ApiGateway::UsagePlan": self._usage_plan,
            "AWS::ApiGateway::UsagePlanKey": self._usage_plan_key,
            "AWS::SNS::Topic": self._topic,
            "AWS::KMS::Key": self._key,
            "AWS::SQS::Queue": self._queue,
            "AWS::SQS::QueuePolicy": self._queue_policy,
            "AWS::Lambda::EventInvokeConfig": self._event_invoke_config,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::CloudWatch::Dashboard": self._dashboard,
        }

    def client(self, service: Any) -> Any:  # Any: the service names are boto3-stubs literals
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint, region_name=self.t.region)
        return self._clients[service]

    def deploy(self) -> dict[str, Any]:
        for resource in self.t.creation_order():
            props = self.t.resolve(resource.properties)
            if resource.type in self.handlers:
                self.t.attributes[resource.logical_id] = self.handlers[resource.type](resource, props)
            elif resource.type in NO_LOCAL_EFFECT:
                self.t.attributes[resource.logical_id] = {"Ref": self.t.physical_name(resource.logical_id)}
            else:
                raise NotImplementedError(f"the local cloud cannot create {resource.type} ({resource.logical_id})")
        return self.t.outputs()

    # --- S3
    def _bucket(self, r: Resource, p: dict) -> dict:
        name = p.get("BucketName") or self.t.physical_name(r.logical_id, lowercase=True, limit=63)
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name)
        if p.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if "BucketEncryption" in p:
            rules = [
                {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                for rule in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if "PublicAccessBlockConfiguration" in p:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
        if "LifecycleConfiguration" in p:
            s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": [_lifecycle_rule(rule)
                                                               for rule in p["LifecycleConfiguration"]["Rules"]]}
            )
        if p.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        return {"Ref": name, "Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}

    def _bucket_policy(self, r: Resource, p: dict) -> dict:
        document = dict(p["PolicyDocument"])
        # moto enforces bucket policies, and the local endpoint speaks plain HTTP (so that any
        # client works without a certificate): the TLS-only statement would refuse every
        # request. It is the only statement dropped; it stays in the template AWS deploys.
        document["Statement"] = [s for s in document.get("Statement", []) if not _denies_plain_http(s)]
        if document["Statement"]:
            self.client("s3").put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(document))
        return {"Ref": p["Bucket"]}

    # --- DynamoDB
    def _table(self, r: Resource, p: dict) -> dict:
        name = p.get("TableName") or self.t.physical_name(r.logical_id, limit=255)
        ddb = self.client("dynamodb")
        ddb.create_table(
            TableName=name,
            KeySchema=p["KeySchema"],
            AttributeDefinitions=p["AttributeDefinitions"],
            BillingMode=p.get("BillingMode", "PROVISIONED"),
            SSESpecification={"Enabled": bool(p.get("SSESpecification", {}).get("SSEEnabled"))},
            DeletionProtectionEnabled=bool(p.get("DeletionProtectionEnabled", False)),
            **({"ProvisionedThroughput": p["ProvisionedThroughput"]} if "ProvisionedThroughput" in p else {}),
            **({"GlobalSecondaryIndexes": p["GlobalSecondaryIndexes"]} if "GlobalSecondaryIndexes" in p else {}),
        )
        if "TimeToLiveSpecification" in p:
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=p["TimeToLiveSpecification"])
        if p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
            ddb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        return {"Ref": name, "Arn": self.t.arn("dynamodb", f"table/{name}")}

    # --- IAM and logs
    def _role(self, r: Resource, p: dict) -> dict:
        name = p.get("RoleName") or self.t.physical_name(r.logical_id)
        arn = self.client("iam").create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(p["AssumeRolePolicyDocument"])
        )["Role"]["Arn"]
        for policy in p.get("Policies", []):
            self.client("iam").put_role_policy(
                RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(policy["PolicyDocument"])
            )
        return {"Ref": name, "Arn": arn}

    def _policy(self, r: Resource, p: dict) -> dict:
        for role in p.get("Roles", []):
            self.client("iam").put_role_policy(
                RoleName=role, PolicyName=p["PolicyName"], PolicyDocument=json.dumps(p["PolicyDocument"])
            )
        return {"Ref": p["PolicyName"]}

    def _log_group(self, r: Resource, p: dict) -> dict:
        name = p.get("LogGroupName") or f"/aws/local/{self.t.physical_name(r.logical_id)}"
        self.client("logs").create_log_group(logGroupName=name)
        if "RetentionInDays" in p:
            self.client("logs").put_retention_policy(logGroupName=name, retentionInDays=p["RetentionInDays"])
        return {"Ref": name, "Arn": self.t.arn("logs", f"log-group:{name}:*")}

    def _log_stream(self, r: Resource, p: dict) -> dict:
        name = p.get("LogStreamName") or self.t.physical_name(r.logical_id, limit=512)
        self.client("logs").create_log_stream(logGroupName=p["LogGroupName"], logStreamName=name)
        return {"Ref": name}

    def _subscription_filter(self, r: Resource, p: dict) -> dict:
        name = p.get("FilterName") or self.t.physical_name(r.logical_id, limit=512)
        self.client("logs").put_subscription_filter(
            logGroupName=p["LogGroupName"], filterName=name, filterPattern=p["FilterPattern"],
            destinationArn=p["DestinationArn"], **({"roleArn": p["RoleArn"]} if "RoleArn" in p else {}),
        )
        return {"Ref": name}

    # --- Data Firehose (delivered as AWS delivers: local/firehose.py)
    def _delivery_stream(self, r: Resource, p: dict) -> dict:
        name = p.get("DeliveryStreamName") or self.t.physical_name(r.logical_id)
        fields = ["DeliveryStreamType", "DeliveryStreamEncryptionConfigurationInput",
                  "ExtendedS3DestinationConfiguration"]
        if set(p) - set(fields) - {"DeliveryStreamName", "Tags"}:
            raise NotImplementedError(f"the local cloud cannot create {r.logical_id}'s {sorted(set(p) - set(fields))}")
        arn = self.client("firehose").create_delivery_stream(DeliveryStreamName=name,
                                                             **{f: p[f] for f in fields if f in p})["DeliveryStreamARN"]
        return {"Ref": name, "Arn": arn}

    # --- Lambda
    def _function(self, r: Resource, p: dict) -> dict:
        name = p.get("FunctionName") or self.t.physical_name(r.logical_id)
        environment = p.get("Environment", {}).get("Variables", {})
        response = self.client("lambda").create_function(
            FunctionName=name,
            Role=p["Role"],
            PackageType=p.get("PackageType", "Zip"),
            Code={"ImageUri": p["Code"]["ImageUri"]} if "ImageUri" in p.get("Code", {}) else p["Code"],
            ImageConfig=p.get("ImageConfig", {}),
            Description=p.get("Description", ""),
            Timeout=p.get("Timeout", 3),
            MemorySize=p.get("MemorySize", 128),
            Environment={"Variables": environment},
            TracingConfig=p.get("TracingConfig", {"Mode": "PassThrough"}),
        )
        reserved = p.get("ReservedConcurrentExecutions")
        if reserved is not None:
            self.client("lambda").put_function_concurrency(FunctionName=name,
                                                           ReservedConcurrentExecutions=int(reserved))
        (handler,) = p["ImageConfig"]["Command"]
        self.runtime.register(
            FunctionConfig(
                name=name,
                arn=response["FunctionArn"],
                handler=handler,
                environment={k: str(v) for k, v in environment.items()},
                memory_mb=p.get("MemorySize", 128),
                timeout_s=p.get("Timeout", 3),
                log_group=p.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{name}",
                reserved_concurrency=None if reserved is None else int(reserved),
            )
        )
        return {"Ref": name, "Arn": response["FunctionArn"]}

    def _version(self, r: Resource, p: dict) -> dict:
        version = self.client("lambda").publish_version(FunctionName=p["FunctionName"],
                                                        Description=p.get("Description", ""))
        return {"Ref": version["FunctionArn"], "Version": version["Version"], "FunctionArn": version["FunctionArn"]}

    def _alias(self, r: Resource, p: dict) -> dict:
        # The local runtime runs the function's code as it is in functions/ (one version): an alias, as its
        # invocations, reaches that code. CodeDeploy's traffic shifting (the alias's UpdatePolicy) acts on a
        # code change of a deployed stack; `mlops up` deploys once.
        alias = self.client("lambda").create_alias(FunctionName=p["FunctionName"], Name=p["Name"],
                                                   FunctionVersion=str(p["FunctionVersion"]),
                                                   Description=p.get("Description", ""))
        return {"Ref": alias["AliasArn"], "AliasArn": alias["AliasArn"]}

    # --- CodeDeploy (created, so that the template's deployment group and its alarms can be read back)
    def _codedeploy_application(self, r: Resource, p: dict) -> dict:
        name = p.get("ApplicationName") or self.t.physical_name(r.logical_id, limit=100)
        self.client("codedeploy").create_application(applicationName=name,
                                                     computePlatform=p.get("ComputePlatform", "Server"))
        return {"Ref": name}

    def _deployment_group(self, r: Resource, p: dict) -> dict:
        name = p.get("DeploymentGroupName") or self.t.physical_name(r.logical_id, limit=100)
        alarms = p.get("AlarmConfiguration", {})
        rollback = p.get("AutoRollbackConfiguration", {})
        self.client("codedeploy").create_deployment_group(
            applicationName=p["ApplicationName"], deploymentGroupName=name, serviceRoleArn=p["ServiceRoleArn"],
            deploymentConfigName=p.get("DeploymentConfigName", ""),
            alarmConfiguration={"enabled": bool(alarms.get("Enabled")),
                                "alarms": [{"name": a["Name"]} for a in alarms.get("Alarms", [])]},
            autoRollbackConfiguration={"enabled": bool(rollback.get("Enabled")), "events": rollback.get("Events", [])},
            deploymentStyle={"deploymentType": p.get("DeploymentStyle", {}).get("DeploymentType", "IN_PLACE"),
                             "deploymentOption": p.get("DeploymentStyle", {}).get("DeploymentOption",
                                                                                  "WITHOUT_TRAFFIC_CONTROL")},
        )
        return {"Ref": name}

    # --- Step Functions
    def _state_machine(self, r: Resource, p: dict) -> dict:
        name = p.get("StateMachineName") or self.t.physical_name(r.logical_id, limit=80)
        arn = self.client("stepfunctions").create_state_machine(
            name=name,
            definition=p["DefinitionString"],
            roleArn=p["RoleArn"],
            type=p.get("StateMachineType", "STANDARD"),
            tracingConfiguration={"enabled": bool(p.get("TracingConfiguration", {}).get("Enabled"))},
        )["stateMachineArn"]
        return {"Ref": arn, "Arn": arn, "Name": name}

    # --- EventBridge
    def _rule(self, r: Resource, p: dict) -> dict:
        name = p.get("Name") or self.t.physical_name(r.logical_id)
        events = self.client("events")
        arn = events.put_rule(
            Name=name,
            Description=p.get("Description", ""),
            State=p.get("State", "ENABLED"),
            **({"EventPattern": json.dumps(p["EventPattern"])} if "EventPattern" in p else {}),
            **({"ScheduleExpression": p["ScheduleExpression"]} if "ScheduleExpression" in p else {}),
        )["RuleArn"]
        targets = [
            {k: v for k, v in t.items()
             if k in {"Id", "Arn", "Input", "InputPath", "InputTransformer", "RetryPolicy", "DeadLetterConfig"}}
            for t in p.get("Targets", [])
        ]
        if targets:
            events.put_targets(Rule=name, Targets=targets)
        return {"Ref": name, "Arn": arn}

    # --- API Gateway (the routes are served by local.gateway; keys and plans live in moto)
    def _rest_api(self, r: Resource, p: dict) -> dict:
        api = self.client("apigateway").create_rest_api(name=p.get("Name", r.logical_id),
                                                        description=p.get("Description", ""))
        return {"Ref": api["id"], "RootResourceId": api["rootResourceId"]}

    def _stage(self, r: Resource, p: dict) -> dict:
        return {"Ref": p["StageName"]}

    def _api_key(self, r: Resource, p: dict) -> dict:
        key = self.client("apigateway").create_api_key(
            name=p.get("Name") or self.t.physical_name(r.logical_id), enabled=p.get("Enabled", True),
            description=p.get("Description", ""),
        )
        return {"Ref": key["id"], "APIKeyId": key["id"]}

    def _usage_plan(self, r: Resource, p: dict) -> dict:
        plan = self.client("apigateway").create_usage_plan(
            name=p.get("UsagePlanName") or self.t.physical_name(r.logical_id),
            description=p.get("Description", ""),
            apiStages=[{"apiId": s["ApiId"], "stage": s["Stage"]} for s in p.get("ApiStages", [])],
            throttle={"rateLimit": p["Throttle"]["RateLimit"], "burstLimit": p["Throttle"]["BurstLimit"]}
            if "Throttle" in p else {},
            **({"quota": {"limit": p["Quota"]["Limit"], "period": p["Quota"]["Period"]}} if "Quota" in p else {}),
        )
        return {"Ref": plan["id"], "Id": plan["id"]}

    def _usage_plan_key(self, r: Resource, p: dict) -> dict:
        self.client("apigateway").create_usage_plan_key(usagePlanId=p["UsagePlanId"], keyId=p["KeyId"],
                                                        keyType=p["KeyType"])
        return {"Ref": p["KeyId"]}

    # --- SNS and CloudWatch
    def _topic(self, r: Resource, p: dict) -> dict:
        attributes = {"KmsMasterKeyId": p["KmsMasterKeyId"]} if "KmsMasterKeyId" in p else {}
        arn = self.client("sns").create_topic(
            Name=p.get("TopicName") or self.t.physical_name(r.logical_id, limit=256), Attributes=attributes
        )["TopicArn"]
        return {"Ref": arn, "TopicArn": arn, "TopicName": arn.rsplit(":", 1)[-1]}

    # --- KMS and SQS
    def _key(self, r: Resource, p: dict) -> dict:
        kms = self.client("kms")
        key = kms.create_key(Description=p.get("Description", ""), Policy=json.dumps(p["KeyPolicy"]),
                             KeyUsage=p.get("KeyUsage", "ENCRYPT_DECRYPT"),
                             KeySpec=p.get("KeySpec", "SYMMETRIC_DEFAULT"))["KeyMetadata"]
        if p.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=key["KeyId"])
        return {"Ref": key["KeyId"], "Arn": key["Arn"], "KeyId": key["KeyId"]}

    def _queue(self, r: Resource, p: dict) -> dict:
        name = p.get("QueueName") or self.t.physical_name(r.logical_id, limit=80)
        names = ["DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
                 "VisibilityTimeout", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled"]
        attributes = {n: str(p[n]).lower() if isinstance(p[n], bool) else str(p[n]) for n in names if n in p}
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"Ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url}

    def _queue_policy(self, r: Resource, p: dict) -> dict:
        policy = json.dumps(p["PolicyDocument"])
        for url in p["Queues"]:  # moto keeps the policy; it does not enforce it
            self.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})
        return {"Ref": self.t.physical_name(r.logical_id)}

    def _event_invoke_config(self, r: Resource, p: dict) -> dict:
        fields = ["MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"]
        self.client("lambda").put_function_event_invoke_config(
            FunctionName=p["FunctionName"], Qualifier=p.get("Qualifier", "$LATEST"),
            **{f: p[f] for f in fields if f in p},
        )
        self.runtime.configure_async(p["FunctionName"], max_retry_attempts=p.get("MaximumRetryAttempts"),
                                     max_event_age_s=p.get("MaximumEventAgeInSeconds"),
                                     on_failure=p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
        return {"Ref": self.t.physical_name(r.logical_id)}

    def _alarm(self, r: Resource, p: dict) -> dict:
        name = p.get("AlarmName") or self.t.physical_name(r.logical_id, limit=255)
        fields = ["Namespace", "MetricName", "Statistic", "ExtendedStatistic", "Period", "EvaluationPeriods",
                  "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData", "AlarmDescription",
                  "ActionsEnabled", "AlarmActions", "OKActions", "InsufficientDataActions", "Unit"]
        kwargs = {f: p[f] for f in fields if f in p}
        if "Dimensions" in p:
            kwargs["Dimensions"] = p["Dimensions"]
        if "Metrics" in p:  # metric math: the queries as the API takes them
            kwargs["Metrics"] = p["Metrics"]
        self.client("cloudwatch").put_metric_alarm(AlarmName=name, **kwargs)
        return {"Ref": name, "Arn": self.t.arn("cloudwatch", f"alarm:{name}")}

    def _dashboard(self, r: Resource, p: dict) -> dict:
        name = p.get("DashboardName") or self.t.physical_name(r.logical_id)
        self.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=p["DashboardBody"])
        return {"Ref": name}


def _lifecycle_rule(rule: dict) -> dict:
    """A lifecycle rule as CloudFormation writes it, as the S3 API takes it."""
    out: dict[str, Any] = {"ID": rule.get("Id", ""), "Status": rule["Status"],
                           "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": rule["ExpirationInDays"]}
    if "ExpiredObjectDeleteMarker" in rule:
        out["Expiration"] = {"ExpiredObjectDeleteMarker": rule["ExpiredObjectDeleteMarker"]}
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule["NoncurrentVersionExpiration"]["NoncurrentDays"]}
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    return out


def _denies_plain_http(statement: dict) -> bool:
    condition = statement.get("Condition", {}).get("Bool", {})
    return statement.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false"
