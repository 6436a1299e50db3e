"""Registry events: their documented shapes, the EventBridge adapter (moto delivers them to a rule's SQS queue),
what it does when EventBridge fails, and who a function acts as."""

import json

import pytest
from botocore.exceptions import EndpointConnectionError

from functions.records import AuditEntry
from functions.registry.eventbridge import EventBridgePublisher, caller_arn, function_actor
from functions.registry.events import ALIAS_CHANGE, SOURCE, VERSION_STATE_CHANGE, Counted, event_of
from tests.conftest import client_error

AT = "2026-01-31T12:00:05.123456+00:00"
ACTOR = "arn:aws:sts::123456789012:assumed-role/ml-lead/alice"


def alias_move(**fields) -> AuditEntry:
    return AuditEntry(**{"model": "churn", "action": "set_champion", "alias": "champion", "version": 3,
                         "from_version": 2, "reason": "v3 beats the champion v2", "at": AT, "actor": ACTOR, **fields})


def state_change(**fields) -> AuditEntry:
    return AuditEntry(**{"model": "churn", "action": "approve", "version": 3, "from_status": "PendingManualApproval",
                         "status": "Approved", "reason": "validated", "at": AT, "actor": ACTOR, **fields})


def test_the_two_detail_types_and_their_documented_shape():
    move = event_of(alias_move())
    assert move.detail_type == ALIAS_CHANGE == "Model Alias Change" and move.time == AT
    assert move.detail == {"model": "churn", "alias": "champion", "version": 3, "from": 2, "to": 3,
                           "reason": "v3 beats the champion v2", "actor": ACTOR, "time": AT}
    assert event_of(alias_move(from_version=None)).detail["from"] is None  # the alias's first version
    change = event_of(state_change())
    assert change.detail_type == VERSION_STATE_CHANGE == "Model Version State Change"
    assert change.detail == {"model": "churn", "version": 3, "from": "PendingManualApproval", "to": "Approved",
                             "reason": "validated", "actor": ACTOR, "time": AT}
    registered = event_of(state_change(action="register", from_status=None, status="PendingManualApproval"))
    assert registered.detail["from"] is None and registered.detail["to"] == "PendingManualApproval"


@pytest.fixture
def bus_queue(pipeline_aws):
    """A rule on the default bus for source mlops.registry, with an SQS queue target: what a user would set up."""
    import boto3

    sqs, events = boto3.client("sqs"), boto3.client("events")
    url = sqs.create_queue(QueueName="registry-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="registry", EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule="registry", Targets=[{"Id": "queue", "Arn": arn}])

    def received() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return events, received


def test_eventbridge_delivers_the_event_to_a_rule_on_the_default_bus(bus_queue):
    events, received = bus_queue
    assert EventBridgePublisher(events).publish(event_of(alias_move())) is True
    (delivered,) = received()
    assert delivered["source"] == "mlops.registry" and delivered["detail-type"] == "Model Alias Change"
    assert delivered["detail"] == event_of(alias_move()).detail


class Refusing:
    """A stand-in EventBridge client: answers from a list (an exception raised, or a PutEvents response)."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), 0

    def put_events(self, Entries):
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}
        if isinstance(answer, Exception):
            raise answer
        return answer


FAILED_ENTRY = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}]}


def test_a_failed_entry_or_call_is_retried_then_reported_unsent_never_raised(caplog):
    flaky = Refusing(FAILED_ENTRY, EndpointConnectionError(endpoint_url="https://events"))
    assert EventBridgePublisher(flaky, backoff_s=0).publish(event_of(alias_move())) is True and flaky.calls == 3
    down = Refusing(*[client_error("ThrottlingException", "PutEvents")] * 3)
    assert EventBridgePublisher(down, backoff_s=0).publish(event_of(alias_move())) is False and down.calls == 3
    assert "PutEvents failed" in caplog.text
    denied = Refusing(client_error("AccessDeniedException", "PutEvents"))
    assert EventBridgePublisher(denied, backoff_s=0).publish(event_of(alias_move())) is False
    assert denied.calls == 1, "a refusal for good is not retried"


def test_a_counted_publisher_counts_what_it_could_not_send():
    counted = Counted(EventBridgePublisher(Refusing(*[FAILED_ENTRY] * 3), backoff_s=0))
    assert counted.publish(event_of(alias_move())) is False and counted.unsent == 1


def test_the_entry_names_source_bus_type_and_time():
    entry = EventBridgePublisher(Refusing()).entry(event_of(state_change()))
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (SOURCE, VERSION_STATE_CHANGE, "default")
    assert entry["Time"].isoformat() == AT and json.loads(entry["Detail"])["to"] == "Approved"


def test_a_function_acts_as_its_roles_session_or_its_identity_and_name(pipeline_aws, monkeypatch):
    import boto3

    function_actor.cache_clear()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "mlops-Promote")
    moto_user = caller_arn(boto3.client("sts"))
    assert function_actor() == f"{moto_user} (function mlops-Promote)"  # moto: one identity for every caller
    function_actor.cache_clear()
    role = "arn:aws:sts::123456789012:assumed-role/PromoteRole/mlops-Promote"  # what AWS answers a Lambda function
    monkeypatch.setattr("functions.registry.eventbridge.caller_arn", lambda sts: role)
    assert function_actor() == role
    function_actor.cache_clear()
