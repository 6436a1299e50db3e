"""Infrastructure: what keeps the platform working and recoverable when things go wrong.

A run always ends recorded (timeouts and stops too) and alarms on; the short steps are small;
alarms can reach their topic; data is kept as long as the settings say and then removed for good;
asynchronous paths keep what they could not handle; each function's DynamoDB grant is what it uses;
each acknowledgement says what it covers.
"""

import json

import pytest

from infra.settings import PlatformSettings
from tests.infra.test_stack import _definition, pipeline_machine, resources


def functions_by_handler(template_dict) -> dict[str, tuple[str, dict]]:
    """handler -> (logical id, properties) of every function."""
    found = {}
    for logical_id, fn in resources(template_dict, "AWS::Lambda::Function").items():
        (command,) = fn["Properties"]["ImageConfig"]["Command"]
        found[command.removeprefix("functions.")] = (logical_id, fn["Properties"])
    return found


def getatt(value) -> str | None:
    return value["Fn::GetAtt"][0] if isinstance(value, dict) and "Fn::GetAtt" in value else None


# --- item 15: every run ends recorded; the alarm counts failures, timeouts and stops -------------------


def test_the_pipeline_may_take_as_long_as_its_steps_added_up(template_dict):
    definition = _definition(template_dict)
    tasks = {name: state for name, state in definition["States"].items() if state["Type"] == "Task"}
    assert definition["TimeoutSeconds"] >= sum(state["TimeoutSeconds"] for state in tasks.values())
    # Each task waits as long as its function may run (a trial's task, in each Map, as the trial function).
    by_handler = functions_by_handler(template_dict)
    timeouts = {props["Description"].removeprefix("Training pipeline step "): props["Timeout"]
                for _, props in by_handler.values() if props["Description"].startswith("Training pipeline step ")}
    trials = {state["TimeoutSeconds"] for map_state in definition["States"].values() if map_state["Type"] == "Map"
              for state in map_state["ItemProcessor"]["States"].values() if state["Type"] == "Task"}
    assert trials == {timeouts.pop("Trial")}
    # The SageMaker task waits for its job (tests/infra/test_training.py): it has no function.
    assert {name: state["TimeoutSeconds"] for name, state in tasks.items()
            if ":sagemaker:" not in state["Resource"]} == timeouts


def test_settings_refuse_a_pipeline_timeout_shorter_than_its_steps():
    with pytest.raises(ValueError, match="less than its steps' timeouts added up"):
        PlatformSettings.from_context({"pipeline_timeout_minutes": 60})
    assert PlatformSettings.from_context({"pipeline_timeout_minutes": 60, "training_timeout_minutes": 5,
                                          "sagemaker_max_runtime_minutes": 1, "sagemaker_startup_minutes": 1})


@pytest.mark.parametrize("handler, memory_mb, timeout_s", [
    ("training.handler.record_success", 512, 60),
    ("training.handler.record_failure", 512, 60),
    ("training.handler.start_pipeline", 512, 60),
    ("training.handler.record_execution_end", 512, 60),
    ("registry.handler.register_model", 1024, 300),
    ("registry.handler.promote", 1024, 300),
    ("training.handler.train", 3008, 900),
    ("features.handler.publish_features", 3008, 900),  # every entity of the largest dataset, off the critical path
])
def test_short_steps_get_short_timeouts_and_small_memory(template_dict, handler, memory_mb, timeout_s):
    _, props = functions_by_handler(template_dict)[handler]
    assert (props["MemorySize"], props["Timeout"]) == (memory_mb, timeout_s)


