"""Registry events: every change of the registry, announced on EventBridge's default bus.

Users hook deployments and notifications to these instead of polling the registry. Source
`mlops.registry`; two detail types, with one detail shape (JSON):

    Model Version State Change   {"model": "churn", "version": 3, "from": "PendingManualApproval",
                                  "to": "Approved", "reason": "...", "actor": "arn:aws:sts::...",
                                  "time": "2026-01-31T12:00:05.123456+00:00"}
                                 (from null: the version was just registered)
    Model Alias Change           {"model": "churn", "alias": "champion", "version": 3, "from": 2, "to": 3,
                                  "reason": "...", "actor": "arn:aws:sts::...", "time": "..."}
                                 (from null: the alias's first version; version is always `to`)
    Model Rollout State Change   {"model": "churn", "rollout_id": "...", "version": 4 (the challenger),
                                  "champion": 3, "from": "running", "to": "rolled_back", "reason": "...",
                                  "actor": "...", "time": "..."} (from null: the roll-out started)

An event is built from the change's audit entry (records.AuditEntry), after its conditional write
succeeded: a refused or lost change sends nothing. Publishing never fails the change (it is made,
and the audit trail keeps it): a publisher retries, then says the event was not sent; `announce`
logs it and the caller counts it (the pipeline's RegistryEventsUnsent metric, a CLI warning).
An event whose write's reply was lost (a timeout on a write that was made) is not sent by the
retry, which finds the change made: the audit trail is the complete record.
"""

import logging
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from functions.records import AuditEntry

logger = logging.getLogger(__name__)

SOURCE = "mlops.registry"
DetailType = Literal["Model Version State Change", "Model Alias Change", "Model Rollout State Change"]
VERSION_STATE_CHANGE: DetailType = "Model Version State Change"
ALIAS_CHANGE: DetailType = "Model Alias Change"
ROLLOUT_STATE_CHANGE: DetailType = "Model Rollout State Change"
# A roll-out's audit actions, and the roll-out state each leaves (registry.rollout).
ROLLOUT_STATES: dict[str, tuple[str | None, str]] = {"rollout_start": (None, "running"),
                                                     "rollout_promote": ("running", "promoted"),
                                                     "rollout_rollback": ("running", "rolled_back")}


class RegistryEvent(BaseModel):
    """One event of the registry: its detail type, its detail (the shape above) and when the change was made."""

    model_config = ConfigDict(frozen=True)

    detail_type: DetailType
    detail: dict[str, Any]
    time: str


def event_of(change: AuditEntry) -> RegistryEvent:
    """The event announcing a change of the audit trail."""
    common = {"model": change.model, "version": change.version, "reason": change.reason, "actor": change.actor,
              "time": change.at}
    if change.rollout_id is not None:
        before, after = ROLLOUT_STATES[change.action]
        return RegistryEvent(detail_type=ROLLOUT_STATE_CHANGE, time=change.at, detail={
            **common, "rollout_id": change.rollout_id, "champion": change.from_version, "from": before,
            "to": after})
    if change.alias is not None:
        return RegistryEvent(detail_type=ALIAS_CHANGE, time=change.at, detail={
            **common, "alias": change.alias, "from": change.from_version, "to": change.version})
    return RegistryEvent(detail_type=VERSION_STATE_CHANGE, time=change.at, detail={
        **common, "from": change.from_status, "to": change.status})


class EventPublisher(Protocol):
    def publish(self, event: RegistryEvent) -> bool:
        """Send the event (retrying what may pass); False when it could not be sent. Never raises."""
        ...


class Counted:
    """A publisher that counts the events it could not send (what a handler reports as a metric)."""

    def __init__(self, events: EventPublisher):
        self.events, self.unsent = events, 0

    def publish(self, event: RegistryEvent) -> bool:
        sent = self.events.publish(event)
        self.unsent += 0 if sent else 1
        return sent


def announce(events: EventPublisher | None, change: AuditEntry) -> bool:
    """Publish a change that was made; False (logged as an error, with the event) when it was not sent.

    `events` None publishes nothing (a caller that announces no events, such as a test of the gate)."""
    if events is None:
        return True
    event = event_of(change)
    if events.publish(event):
        return True
    logger.error("a registry event could not be sent; the change is made and in the audit trail",
                 extra={"detail_type": event.detail_type, "detail": event.detail})
    return False
