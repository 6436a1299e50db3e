"""The roll-out function: ends a roll-out when one of its alarms fires, or when its bake time is over.

Two events reach it:
- "CloudWatch Alarm State Change" (an EventBridge rule on the challenger alarms, state ALARM): every
  running roll-out is rolled back (registry.rollout.on_alarm);
- {"action": "bake_end", "model", "rollout_id", "alarms": [names]} from the roll-out state machine once its
  Wait state reaches the bake time's end: promoted when none of the alarms is in ALARM, else rolled back.
Each change is made as this function's identity, audited and announced on the default event bus.
"""

from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions.errors import InvalidInput
from functions.registry.dynamo import registry_store
from functions.registry.eventbridge import function_actor, registry_events
from functions.registry.events import Counted
from functions.registry.rollout import RolloutOutcome, end_of_bake, on_alarm
from functions.rollout.alarms import alarm_states
from functions.spec import NAME_PATTERN

logger = Logger()
tracer = Tracer()
metrics = Metrics()

ALARM_CHANGE = "CloudWatch Alarm State Change"


class AlarmState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: str
    reason: str = ""


class AlarmDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alarmName: str = Field(max_length=255)  # CloudWatch's own field name
    state: AlarmState


class AlarmEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    detail: AlarmDetail


class BakeEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["bake_end"]
    model: str = Field(pattern=NAME_PATTERN, max_length=63)
    rollout_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    alarms: list[str] = Field(default_factory=list, max_length=100)


def _summary(outcome: RolloutOutcome) -> dict[str, Any]:
    current = outcome.rollout
    return {"changed": outcome.changed, "message": outcome.message,
            "rollout": current.model_dump(mode="json") if current else None}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    events = Counted(registry_events())
    try:
        if isinstance(event, dict) and event.get("detail-type") == ALARM_CHANGE:
            alarm = AlarmEvent.model_validate(event).detail
            if alarm.state.value != "ALARM":  # the rule matches ALARM only; anything else changes nothing
                return {"rolled_back": []}
            outcomes = on_alarm(registry_store(), alarm.alarmName, alarm.state.reason, actor=function_actor(),
                                events=events)
            logger.info("alarm handled", extra={"alarm": alarm.alarmName, "rolled_back": len(outcomes)})
            answer: dict[str, Any] = {"rolled_back": [_summary(o) for o in outcomes]}
        else:
            request = BakeEnd.model_validate(event)
            outcome = end_of_bake(registry_store(), request.model, request.rollout_id,
                                  alarm_states()(request.alarms), actor=function_actor(), events=events)
            logger.info("bake time over", extra={"model": request.model, "rollout_id": request.rollout_id,
                                                 "outcome": outcome.message})
            answer = _summary(outcome)
    except ValidationError as error:
        raise InvalidInput("the roll-out function takes a CloudWatch Alarm State Change event or "
                           '{"action": "bake_end", "model", "rollout_id", "alarms"}') from error
    if events.unsent:
        metrics.add_metric(name="RegistryEventsUnsent", unit=MetricUnit.Count, value=events.unsent)
    return answer
