"""EventBridge schedules on the local cloud: `rate(...)` rules fire their targets on time.

moto stores scheduled rules but never fires them. The event delivered is the one AWS
documents for scheduled rules ("Scheduled Event" from aws.events).
"""

import re
import threading
import time
from typing import Any

from local import patches
from local.events import service_event

_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def rate_seconds(expression: str) -> int | None:
    match = re.fullmatch(r"rate\((\d+) (minutes?|hours?|days?)\)", expression.strip())
    return int(match.group(1)) * _UNITS[match.group(2)] if match else None


def scheduled_event(rule_arn: str, account: str, region: str) -> dict:
    return service_event("aws.events", "Scheduled Event", account=account, region=region, resources=[rule_arn],
                         detail={})


class Scheduler:
    def __init__(self, events_client: Any, account: str, region: str) -> None:
        self.events = events_client
        self.account, self.region = account, region
        self._stop = threading.Event()
        self._next: dict[str, float] = {}

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True, name="schedules").start()

    def stop(self) -> None:
        self._stop.set()

    def fire(self, rule_name: str) -> None:
        rule = self.events.describe_rule(Name=rule_name)
        for target in self.events.list_targets_by_rule(Rule=rule_name)["Targets"]:
            patches.deliver(target, scheduled_event(rule["Arn"], self.account, self.region))

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            for rule in self.events.list_rules()["Rules"]:
                period = rate_seconds(rule.get("ScheduleExpression", ""))
                if period is None or rule.get("State") != "ENABLED":
                    continue
                due = self._next.setdefault(rule["Name"], now + period)
                if now >= due:
                    self._next[rule["Name"]] = now + period
                    self.fire(rule["Name"])
