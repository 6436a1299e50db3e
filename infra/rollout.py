"""Safe roll-outs: the challenger's alarms, the rule and function that roll a roll-out back when one fires, the
state machine that waits out its bake time, and the gradual deployment of the predict function's own code.

- Alarms on the metrics the predict function emits per variant (functions/serving/rollout.py), variant
  challenger: its error rate and its p90 latency, per minute, one period to alarm (an alarm within about a
  minute of the first bad minute, a rollback well within two).
- A rule on their "CloudWatch Alarm State Change" to ALARM invokes the roll-out function, which rolls back
  every running roll-out (registry.rollout.on_alarm).
- `mlops rollout start` starts the bake state machine (the execution named after the roll-out): a Wait
  state until the bake time's end, then the roll-out function promotes the challenger if none of the alarms
  is in ALARM, else rolls it back.
- The predict function's code deploys through its `live` alias with CodeDeploy (10% for 5 minutes, then all)
  under the same alarms and the serving ones: a code change that raises errors is rolled back by CodeDeploy.
"""

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.nag import acknowledge, default_policy
from infra.registry import Registry
from infra.runtime import FunctionFactory
from infra.settings import PlatformSettings
from infra.training import THROTTLED, TRANSIENT_ERRORS

CHALLENGER = {"variant": "challenger"}


class Rollouts(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        settings: PlatformSettings,
        functions: FunctionFactory,
        registry: Registry,
        namespace: str,
        live: lambda_.Alias,
        alarm_topic: sns.ITopic,
        serving_alarms: list[cw.IAlarm],
        dead_letters: sqs.IQueue,
    ):
        super().__init__(scope, id)
        period = Duration.seconds(settings.rollout_alarm_period_seconds)
        errors = cw.Metric(namespace=namespace, metric_name="ModelErrors", dimensions_map=CHALLENGER,
                           statistic="Average", period=period)
        latency = cw.Metric(namespace=namespace, metric_name="ModelLatency", dimensions_map=CHALLENGER,
                            statistic="p90", period=period)
        self.alarms = [
            cw.Alarm(
                self, "ChallengerErrors", metric=errors, threshold=settings.rollout_error_rate, evaluation_periods=1,
                datapoints_to_alarm=1, comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="A challenger in roll-out fails more requests than the roll-out allows: "
                                  "its roll-out is rolled back",
            ),
            cw.Alarm(
                self, "ChallengerLatency", metric=latency, threshold=settings.rollout_latency_ms,
                evaluation_periods=1, datapoints_to_alarm=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="A challenger in roll-out answers slower (p90) than the roll-out allows: "
                                  "its roll-out is rolled back",
            ),
        ]
        for alarm in self.alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))

        self.function = functions.create(
            self,
            "RolloutFunction",
            handler="functions.rollout.handler.handler",
            service="rollout",
            description="Promotes a roll-out's challenger after its bake time, or rolls it back when an alarm fires",
            memory_mb=512,
            timeout=Duration.seconds(30),
            reserved_concurrency=settings.rollout_concurrency,
            on_failure=dead_letters,
        )
        # Specs (a scan, for an alarm: every model's roll-out), versions, aliases, roll-outs and their audit entries.
        registry.table.grant(self.function, "dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan",
                             "dynamodb:ConditionCheckItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        registry.grant_announce(self.function)
        # The bake time's end reads these alarms' states (and no other alarm's).
        self.function.add_to_role_policy(iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"],
                                                             resources=[a.alarm_arn for a in self.alarms]))

        self.alarm_rule = events.Rule(
            self,
            "ChallengerAlarm",
            description="Rolls back the running roll-outs when a challenger alarm goes to ALARM",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                resources=[alarm.alarm_arn for alarm in self.alarms],
                detail={"state": {"value": ["ALARM"]}},
            ),
            targets=[targets.LambdaFunction(self.function, retry_attempts=4, max_event_age=Duration.minutes(30),
                                            dead_letter_queue=dead_letters)],
        )

        bake_end = tasks.LambdaInvoke(
            self,
            "EndOfBake",
            lambda_function=self.function,
            payload_response_only=True,
            retry_on_service_exceptions=False,
            payload=sfn.TaskInput.from_object({
                "action": "bake_end",
                "model": sfn.JsonPath.string_at("$.model"),
                "rollout_id": sfn.JsonPath.string_at("$.rollout_id"),
                "alarms": [alarm.alarm_name for alarm in self.alarms],
            }),
        )
        bake_end.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2)
        bake_end.add_retry(errors=THROTTLED, interval=Duration.seconds(10), max_attempts=8, backoff_rate=2,
                           max_delay=Duration.minutes(2), jitter_strategy=sfn.JitterType.FULL)
        bake = sfn.Wait(self, "Bake", comment="until the roll-out's bake time is over",
                        time=sfn.WaitTime.timestamp_path("$.bake_ends_at"))
        self.state_machine = sfn.StateMachine(
            self,
            "BakeStateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(bake.next(bake_end)),
            timeout=Duration.days(8),  # the longest bake time (7 days) and the end of it
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.LogGroup(self, "BakeLogs", retention=logs.RetentionDays.ONE_MONTH,
                                          removal_policy=RemovalPolicy.DESTROY),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,
            ),
        )
        bake_policy = default_policy(self.state_machine.role)
        logical_id = Stack.of(self).get_logical_id(self.function.node.default_child)
        acknowledge(bake_policy, f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
                    "The state machine may invoke any version of the roll-out function (CDK's LambdaInvoke grant).")
        acknowledge(bake_policy, "AwsSolutions-IAM5[Resource::*]",
                    "These actions accept no resource but '*': X-Ray tracing of the state machine "
                    "(xray:PutTraceSegments, xray:PutTelemetryRecords, xray:GetSamplingRules, "
                    "xray:GetSamplingTargets) and the delivery of its execution logs to CloudWatch Logs "
                    "(logs:CreateLogDelivery, logs:GetLogDelivery, logs:UpdateLogDelivery, logs:DeleteLogDelivery, "
                    "logs:ListLogDeliveries, logs:PutResourcePolicy, logs:DescribeResourcePolicies, "
                    "logs:DescribeLogGroups).")

        # The predict function's own code: CodeDeploy shifts its `live` alias 10% for 5 minutes, then all,
        # and rolls it back when any of these alarms fires meanwhile.
        live_errors = cw.Alarm(
            self, "LiveErrors",
            metric=cw.Metric(namespace="AWS/Lambda", metric_name="Errors", statistic="Sum",
                             period=Duration.minutes(1), dimensions_map={"FunctionName": live.lambda_.function_name,
                                             "Resource": f"{live.lambda_.function_name}:{live.alias_name}"}),
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description="The predict function's live alias failed invocations",
        )
        live_errors.add_alarm_action(cw_actions.SnsAction(alarm_topic))
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "PredictDeployment",
            alias=live,
            deployment_config=codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
            alarms=[live_errors, *serving_alarms, *self.alarms],
            auto_rollback=codedeploy.AutoRollbackConfig(failed_deployment=True, stopped_deployment=True,
                                                        deployment_in_alarm=True),
        )
        codedeploy_policy = "arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited"
        acknowledge(self.deployment_group.role.node.default_child, f"AwsSolutions-IAM4[Policy::{codedeploy_policy}]",
                    "CodeDeploy's service role for Lambda deployments; AWS maintains this limited policy for it "
                    "(shift an alias, read alarms, invoke hooks).")

