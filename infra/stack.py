"""The platform's one stack: the parts composed, and the outputs a client needs."""

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.data import Data
from infra.features import Features
from infra.monitoring import Monitoring
from infra.registry import Registry
from infra.runtime import FunctionFactory
from infra.serving import Serving
from infra.settings import PlatformSettings
from infra.training import Training


class PlatformStack(Stack):
    def __init__(self, scope: Construct, id: str, settings: PlatformSettings, **kwargs):
        super().__init__(scope, id, description="Serverless MLOps platform", **kwargs)
        self.data = Data(self, "Data", settings)
        self.features = Features(self, "Features", settings)
        self.registry = Registry(self, "Registry", settings)
        functions = FunctionFactory(
            settings,
            {
                "DATA_BUCKET": self.data.bucket.bucket_name,
                "DATASETS_TABLE": self.data.datasets.table_name,
                "REGISTRY_TABLE": self.registry.table.table_name,
                "FEATURES_TABLE": self.features.online.table_name,
                "CODE_VERSION": settings.code_version,
                "POWERTOOLS_METRICS_NAMESPACE": "Mlops",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                "MODEL_CACHE_TTL_SECONDS": str(settings.model_cache_ttl_seconds),
                "MAX_REQUEST_BYTES": str(settings.max_request_bytes),
                "MAX_INSTANCES": str(settings.max_instances),
                "FEATURE_TTL_DAYS": str(settings.feature_ttl_days),
                "DRIFT_WINDOW_HOURS": str(settings.drift_window_hours),
                "DRIFT_PSI_THRESHOLD": str(settings.drift_psi_threshold),
                "DRIFT_KS_PVALUE": str(settings.drift_ks_pvalue),
            },
        )
        self.training = Training(self, "Training", settings, functions, self.data, self.features, self.registry)
        self.serving = Serving(self, "Serving", settings, functions, self.data, self.features, self.registry)
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
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
