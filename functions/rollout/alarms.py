"""The states of CloudWatch alarms (the adapter the roll-out function asks at the end of a bake time)."""

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from functions.errors import RetryableError

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10)


class AlarmStates:
    def __init__(self, client: Any):
        self.client = client

    def __call__(self, names: list[str]) -> dict[str, str]:
        """Each named alarm's state (OK, ALARM or INSUFFICIENT_DATA); RetryableError when CloudWatch did not say."""
        if not names:
            return {}
        try:
            pages = self.client.get_paginator("describe_alarms").paginate(AlarmNames=names, AlarmTypes=["MetricAlarm"])
            return {alarm["AlarmName"]: alarm["StateValue"] for page in pages for alarm in page["MetricAlarms"]}
        except (BotoCoreError, ClientError) as error:
            raise RetryableError(f"the alarms' states could not be read ({type(error).__name__})") from error


@cache
def alarm_states() -> AlarmStates:
    return AlarmStates(boto3.client("cloudwatch", config=_CONFIG))
