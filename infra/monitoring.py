"""Monitoring: the scheduled drift check, alarms and the platform's dashboard."""

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from functions.monitoring.events import DETAIL_TYPES
from functions.monitoring.events import SOURCE as MONITORING_SOURCE
from functions.monitoring.settings import MonitoringSettings
from infra.data import Data
from infra.nag import acknowledge, default_policy
from infra.registry import Registry
from infra.runtime import FunctionFactory
from infra.settings import PlatformSettings
from infra.storage import acknowledge_prefix_grants, grant_objects

NAMESPACE = "Mlops"


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        settings: PlatformSettings,
        functions: FunctionFactory,
        data: Data,
        registry: Registry,
        api_name: str,
        serving_function_name: str,
        state_machine: sfn.StateMachine,
        dead_letters: sqs.IQueue,
    ):
        super().__init__(scope, id)
        self.drift_function = functions.create(
            self,
            "DriftFunction",
            handler="functions.monitoring.handler.check_drift",
            service="monitoring",
            description="Compares captured requests with the training profile",
            memory_mb=2048,
            timeout=Duration.minutes(5),
            reserved_concurrency=settings.drift_concurrency,
            on_failure=dead_letters,
        )
        grant_objects(self.drift_function, data.bucket, ["s3:GetObject", "s3:ListBucket"], "captures/")
        grant_objects(self.drift_function, data.bucket, ["s3:PutObject"], "reports/")
        acknowledge_prefix_grants(self.drift_function.role, data.bucket, ["captures/", "reports/"])
        data.datasets.grant(self.drift_function, "dynamodb:GetItem")  # the champion's training profile
        registry.table.grant(self.drift_function, "dynamodb:GetItem", "dynamodb:Scan")  # specs (a scan), champions

        self.schedule = events.Rule(
            self,
            "DriftSchedule",
            description="Runs the drift check over the latest captured requests",
            schedule=events.Schedule.rate(Duration.minutes(settings.drift_schedule_minutes)),
            targets=[targets.LambdaFunction(self.drift_function, retry_attempts=2, dead_letter_queue=dead_letters)],
        )

        # Alarms notify a topic; subscribe to it (alarm_email) or route it onwards. CloudWatch
        # cannot publish to a topic encrypted with the AWS-managed key (alias/aws/sns), whose
        # policy cannot be changed: the topic has a key of its own, which CloudWatch may use.
        self.alarm_key = kms.Key(
            self,
            "AlarmsKey",
            description="Encrypts the platform's alarm topic; CloudWatch alarms may use it to publish",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,  # it protects notifications in flight only
            pending_window=Duration.days(7),
        )
        self.alarm_key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsPublishToTheEncryptedTopic",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],  # in a key policy: this key
        ))
        self.alarm_topic = sns.Topic(self, "Alarms", master_key=self.alarm_key, enforce_ssl=True)
        # The topic's policy replaces SNS's default one: it names who may publish (this account's alarms).
        stack = Stack.of(self)
        self.alarm_topic.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[self.alarm_topic.topic_arn],
            conditions={
                "ArnLike": {"aws:SourceArn": stack.format_arn(service="cloudwatch", resource="alarm",
                                                              resource_name="*",
                                                              arn_format=ArnFormat.COLON_RESOURCE_NAME)},
                "StringEquals": {"aws:SourceAccount": stack.account},
            },
        ))
        if settings.alarm_email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))

        # The loop: the drift check announces drift (Model Drift Detected) and puts each model's alarms when it
        # first checks the model (models are data, not part of the stack: functions/monitoring/alarms.py).
        self.model_alarm_prefix = f"{stack.stack_name}-model"
        monitoring_environment = MonitoringSettings.environment(
            alarm_prefix=self.model_alarm_prefix, alarm_topic_arn=self.alarm_topic.topic_arn,
            latency_alarm_ms=settings.latency_alarm_ms, drift_schedule_minutes=settings.drift_schedule_minutes,
            retrain_cooldown_hours=settings.retrain_cooldown_hours,
            retrain_feedback_days=settings.feedback_days())
        for name, value in monitoring_environment.items():
            self.drift_function.add_environment(name, value)
        default_bus = stack.format_arn(service="events", resource="event-bus", resource_name="default")
        self.drift_function.add_to_role_policy(iam.PolicyStatement(
            actions=["events:PutEvents"], resources=[default_bus],
            conditions={"StringEquals": {"events:source": MONITORING_SOURCE}}))
        model_alarms_arn = stack.format_arn(service="cloudwatch", resource="alarm",
                                            resource_name=f"{self.model_alarm_prefix}-*",
                                            arn_format=ArnFormat.COLON_RESOURCE_NAME)
        self.drift_function.add_to_role_policy(iam.PolicyStatement(actions=["cloudwatch:PutMetricAlarm"],
                                                                   resources=[model_alarms_arn]))
        acknowledge(default_policy(self.drift_function.role), "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:"
                    f"cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:{self.model_alarm_prefix}-*]",
                    "Models are data, not part of the stack: the drift check creates each model's alarms when it "
                    "first checks the model, under the stack's prefix only.")

        # Retraining: a rule on the monitor's events starts a retrain of the model (one per cooldown).
        self.retrain_function = functions.create(
            self,
            "RetrainFunction",
            handler="functions.monitoring.retrain_handler.start_retrain",
            service="monitoring",
            description="Starts a retrain of a model that drifted or decayed (one per model per cooldown)",
            environment=monitoring_environment,
            memory_mb=2048,  # the dataset version and its feedback rows, in memory as the pipeline's steps hold them
            timeout=Duration.minutes(5),
            reserved_concurrency=settings.drift_concurrency,  # events arrive one per check: no storm to absorb
            on_failure=dead_letters,
        )
        # The latest dataset version (plus the feedback rows, their features from the captures) goes to
        # datasets/<model>/retrain-<event>: read, head and write there; captures are read.
        grant_objects(self.retrain_function, data.bucket, ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
                                                           "s3:ListBucket"], "datasets/")
        grant_objects(self.retrain_function, data.bucket, ["s3:GetObject", "s3:ListBucket"], "captures/")
        acknowledge_prefix_grants(self.retrain_function.role, data.bucket, ["datasets/", "captures/"])
        data.datasets.grant(self.retrain_function, "dynamodb:GetItem", "dynamodb:Query")  # dataset versions
        # Specs, aliases and the RETRAIN item (read, claimed with its audit entry in a transaction, its run named).
        registry.table.grant(self.retrain_function, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        self.retrain_rule = events.Rule(
            self,
            "RetrainOnDriftOrDecay",
            description="Starts a retrain when a model's inputs drift or its quality degrades",
            event_pattern=events.EventPattern(source=[MONITORING_SOURCE], detail_type=list(DETAIL_TYPES)),
            targets=[targets.LambdaFunction(self.retrain_function, retry_attempts=2,
                                            dead_letter_queue=dead_letters)],
        )

        api = {"ApiName": api_name}
        predictions = cw.Metric(namespace="AWS/ApiGateway", metric_name="Count", dimensions_map=api, statistic="Sum")
        errors_5xx = cw.Metric(namespace="AWS/ApiGateway", metric_name="5XXError", dimensions_map=api, statistic="Sum")
        errors_4xx = cw.Metric(namespace="AWS/ApiGateway", metric_name="4XXError", dimensions_map=api, statistic="Sum")
        latency = cw.Metric(namespace="AWS/ApiGateway", metric_name="Latency", dimensions_map=api, statistic="p90")
        drift = cw.Metric(
            namespace=NAMESPACE, metric_name="DriftDetected", dimensions_map={"service": "monitoring"},
            statistic="Maximum",
        )
        # A run that fails, times out or is stopped: each is its own Step Functions metric.
        runs_failed = cw.MathExpression(
            expression="FILL(failed, 0) + FILL(timed_out, 0) + FILL(aborted, 0)",
            using_metrics={
                "failed": state_machine.metric_failed(statistic="Sum"),
                "timed_out": state_machine.metric_timed_out(statistic="Sum"),
                "aborted": state_machine.metric_aborted(statistic="Sum"),
            },
            label="Runs failed, timed out or stopped",
            period=Duration.minutes(5),
        )
        dead_letter_depth = cw.Metric(
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions_map={"QueueName": dead_letters.queue_name}, statistic="Maximum", period=Duration.minutes(5),
        )
        runs_succeeded = state_machine.metric_succeeded(statistic="Sum")
        serving_errors = cw.Metric(
            namespace="AWS/Lambda", metric_name="Errors", dimensions_map={"FunctionName": serving_function_name},
            statistic="Sum",
        )

        self.alarms = [
            cw.Alarm(
                self, "ServingErrors", metric=errors_5xx, threshold=1, evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="The predict API answered with server errors",
            ),
            cw.Alarm(
                self, "ServingLatency", metric=latency, threshold=settings.latency_alarm_ms, evaluation_periods=3,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="p90 latency of the predict API is above the target",
            ),
            cw.Alarm(
                self, "DriftDetected", metric=drift.with_(period=Duration.minutes(settings.drift_schedule_minutes)),
                threshold=1, evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="Inputs of a served model drifted from its training data",
            ),
            cw.Alarm(
                self, "PipelineFailures", metric=runs_failed, threshold=1, evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="A training run failed, timed out or was stopped",
            ),
            cw.Alarm(
                self, "FailedEvents", metric=dead_letter_depth, threshold=1, evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="An upload, a drift check or a run's end was not handled: "
                                  "the event is in the dead-letter queue",
            ),
        ]
        for alarm in self.alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(self.alarm_topic))

        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(24))
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Predictions", left=[predictions], right=[errors_4xx, errors_5xx, serving_errors]),
            cw.GraphWidget(title="Latency (p90, ms)", left=[latency]),
            cw.GraphWidget(title="Pipeline runs", left=[runs_succeeded, runs_failed]),
            cw.GraphWidget(
                title="Drift",
                left=[drift],
                right=[cw.Metric(namespace=NAMESPACE, metric_name="DriftSamples",
                                 dimensions_map={"service": "monitoring"}, statistic="Sum")],
            ),
            # One line per model: models are data (specs in the registry), not part of the stack.
            cw.GraphWidget(
                title="Drift score (max PSI) by model",
                left=[cw.MathExpression(
                    expression=f"SEARCH('{{{NAMESPACE},model,service}} MetricName=\"DriftScore\"', 'Maximum', 3600)",
                    label="",
                    period=Duration.hours(1),
                )],
            ),
            cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms),
            # Per model version: what drifted (0/1) and its share of drifted features, and the retrains.
            cw.GraphWidget(
                title="Drift by model version",
                left=[cw.MathExpression(
                    expression=f"SEARCH('{{{NAMESPACE},model,version}} MetricName=\"ModelDriftDetected\"', "
                               "'Maximum', 3600)",
                    label="", period=Duration.hours(1))],
                right=[cw.MathExpression(
                    expression=f"SEARCH('{{{NAMESPACE},model,version}} MetricName=\"DriftShare\"', 'Maximum', 3600)",
                    label="", period=Duration.hours(1))],
            ),
            cw.GraphWidget(
                title="Automatic retrains",
                left=[cw.Metric(namespace=NAMESPACE, metric_name=name, dimensions_map={"service": "monitoring"},
                                statistic="Sum") for name in ("RetrainsStarted", "RetrainsSkipped")],
            ),
        )
