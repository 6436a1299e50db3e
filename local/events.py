"""The envelope AWS services put their events in on the default bus (source, detail-type, time in seconds)."""

import copy
import time
import uuid
from datetime import UTC, datetime
from typing import Any


def service_event(source: str, detail_type: str, *, account: str, region: str, resources: list[str],
                  detail: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": resources,
        "detail": detail,
    }


def put_on_default_bus(event: dict[str, Any]) -> None:
    """Hand a service's event to the rules of its account's default bus, as moto's PutEvents hands it over: its
    time in epoch seconds (moto writes it out as ISO 8601 when it delivers) and the time EventBridge received it."""
    from moto.events.models import events_backends

    at = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    bus = events_backends[event["account"]][event["region"]].describe_event_bus("default")
    for rule in list(bus.rules.values()):
        received: Any = {**copy.deepcopy(event), "time": at, "ingestion-time": time.time()}
        rule.send_to_targets(received)
