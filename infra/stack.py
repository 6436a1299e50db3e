"""The platform's one stack: the parts composed, and the outputs a client needs."""

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from functions.settings import Settings as FunctionSettings
from infra.batch import Batch
from infra.data import Data
from infra.features import Features
from infra.feedback import Feedback
from infra.monitoring import NAMESPACE, Monitoring
from infra.registry import Registry
from infra.rollout import Rollouts
from infra.runtime import FunctionFactory
from infra.serving import Serving
from infra.settings import PlatformSettings
from infra.storage import dead_letter_queue
from infra.training import Training


class PlatformStack(Stack):
    def __init__(self, scope: Construct, id: str, settings: PlatformSettings, **kwargs: Any):
        super().__init__(scope, id, description="Serverless MLOps platform", **kwargs)
        self.data = Data(self, "Data", settings)
        self.features = Features(self, "Features", settings)
        self.registry = Registry(self, "Registry", settings)
        functions = FunctionFactory(
            settings,
            {
                **FunctionSettings.environment(
                    data_bucket=self.data.bucket.bucket_name,
                    datasets_table=self.data.datasets.table_name,
                    registry_table=self.registry.table.table_name,
                    features_table=self.features.online.table_name,
                    code_version=settings.code_version,
                    metrics_namespace=NAMESPACE,
                    model_cache_ttl_seconds=settings.model_cache_ttl_seconds,
                    max_request_bytes=settings.max_request_bytes,
                    max_instances=settings.max_instances,
                    feature_ttl_days=settings.feature_ttl_days,
                    drift_window_hours=settings.drift_window_hours,
                    drift_psi_threshold=settings.drift_psi_threshold,
                    drift_ks_pvalue=settings.drift_ks_pvalue,
                ),
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
        )
        # Events that could not be delivered to, or handled by, an asynchronously invoked function.
        self.dead_letters = dead_letter_queue(self, "FailedEvents")
        self.training = Training(self, "Training", settings, functions, self.data, self.features, self.registry,
                                 self.dead_letters)
        self.feedback = Feedback(self, "Feedback", settings, functions, self.data, self.registry, self.dead_letters)
        self.serving = Serving(self, "Serving", settings, functions, self.data, self.features, self.registry,
                               feedback_function=self.feedback.api_function)
        self.batch = Batch(self, "Batch", settings, functions, self.data, self.registry, self.dead_letters)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            settings,
            functions,
            self.data,
            self.registry,
            api_name=self.serving.api.rest_api_name,
            serving_function_name=self.serving.function.function_name,
            state_machine=self.training.state_machine,
            dead_letters=self.dead_letters,
        )

        self.feedback.grant_read(self.monitoring.drift_function)  # the check's quality section
        self.feedback.grant_read(self.monitoring.retrain_function)  # the labels a retrain adds

        self.rollouts = Rollouts(
            self, "Rollouts", settings, functions, self.registry, NAMESPACE, self.serving.live,
            self.monitoring.alarm_topic,
            [alarm for alarm in self.monitoring.alarms if alarm.node.id in ("ServingErrors", "ServingLatency")],
            self.dead_letters,
        )

        outputs = {
            "DataBucketName": self.data.bucket.bucket_name,
            "DatasetsTableName": self.data.datasets.table_name,
            "RegistryTableName": self.registry.table.table_name,
            "FeaturesTableName": self.features.online.table_name,
            "StateMachineArn": self.training.state_machine.state_machine_arn,
            "ApiUrl": self.serving.api.url,
            "ApiKeyId": self.serving.api_key.key_id,
            "DriftFunctionName": self.monitoring.drift_function.function_name,
            "DashboardName": self.monitoring.dashboard.dashboard_name,
            "AlarmTopicArn": self.monitoring.alarm_topic.topic_arn,
            "FailedEventsQueueUrl": self.dead_letters.queue_url,
            "RolloutStateMachineArn": self.rollouts.state_machine.state_machine_arn,
            "BatchStateMachineArn": self.batch.state_machine.state_machine_arn,
            "FeedbackTableName": self.feedback.table.table_name,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
