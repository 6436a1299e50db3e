"""What a user hands the tracking client, checked before anything is written.

Names (of parameters, metrics, tags) follow MLflow's rule: letters, digits, underscores, dashes,
periods, spaces and slashes, at most 250 characters. Values are bounded so that a run's record
fits its DynamoDB item (400 KB) with room to spare, and numbers are finite: a metric is a real
number DynamoDB can hold, a parameter a number, string, boolean or null.
"""

import contextlib
import math
import numbers
import re
from pathlib import Path
from typing import Any

from functions.errors import InvalidInput, shown

NAME = re.compile(r"[A-Za-z0-9_\-. /]{1,250}")
ARTIFACT_NAME = re.compile(r"[A-Za-z0-9_\-.]{1,128}")
MAX_PARAMS = 100
MAX_METRICS = 100
MAX_TAGS = 50
MAX_ARTIFACTS = 50
MAX_TEXT_CHARS = 500  # a parameter's or tag's text value
MAX_ARTIFACT_BYTES = 50 * 1024 * 1024
# DynamoDB numbers: at most 38 significant digits, magnitudes from 1e-130 to 1e125.
MAX_METRIC_MAGNITUDE = 1e125
MIN_METRIC_MAGNITUDE = 1e-125


def check_name(kind: str, name: object) -> str:
    if not isinstance(name, str):
        raise InvalidInput(f"a {kind} name is text, not {type(name).__name__}")
    if not NAME.fullmatch(name) or not name.strip() or ".." in name.split("/"):
        raise InvalidInput(f"{kind} name {shown(name)} is not valid: 1 to 250 letters, digits, underscores, "
                           "dashes, periods, spaces or slashes")
    return name


def check_param(name: object, value: object) -> tuple[str, bool | int | float | str | None]:
    """A parameter as it is stored: a number, string, boolean or null (numpy scalars as Python values)."""
    key = check_name("parameter", name)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        with contextlib.suppress(TypeError, ValueError):  # an array of several values stays one
            value = value.item()
    if value is None or isinstance(value, bool):
        return key, value
    if isinstance(value, int):
        if abs(value) > 2**63:
            raise InvalidInput(f"parameter {key!r} is an integer beyond 64 bits")
        return key, value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"parameter {key!r} must be a finite number, not {value}")
        return key, value
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise InvalidInput(f"parameter {key!r} holds {len(value)} characters, more than {MAX_TEXT_CHARS}")
        return key, value
    raise InvalidInput(f"parameter {key!r} must be a number, string, boolean or null, not {type(value).__name__}")


def check_metric(name: object, value: object) -> tuple[str, float]:
    key = check_name("metric", name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(f"metric {key!r} must be a real number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(f"metric {key!r} must be a finite number, not {number}")
    if abs(number) > MAX_METRIC_MAGNITUDE or 0 < abs(number) < MIN_METRIC_MAGNITUDE:
        raise InvalidInput(f"metric {key!r} is {number}: beyond the magnitudes a run can store "
                           f"({MIN_METRIC_MAGNITUDE:g} to {MAX_METRIC_MAGNITUDE:g})")
    return key, number


def check_tag(name: object, value: object) -> tuple[str, str]:
    key = check_name("tag", name)
    if not isinstance(value, str):
        raise InvalidInput(f"tag {key!r} must be text, not {type(value).__name__}")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidInput(f"tag {key!r} holds {len(value)} characters, more than {MAX_TEXT_CHARS}")
    return key, value


def check_mapping(kind: str, values: object) -> dict[Any, Any]:
    if not isinstance(values, dict):
        raise InvalidInput(f"{kind} are given as a dict of names to values, not {type(values).__name__}")
    return values


def check_count(kind: str, count: int, limit: int) -> None:
    if count > limit:
        raise InvalidInput(f"a run holds at most {limit} {kind}; this one would hold {count}")


def artifact_file(path: object, name: str | None = None, max_bytes: int | None = None) -> tuple[str, bytes]:
    """(name, bytes) of a file to store with a run: it exists, is a regular file and is at most `max_bytes`
    (by default MAX_ARTIFACT_BYTES)."""
    max_bytes = MAX_ARTIFACT_BYTES if max_bytes is None else max_bytes
    if not isinstance(path, (str, Path)):
        raise InvalidInput(f"an artifact is a file path, not {type(path).__name__}")
    file = Path(path).expanduser()
    if not file.exists():
        raise InvalidInput(f"artifact {shown(str(path))} does not exist")
    if not file.is_file():
        raise InvalidInput(f"artifact {shown(str(path))} is not a file")
    artifact_name = file.name if name is None else name
    if not isinstance(artifact_name, str) or not ARTIFACT_NAME.fullmatch(artifact_name) or set(artifact_name) == {"."}:
        raise InvalidInput(f"artifact name {shown(artifact_name)} is not valid: 1 to 128 letters, digits, "
                           "underscores, dashes or periods (pass name=... to choose one)")
    size = file.stat().st_size
    if size > max_bytes:
        raise InvalidInput(f"artifact {shown(str(path))} holds {size} bytes, more than {max_bytes}")
    try:
        data = file.read_bytes()
    except OSError as error:
        raise InvalidInput(f"artifact {shown(str(path))} cannot be read: {error.strerror}") from None
    if len(data) > max_bytes:  # it grew since it was measured
        raise InvalidInput(f"artifact {shown(str(path))} holds more than {max_bytes} bytes")
    return artifact_name, data
