"""Where drift reports are stored: reports/drift/<model>/<time>.json, and the readable page beside each (.html).

Imports nothing heavy: the CLI finds reports with it without loading the check's statistics."""

from datetime import UTC, datetime

REPORTS_PREFIX = "reports/drift"


def report_key(model: str, at: datetime) -> str:
    return f"{REPORTS_PREFIX}/{model}/{at.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}.json"


def html_key(json_key: str) -> str:
    """The readable page beside a JSON report: the same key, .html."""
    return json_key.removesuffix(".json") + ".html"
