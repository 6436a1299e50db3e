"""Serving: the predict function behind an API Gateway REST API with API keys and throttling."""

import json
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.serving.contract import API_KEY_HEADER, PredictRequest
from infra.capture import Capture
from infra.data import Data
from infra.features import Features
from infra.nag import acknowledge
from infra.registry import Registry
from infra.runtime import FunctionFactory
from infra.settings import PlatformSettings
from infra.storage import acknowledge_prefix_grants, grant_objects


def api_gateway_schema(schema: dict[str, Any], version: apigw.JsonSchemaVersion | None = None) -> apigw.JsonSchema:
    """A pydantic model's JSON schema as an API Gateway model (draft 4): types, properties, required,
    array bounds and additionalProperties; anything else (a $ref, anyOf) is refused, not dropped."""
    known = {"type", "properties", "required", "items", "minItems", "maxItems", "additionalProperties", "title",
             "description"}
    if set(schema) - known:
        raise ValueError(f"API Gateway's model cannot say {sorted(set(schema) - known)}")
    return apigw.JsonSchema(
        schema=version,
        type=apigw.JsonSchemaType[schema["type"].upper()] if "type" in schema else None,
        properties={k: api_gateway_schema(v) for k, v in schema["properties"].items()} if "properties" in schema
        else None,
        required=schema.get("required"),
        items=api_gateway_schema(schema["items"]) if "items" in schema else None,
        min_items=schema.get("minItems"),
        max_items=schema.get("maxItems"),
        additional_properties=schema.get("additionalProperties"),
        title=schema.get("title"),
        description=schema.get("description"),
    )


# The shape of a predict request, from the model the handler and the OpenAPI document use; the
# handler checks each instance against the model's own signature, which API Gateway cannot know.
PREDICT_SCHEMA = api_gateway_schema(PredictRequest.model_json_schema(), apigw.JsonSchemaVersion.DRAFT4)


HEALTH_ANSWER = {"status": "ok"}
LIVE_ALIAS = "live"  # the predict function's alias that the API invokes


def error_template(code: str, message: str | None = None) -> str:
    """A gateway response's body in the function's error shape; without `message`, API Gateway's own
    (messageString is already a quoted JSON string)."""
    text = json.dumps(message) if message is not None else "$context.error.messageString"
    return '{"error":{"code":' + json.dumps(code) + ',"message":' + text + "}}"


# API Gateway's own refusals, in the function's error shape: (status or None for the type's own, code, message).
GATEWAY_RESPONSES: dict[str, tuple[str | None, str, str | None]] = {
    # An unknown route (API Gateway says 403 "Missing Authentication Token"): the function's own 404.
    "MISSING_AUTHENTICATION_TOKEN": ("404", "NotFound", "no such route"),
    "INVALID_API_KEY": (None, "Forbidden", f"no API key in the {API_KEY_HEADER} header, or one that is not valid"),
    "THROTTLED": (None, "Throttled", "too many requests for this API key; retry later"),
    "QUOTA_EXCEEDED": (None, "QuotaExceeded", "this API key's daily quota is used up"),
    "REQUEST_TOO_LARGE": (None, "PayloadTooLarge", "the request body is larger than API Gateway takes (10 MB)"),
    "BAD_REQUEST_BODY": (None, "InvalidInput", 'the body must be {"instances": [{feature: value, ...}, ...]}'),
    "API_CONFIGURATION_ERROR": (None, "InternalError", "internal error"),
    "DEFAULT_4XX": (None, "$context.error.responseType", None),
    "DEFAULT_5XX": (None, "InternalError", "internal error"),
}
RETRY_AFTER = {"THROTTLED": "1", "QUOTA_EXCEEDED": "3600"}