def test_an_execution_that_ends_unrecorded_marks_its_run_failed(template_dict):
    machine_id, _ = pipeline_machine(template_dict)
    rules = [r["Properties"] for r in resources(template_dict, "AWS::Events::Rule").values()
             if r["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]]
    (rule,) = rules
    assert rule["EventPattern"]["detail-type"] == ["Step Functions Execution Status Change"]
    assert rule["EventPattern"]["detail"] == {"stateMachineArn": [{"Ref": machine_id}],
                                              "status": ["FAILED", "TIMED_OUT", "ABORTED"]}
    (target,) = rule["Targets"]
    logical_id, _ = functions_by_handler(template_dict)["training.handler.record_execution_end"]
    assert getatt(target["Arn"]) == logical_id


def test_the_failure_alarm_counts_failed_timed_out_and_aborted_runs(template_dict):
    (alarm,) = [a["Properties"] for a in resources(template_dict, "AWS::CloudWatch::Alarm").values()
                if "Metrics" in a["Properties"]]
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    (expression,) = [q for q in alarm["Metrics"] if q.get("ReturnData", True)]
    metrics = {q["MetricStat"]["Metric"]["MetricName"]: q["Id"] for q in queries.values() if "MetricStat" in q}
    assert set(metrics) == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    for query_id in metrics.values():  # each one summed, a missing datapoint counted as 0
        assert f"FILL({query_id}, 0)" in expression["Expression"]
    assert expression["Expression"].count("+") == 2
    assert alarm["Threshold"] == 1 and alarm["AlarmActions"]


# --- item 16: a failed execution's cause is the run's reason -----------------------------------------


def test_a_failed_execution_carries_the_runs_reason_as_its_cause(template_dict):
    states = _definition(template_dict)["States"]
    assert states["RecordFailure"]["ResultPath"] == "$.run"
    failed = states["RunFailed"]
    assert failed["Type"] == "Fail" and failed["CausePath"] == "$.run.failure_reason" and "Cause" not in failed


# --- item 18: alarms can reach their topic ---------------------------------------------------------


def test_the_alarm_topic_uses_a_rotating_key_that_cloudwatch_may_use(template_dict):
    (topic_id, topic), = resources(template_dict, "AWS::SNS::Topic").items()
    key_id = getatt(topic["Properties"]["KmsMasterKeyId"])
    assert key_id is not None, f"the AWS-managed key cannot be used by CloudWatch: {topic['Properties']}"
    assert "alias/aws/sns" not in json.dumps(topic["Properties"])
    key = template_dict["Resources"][key_id]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    (cloudwatch,) = [s for s in key["Properties"]["KeyPolicy"]["Statement"]
                     if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch["Effect"] == "Allow" and set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    # The topic's policy lets this account's alarms publish (it replaces SNS's default policy).
    (policy,) = resources(template_dict, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    (publish,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                  if s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert publish["Action"] == "sns:Publish" and "aws:SourceAccount" in publish["Condition"]["StringEquals"]


# --- items 19 and 21: retention that removes data; versioned logs; protected tables ------------------


def _lifecycle(bucket: dict) -> dict[str, dict]:
    return {rule.get("Prefix", ""): rule for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}


def test_data_expires_per_prefix_noncurrent_versions_included_and_lineage_is_kept(template_dict):
    (bucket,) = [b for b in resources(template_dict, "AWS::S3::Bucket").values()
                 if "NotificationConfiguration" in b["Properties"]]
    rules = _lifecycle(bucket)
    defaults = PlatformSettings()
    for prefix, days in {"captures/": 90, "reports/": 365, "runs/": 365}.items():
        rule = rules[prefix]
        assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == days
        # Expired data is gone for good: its noncurrent version is deleted too (and the delete marker
        # left alone is then removed by S3, which an expiration in days implies).
        assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": defaults.noncurrent_version_days}
    # Datasets and models are lineage: no rule expires them, nor their older versions.
    for rule in rules.values():
        assert rule.get("Prefix", "") not in {"", "datasets/", "models/"} or set(rule) <= {
            "Id", "Status", "Prefix", "AbortIncompleteMultipartUpload"}, rule


def test_retention_follows_the_settings():
    from infra.settings import PlatformSettings as Settings

    settings = Settings.from_context({"captures_retention_days": 7, "datasets_retention_days": 400,
                                      "runs_retention_days": None})
    assert settings.retention_days() == {"captures/": 7, "reports/": 365, "runs/": None, "datasets/": 400,
                                         "models/": None}
    assert settings.feedback_days() == 7  # a retrain searches the captures that are kept, not beyond
    assert Settings.from_context({"captures_retention_days": None}).feedback_days() == 14


def test_the_access_log_bucket_is_versioned_and_its_old_versions_expire(template_dict):
    (logs,) = [b for b in resources(template_dict, "AWS::S3::Bucket").values()
               if "NotificationConfiguration" not in b["Properties"]]
    assert logs["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = [r for r in logs["Properties"]["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert rule["ExpirationInDays"] == 365 and "NoncurrentVersionExpiration" in rule


def test_tables_are_protected_from_deletion_while_retained(template_dict):
    for table in resources(template_dict, "AWS::DynamoDB::Table").values():
        assert table["Properties"]["DeletionProtectionEnabled"] is True
        assert table["DeletionPolicy"] == "Retain"
    assert PlatformSettings.from_context({"removal_policy": "destroy"}).deletion_protection is False
    assert PlatformSettings.from_context({"removal_policy": "destroy",
                                          "table_deletion_protection": True}).deletion_protection is True


# --- item 20: reserved concurrency; dead letters for every asynchronous path ------------------------


def test_pipeline_and_drift_functions_are_capped_and_serving_is_not(template_dict):
    for handler, (_, props) in functions_by_handler(template_dict).items():
        reserved = props.get("ReservedConcurrentExecutions")
        if handler == "training.handler.run_trial":  # as many as the search's Map runs at once
            assert reserved == PlatformSettings().search_max_concurrency, handler
        elif handler == "batch.handler.score_batch_part":  # as many as the batch Map runs at once
            assert reserved == PlatformSettings().batch_max_concurrency, handler
        elif handler.startswith(("training.", "data.", "features.", "registry.", "batch.", "feedback.")):
            assert reserved == 5, handler
        elif handler.startswith("monitoring."):
            assert reserved == 1, handler
        elif handler.startswith("rollout."):
            assert reserved == PlatformSettings().rollout_concurrency, handler
        else:
            assert reserved is None, handler  # serving draws on the account's pool, which the caps protect


def test_every_asynchronous_path_has_a_dead_letter_queue_with_an_alarm(template_dict):
    (queue_id, queue), = resources(template_dict, "AWS::SQS::Queue").items()
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    (policy,) = resources(template_dict, "AWS::SQS::QueuePolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)
    configs = {getatt(c["Properties"]["FunctionName"]) or c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
               for c in resources(template_dict, "AWS::Lambda::EventInvokeConfig").values()}
    rules = resources(template_dict, "AWS::Events::Rule")
    # uploads (datasets, batch files, label files), the drift schedule, executions' ends, challenger alarms, retrains
    assert len(rules) == 7
    for rule_id, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            assert getatt(target["DeadLetterConfig"]["Arn"]) == queue_id, rule_id
            # EventBridge may send to the queue (the rule's own ARN in the condition).
            assert any(s["Effect"] == "Allow" and s["Principal"] == {"Service": "events.amazonaws.com"}
                       and getatt(s["Condition"]["ArnEquals"]["aws:SourceArn"]) == rule_id for s in statements)
            # The function EventBridge invokes asynchronously sends what it fails on to the queue.
            config = configs[getatt(target["Arn"])]
            assert getatt(config["DestinationConfig"]["OnFailure"]["Destination"]) == queue_id
            assert config["MaximumRetryAttempts"] == 2
    (depth,) = [a["Properties"] for a in resources(template_dict, "AWS::CloudWatch::Alarm").values()
                if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"]
    assert depth["Namespace"] == "AWS/SQS" and depth["Threshold"] == 1 and depth["AlarmActions"]
    assert depth["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]


# --- item 22: each function's DynamoDB actions are what its code uses --------------------------------

# handler -> table -> the DynamoDB actions its store calls make (update this when a handler's store calls
# change: moto does not enforce IAM, only AWS does).
DYNAMODB_ACTIONS: dict[str, dict[str, set[str]]] = {
    "data.handler.register_dataset": {"Registry": {"GetItem", "UpdateItem"},
                                      "Datasets": {"GetItem", "PutItem", "UpdateItem"}},
    "data.handler.validate_dataset": {},
    "features.handler.build_features": {},
    "features.handler.publish_features": {"Online": {"BatchWriteItem"}},
    "training.handler.plan_training": {},
    "training.handler.train": {},
    "training.handler.select_best": {"Registry": {"PutItem", "UpdateItem"}},  # a trial that left no result
    "training.handler.run_trial": {"Registry": {"PutItem", "UpdateItem"}},  # its child run
    "training.handler.collect_training": {},
    "training.handler.evaluate": {},
    "registry.handler.register_model": {"Registry": {"GetItem", "PutItem", "UpdateItem"}},
    "registry.handler.promote": {"Registry": {"GetItem", "PutItem", "UpdateItem", "Query", "ConditionCheckItem"}},
    "training.handler.record_success": {"Registry": {"UpdateItem"}},
    "training.handler.record_failure": {"Registry": {"GetItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"}},
    "training.handler.start_pipeline": {"Registry": {"PutItem"}},
    "training.handler.record_execution_end": {"Registry": {"GetItem", "UpdateItem", "DeleteItem",
                                                           "ConditionCheckItem"}},
    "serving.handler.handler": {"Registry": {"GetItem"}, "Online": {"BatchGetItem"}},  # enrichment by entity id
    # Specs (a scan), versions, aliases and roll-outs; an alias move or roll-out change is a transaction.
    "rollout.handler.handler": {"Registry": {"GetItem", "Query", "Scan", "PutItem", "UpdateItem",
                                             "ConditionCheckItem"}},
    "batch.handler.start_batch": {},
    "batch.handler.plan_batch": {"Registry": {"GetItem"}},  # the spec, the champion alias, the version
    "batch.handler.score_batch_part": {"Registry": {"GetItem"}},  # the pinned version and its spec
    "batch.handler.complete_batch": {},
    "batch.handler.record_batch_failure": {},
    # ... and the labels that arrived in its window (the feedback table's arrival index).
    "monitoring.handler.check_drift": {"Registry": {"GetItem", "Scan"}, "Datasets": {"GetItem"}, "Feedback": {"Query"}},
    # The latest dataset version; the RETRAIN item and its audit entry in one transaction.
    "monitoring.retrain_handler.start_retrain": {"Datasets": {"Query", "GetItem"},
                                                 "Registry": {"GetItem", "PutItem", "UpdateItem"},
                                                 "Feedback": {"Query"}},  # the labels received since the dataset
    # Labels written once each (a transaction's Puts), the rows already labelled read back; the champion's classes.
    "serving.handler.feedback": {"Feedback": {"PutItem", "BatchGetItem"}, "Registry": {"GetItem"}},
    "feedback.handler.ingest_label_file": {"Feedback": {"PutItem", "BatchGetItem"}, "Registry": {"GetItem"}},
}
TABLES = {"Registry": "AWS::DynamoDB::Table", "Datasets": "AWS::DynamoDB::Table", "Online": "AWS::DynamoDB::Table",
          "Feedback": "AWS::DynamoDB::Table"}


def _table_kind(template_dict, logical_id: str) -> str:
    for kind in TABLES:
        if kind in logical_id and template_dict["Resources"][logical_id]["Type"] == "AWS::DynamoDB::Table":
            return kind
    raise AssertionError(f"{logical_id} is not one of the platform's tables")


def _index_table(target: object) -> str | None:
    """The table of a grant on one of its indexes ({"Fn::Join": ["", [table ARN, "/index/<name>"]]})."""
    if isinstance(target, dict) and "Fn::Join" in target:
        parts = target["Fn::Join"][1]
        if len(parts) == 2 and isinstance(parts[1], str) and parts[1].startswith("/index/"):
            return getatt(parts[0])
    return None


def test_each_function_is_granted_exactly_the_dynamodb_actions_it_uses(template_dict):
    roles: dict[str, dict[str, set[str]]] = {}
    for policy in resources(template_dict, "AWS::IAM::Policy").values():
        granted: dict[str, set[str]] = {}
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            dynamodb = {a.removeprefix("dynamodb:") for a in actions if a.startswith("dynamodb:")}
            if not dynamodb:
                continue
            targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for target in targets:
                table = getatt(target) or _index_table(target)
                assert table is not None, f"a DynamoDB grant on {target}"
                granted.setdefault(_table_kind(template_dict, table), set()).update(dynamodb)
        for role in policy["Properties"]["Roles"]:
            roles.setdefault(role["Ref"], {}).update(granted)
    actual = {handler: roles.get(props["Role"]["Fn::GetAtt"][0], {})
              for handler, (_, props) in functions_by_handler(template_dict).items()}
    assert actual == DYNAMODB_ACTIONS


# --- item 22: every action on '*' is named in its acknowledgement ------------------------------------


def test_each_wildcard_acknowledgement_names_every_action_it_covers(template_dict):
    checked = 0
    for logical_id, policy in resources(template_dict, "AWS::IAM::Policy").items():
        on_anything = {action for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Resource"] == "*"
                       for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
        if not on_anything:
            continue
        (reason,) = [rule["reason"] for rule in policy["Metadata"]["cdk_nag"]["rules_to_suppress"]
                     if rule["id"] == "AwsSolutions-IAM5[Resource::*]"]
        missing = sorted(action for action in on_anything if action not in reason)
        assert missing == [], f"{logical_id}: the reason does not name {missing}: {reason}"
        checked += 1
    assert checked >= 13