class Serving(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        settings: PlatformSettings,
        functions: FunctionFactory,
        data: Data,
        features: Features,
        registry: Registry,
        feedback_function: lambda_.IFunction | None = None,
    ):
        super().__init__(scope, id)
        self.function = functions.create(
            self,
            "PredictFunction",
            handler="functions.serving.handler.handler",
            service="serving",
            description="Answers predict requests with the champion model",
            memory_mb=settings.serving_memory_mb,
            timeout=Duration.seconds(29),
            reserved_concurrency=settings.serving_concurrency,
        )
        grant_objects(self.function, data.bucket, ["s3:GetObject"], "models/")
        acknowledge_prefix_grants(self.function.role, data.bucket, ["models/"])
        # Captures leave as log lines (no S3 grant here): a subscription delivers them to Firehose.
        self.capture = Capture(self, "Capture", settings, data.bucket, self.function)
        # The spec, champion alias and version items; an instance naming its entity reads its online features.
        registry.table.grant(self.function, "dynamodb:GetItem")
        features.online.grant(self.function, "dynamodb:BatchGetItem")

        access_logs = logs.LogGroup(
            self, "AccessLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            description="Predict API of the MLOps platform",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            deploy_options=apigw.StageOptions(
                stage_name=settings.api_stage,
                throttling_rate_limit=settings.api_rate_limit,
                throttling_burst_limit=settings.api_burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                tracing_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=False,
                ),
            ),
        )
        validator = self.api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        predict_model = self.api.add_model(
            "PredictRequest", content_type="application/json", schema=PREDICT_SCHEMA
        )
        # The API calls the `live` alias, never $LATEST: a code change reaches it through CodeDeploy's canary
        # (infra/rollout.py). One alias for everything that serves (provisioned concurrency goes on it too).
        self.live = lambda_.Alias(self, "Live", alias_name=LIVE_ALIAS, version=self.function.current_version,
                                  provisioned_concurrent_executions=settings.serving_provisioned_concurrency or None)
        integration = apigw.LambdaIntegration(self.live, proxy=True)

        # /health is answered by API Gateway itself (a mock integration): a liveness probe that
        # costs no Lambda invocation and that no unauthenticated caller can turn into one.
        health = self.api.root.add_resource("health")
        health.add_method(
            "GET",
            apigw.MockIntegration(
                request_templates={"application/json": json.dumps({"statusCode": 200})},
                passthrough_behavior=apigw.PassthroughBehavior.NEVER,
                integration_responses=[apigw.IntegrationResponse(
                    status_code="200", response_templates={"application/json": json.dumps(HEALTH_ANSWER)},
                )],
            ),
            method_responses=[apigw.MethodResponse(status_code="200")],
        )
        for kind, (status, code, message) in GATEWAY_RESPONSES.items():
            retry = RETRY_AFTER.get(kind)
            self.api.add_gateway_response(
                kind.replace("_", " ").title().replace(" ", ""),
                type=apigw.ResponseType.of(kind),
                status_code=status,
                response_headers={"Retry-After": f"'{retry}'"} if retry else None,
                templates={"application/json": error_template(code, message)},
            )

        v1 = self.api.root.add_resource("v1")
        # The OpenAPI document, generated by the function from its routes (one source): behind the key,
        # as every route that runs the function, so no unauthenticated caller can make it run.
        v1.add_resource("openapi.json").add_method("GET", integration, api_key_required=True)
        model = v1.add_resource("models").add_resource("{name}")
        model.add_method(
            "GET",
            integration,
            api_key_required=True,
            request_validator=validator,
            request_parameters={"method.request.path.name": True},
        )
        model.add_resource("predict").add_method(
            "POST",
            integration,
            api_key_required=True,
            request_validator=validator,
            request_models={"application/json": predict_model},
            request_parameters={"method.request.path.name": True},
        )

        if feedback_function is not None:
            # Labels go to a function of their own (infra/feedback.py); it checks the body (a label or a batch).
            model.add_resource("feedback").add_method(
                "POST",
                apigw.LambdaIntegration(feedback_function, proxy=True),
                api_key_required=True,
                request_validator=validator,
                request_parameters={"method.request.path.name": True},
            )

        self.api_key = self.api.add_api_key("ApiKey", description="Key of the platform's first client")
        plan = self.api.add_usage_plan(
            "UsagePlan",
            description="Throttling and quota for predict clients",
            # Per key, below the stage's limits: one client cannot take the whole stage.
            throttle=apigw.ThrottleSettings(
                rate_limit=settings.api_key_rate_limit, burst_limit=settings.api_key_burst_limit
            ),
            quota=apigw.QuotaSettings(limit=settings.api_quota_per_day, period=apigw.Period.DAY),
        )
        plan.add_api_key(self.api_key)
        plan.add_api_stage(stage=self.api.deployment_stage)

        # Each acknowledgement on the one resource it is about.
        for method in self.api.methods:
            cfn_method = method.node.default_child
            if isinstance(cfn_method, apigw.CfnMethod) and cfn_method.api_key_required:
                why = (f"{method.http_method} {method.resource.path} requires an API key bound to a throttled "
                       "usage plan (machine-to-machine clients); there is no IAM or Cognito authorizer.")
            else:
                why = f"{method.http_method} {method.resource.path} is a public liveness probe; it returns no data."
            acknowledge(cfn_method, "AwsSolutions-APIG4", why)
            acknowledge(cfn_method, "AwsSolutions-COG4", f"{why} Clients are programs, not users of a user pool.")
        acknowledge(self.api.deployment_stage.node.default_child, "AwsSolutions-APIG3",
                    "WAF is an account-level choice (cost, rules); the stage and each key are throttled.")
        logging_policy = "arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
        acknowledge(self.api.node.find_child("CloudWatchRole").node.default_child,
                    f"AwsSolutions-IAM4[Policy::{logging_policy}]",
                    "API Gateway's account-level logging role; AWS provides only this managed policy for it.")
