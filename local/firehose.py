"""CloudWatch Logs subscriptions and Data Firehose delivery to S3 on the local cloud, as AWS runs them.

moto hands every log event of a group to its subscription's destination whatever the filter
pattern, and its Firehose writes each call's records at once, uncompressed, under
<prefix>YYYY/MM/DD/HH/, with no processing and no dynamic partitioning. Here, as on AWS:

- A subscription filter passes only the events its pattern matches (CloudWatch Logs' JSON
  patterns `{ $.a.b = value }` / `!=` / `EXISTS` joined by && or ||, and plain terms); an
  empty pattern matches everything. A pattern this module cannot read is refused when the
  filter is created, never silently matched.
- An ExtendedS3 delivery stream runs its processing configuration on each record: Decompression
  (GZIP), CloudWatchLogProcessing (DataMessageExtraction: each log event's message a record;
  CONTROL_MESSAGEs dropped), MetadataExtraction (a JQ query: the partition keys, with the `jq`
  library) and AppendDelimiterToRecord; a record that fails goes to the ErrorOutputPrefix.
- Records are buffered per evaluated S3 prefix (`!{partitionKeyFromQuery:k}`, `!{timestamp:fmt}`,
  `!{firehose:random-string}`, `!{firehose:error-output-type}`), and a buffer becomes one object
  when it reaches the size hint or its age the interval hint, compressed (GZIP) and named as
  Firehose names objects: <stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid><extension>.

One liberty: the interval hint is capped at LOCAL_MAX_INTERVAL_S, so that a laptop sees its
captures within seconds rather than a minute (AWS treats the hints as hints too); the objects are
then smaller, and their layout and content the same. Lambda processors and record
de-aggregation are not run (a stream that uses them is refused at creation).
"""

import contextlib
import gzip
import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from unittest import mock

from moto.firehose.models import FirehoseBackend, firehose_backends
from moto.logs.exceptions import InvalidParameterException
from moto.logs.models import LogsBackend, LogStream
from moto.s3.models import s3_backends

log = logging.getLogger("mlops.local")

LOCAL_MAX_INTERVAL_S = 1.0
TICK_S = 0.2
SUPPORTED_PROCESSORS = {"Decompression", "CloudWatchLogProcessing", "MetadataExtraction", "AppendDelimiterToRecord"}
MIB = 1024 * 1024

_moto_send_log_events = LogStream._send_log_events
_moto_put_subscription_filter = LogsBackend.put_subscription_filter
_moto_create_delivery_stream = FirehoseBackend.create_delivery_stream
_moto_put_record_batch = FirehoseBackend.put_record_batch


# --- subscription filter patterns --------------------------------------------------------------

_COMPARISON = re.compile(r"""\s*\$((?:\.[A-Za-z_][\w-]*)+)\s*  # $.a.b
                             (?:(=|!=)\s*("(?:[^"\\]|\\.)*"|[-\w.*]+)  # = "text" | 1.5 | word*
                             |(IS\s+NULL|NOT\s+EXISTS|EXISTS))\s*""", re.VERBOSE)


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A matcher for a CloudWatch Logs filter pattern; ValueError for one it cannot read."""
    text = pattern.strip()
    if not text:
        return lambda message: True
    if text.startswith("{") or text.endswith("}"):
        if not (text.startswith("{") and text.endswith("}")):
            raise ValueError(f"the filter pattern {pattern!r} is not valid")
        return _json_pattern(text[1:-1])
    terms = [t.strip('"') for t in re.findall(r'"[^"]*"|\S+', text)]
    if any(t[:1] in "?-[" or t in {"&&", "||"} for t in terms):
        raise ValueError(f"the local cloud cannot read the filter pattern {pattern!r}")
    return lambda message: all(term in message for term in terms)


def _json_pattern(body: str) -> Callable[[str], bool]:
    joiner = "||" if "||" in body else "&&"
    if "&&" in body and "||" in body or "(" in body:
        raise ValueError(f"the local cloud cannot read the filter pattern {{{body}}}")
    tests = []
    for part in body.split(joiner):
        match = _COMPARISON.fullmatch(part)
        if not match:
            raise ValueError(f"the local cloud cannot read the filter pattern {{{body}}}")
        path, operator, value, presence = match.groups()
        tests.append(_comparison(path.strip(".").split("."), operator, value, presence))
    combine = any if joiner == "||" else all

    def matches(message: str) -> bool:
        try:
            document = json.loads(message)
        except ValueError:
            return False  # a JSON pattern never matches a message that is not JSON
        return combine(test(document) for test in tests)

    return matches


_MISSING = object()


def _comparison(path: list[str], operator: str | None, raw: str | None, presence: str | None) -> Callable[[Any], bool]:
    def lookup(document: Any) -> Any:
        for name in path:
            if not isinstance(document, dict) or name not in document:
                return _MISSING
            document = document[name]
        return document

    if presence:
        wanted = presence.split()[0].upper()
        if wanted == "EXISTS":
            return lambda d: lookup(d) is not _MISSING
        if wanted == "NOT":
            return lambda d: lookup(d) is _MISSING
        return lambda d: lookup(d) is None
    assert raw is not None
    if raw.startswith('"'):
        expected: Any = json.loads(raw)
        regex = re.compile("^" + ".*".join(map(re.escape, expected.split("*"))) + "$")
        test = lambda v: isinstance(v, str) and bool(regex.match(v))  # noqa: E731
    else:
        try:
            number = float(raw)
            test = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v == number  # noqa: E731
        except ValueError:  # an unquoted word: a string, or true / false
            regex = re.compile("^" + ".*".join(map(re.escape, raw.split("*"))) + "$")
            test = lambda v: isinstance(v, (str, bool)) and bool(regex.match(_text(v)))  # noqa: E731
    if operator == "!=":
        return lambda d: (v := lookup(d)) is not _MISSING and not test(v)
    return lambda d: (v := lookup(d)) is not _MISSING and test(v)


def _text(value: str | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else value


def _send_log_events(self: LogStream, service: str, destination_arn: str, filter_name: str,
                     log_events: list[dict[str, Any]]) -> None:
    subscription = self.log_group.subscription_filters.get(filter_name)
    matches = compile_pattern(subscription.filter_pattern if subscription else "")
    selected = [event for event in log_events if matches(event["message"])]
    if selected:  # CloudWatch Logs sends nothing when nothing matched
        _moto_send_log_events(self, service, destination_arn, filter_name, selected)


def _put_subscription_filter(self: LogsBackend, log_group_name: str, filter_name: str, filter_pattern: str,
                             destination_arn: str, role_arn: str) -> None:
    try:
        compile_pattern(filter_pattern or "")
    except ValueError as error:  # refused, as CloudWatch Logs refuses a pattern it cannot read
        raise InvalidParameterException(str(error)) from None
    _moto_put_subscription_filter(self, log_group_name, filter_name, filter_pattern, destination_arn, role_arn)


# --- delivery streams --------------------------------------------------------------------------

@dataclass
class _Buffer:
    stream: str
    key_prefix: str
    started: float
    arrived: datetime
    records: list[bytes] = field(default_factory=list)
    size: int = 0


class Delivery:
    """The buffers of every ExtendedS3 stream of the local cloud, and the thread that flushes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffers: dict[tuple[str, str, str, str], _Buffer] = {}  # (account, region, stream, prefix)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stop(self) -> None:
        self._stop.set()

    def ingest(self, backend: FirehoseBackend, stream_name: str, data: list[bytes]) -> None:
        stream = backend.delivery_streams[stream_name]
        config = stream.destinations[0]["ExtendedS3"]
        now = datetime.now(UTC)
        for raw in data:
            for prefix, record in _process(config, raw, now):
                self._add(backend, stream_name, prefix, record, now)
        self._start()

    def _add(self, backend: FirehoseBackend, stream: str, prefix: str, record: bytes, now: datetime) -> None:
        key = (backend.account_id, backend.region_name, stream, prefix)
        with self._lock:
            buffer = self._buffers.setdefault(key, _Buffer(stream, prefix, time.monotonic(), now))
            buffer.records.append(record)
            buffer.size += len(record)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="firehose")
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.flush()
            except Exception:  # a failed delivery must never stop the local cloud
                log.exception("Firehose could not deliver")

    def flush(self, everything: bool = False) -> int:
        """Deliver the buffers that are due (all with `everything`); returns how many objects were written."""
        due = []
        with self._lock:
            for key, buffer in list(self._buffers.items()):
                account, region, name, _ = key
                backend = firehose_backends[account][region]
                stream = backend.delivery_streams.get(name)
                if stream is None:  # deleted meanwhile: its buffers go with it
                    del self._buffers[key]
                    continue
                hints = stream.destinations[0]["ExtendedS3"].get("BufferingHints") or {}
                interval = min(float(hints.get("IntervalInSeconds", 300)), LOCAL_MAX_INTERVAL_S)
                if everything or buffer.size >= int(hints.get("SizeInMBs", 5)) * MIB or \
                        time.monotonic() - buffer.started >= interval:
                    due.append((backend, stream, self._buffers.pop(key)))
        for backend, stream, buffer in due:
            _write_object(backend, stream, buffer)
        return len(due)


def _write_object(backend: FirehoseBackend, stream: Any, buffer: _Buffer) -> None:
    config = stream.destinations[0]["ExtendedS3"]
    body = b"".join(buffer.records)
    compression = config.get("CompressionFormat", "UNCOMPRESSED")
    extension = config.get("FileExtension")
    if compression == "GZIP":
        body = gzip.compress(body)
        extension = extension if extension is not None else ".gz"
    elif compression not in ("UNCOMPRESSED", None):
        raise NotImplementedError(f"the local cloud's Firehose does not write {compression}")
    at = buffer.arrived
    name = (f"{buffer.stream}-{stream.version_id}-{at:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
            f"{extension or ''}")
    bucket = config["BucketARN"].split(":")[-1]
    s3_backends[backend.account_id][backend.partition].put_object(bucket, buffer.key_prefix + name, body)


class _RecordFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _process(config: dict[str, Any], raw: bytes, now: datetime) -> Iterator[tuple[str, bytes]]:
    """(evaluated S3 prefix, record) for one incoming record: processed, partitioned, or sent to errors."""
    processing = config.get("ProcessingConfiguration") or {}
    processors = {p["Type"]: {q["ParameterName"]: q["ParameterValue"] for q in p.get("Parameters") or []}
                  for p in processing.get("Processors") or []} if processing.get("Enabled") else {}
    partitioned = bool((config.get("DynamicPartitioningConfiguration") or {}).get("Enabled"))
    try:
        records = [raw]
        if "Decompression" in processors:
            records = [_decompress(processors["Decompression"], r) for r in records]
        if "CloudWatchLogProcessing" in processors:
            records = [m for r in records for m in _extract_messages(processors["CloudWatchLogProcessing"], r)]
    except _RecordFailed as failed:
        yield _error_prefix(config, failed.kind, now), _error_record(raw, failed)
        return
    for record in records:
        try:
            keys = _partition_keys(processors.get("MetadataExtraction"), record) if partitioned else {}
            prefix = _evaluate(config.get("Prefix", ""), keys, now, partitioned)
        except _RecordFailed as failed:
            yield _error_prefix(config, failed.kind, now), _error_record(record, failed)
            continue
        if "AppendDelimiterToRecord" in processors:
            record += b"\n"
        yield prefix, record


def _decompress(parameters: dict[str, str], record: bytes) -> bytes:
    if parameters.get("CompressionFormat", "GZIP") != "GZIP":
        raise NotImplementedError(f"the local cloud's Firehose decompresses GZIP only, not {parameters}")
    try:
        return gzip.decompress(record)
    except (OSError, EOFError) as error:
        raise _RecordFailed("decompression-failed", str(error)) from None


def _extract_messages(parameters: dict[str, str], record: bytes) -> list[bytes]:
    if str(parameters.get("DataMessageExtraction", "false")).lower() != "true":
        return [record]
    try:
        envelope = json.loads(record)
    except ValueError as error:
        raise _RecordFailed("processing-failed", f"not a CloudWatch Logs record: {error}") from None
    if envelope.get("messageType") != "DATA_MESSAGE":
        return []  # CONTROL_MESSAGEs (CloudWatch Logs' reachability checks) are dropped
    return [event["message"].encode() for event in envelope.get("logEvents") or []]


def _partition_keys(parameters: dict[str, str] | None, record: bytes) -> dict[str, str]:
    if not parameters:
        return {}
    query = _jq(parameters["MetadataExtractionQuery"])
    try:
        keys = query.input_text(record.decode()).first()
    except (ValueError, StopIteration) as error:  # jq's errors are ValueErrors
        raise _RecordFailed("partitioning-failed", str(error)) from None
    if not isinstance(keys, dict) or any(v is None or isinstance(v, (dict, list)) for v in keys.values()):
        raise _RecordFailed("partitioning-failed", f"the query gave {keys!r}, not an object of scalar keys")
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in keys.items()}


@lru_cache(maxsize=64)
def _jq(query: str) -> Any:
    import jq  # the local cloud's dependency only

    return jq.compile(query)


_EXPRESSION = re.compile(r"!\{([\w-]+):([^}]*)\}")
# Java's DateTimeFormatter letters Firehose takes, as strftime directives.
_JAVA_DATE = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]


def _evaluate(template: str, keys: dict[str, str], now: datetime, partitioned: bool,
              error_type: str | None = None) -> str:
    def replace(match: re.Match) -> str:
        namespace, name = match.groups()
        if namespace == "partitionKeyFromQuery":
            if name not in keys:
                raise _RecordFailed("partitioning-failed", f"no partition key {name!r} in {sorted(keys)}")
            return keys[name]
        if namespace == "timestamp":
            for java, directive in _JAVA_DATE:
                name = name.replace(java, directive)
            return now.strftime(name)
        if namespace == "firehose" and name == "random-string":
            return uuid.uuid4().hex[:11]
        if namespace == "firehose" and name == "error-output-type" and error_type:
            return error_type
        raise NotImplementedError(f"the local cloud's Firehose cannot evaluate !{{{namespace}:{name}}}")

    if not partitioned and not _EXPRESSION.search(template):
        return f"{template}{now:%Y/%m/%d/%H}/"  # Firehose's default: the arrival time's hour
    return _EXPRESSION.sub(replace, template)


def _error_prefix(config: dict[str, Any], kind: str, now: datetime) -> str:
    template = config.get("ErrorOutputPrefix") or ""
    return _evaluate(template, {}, now, True, kind) if template else f"{kind}/{now:%Y/%m/%d/%H}/"


def _error_record(record: bytes, failed: _RecordFailed) -> bytes:
    import base64

    return json.dumps({"rawData": base64.b64encode(record).decode(), "errorCode": failed.kind,
                       "errorMessage": str(failed)}).encode() + b"\n"


_delivery: Delivery | None = None


def _create_delivery_stream(self: FirehoseBackend, region: str, name: str, kind: str, kinesis_source: Any,
                            encryption: Any, s3: Any, extended_s3: Any, *others: Any) -> str:
    config = extended_s3 or {}
    processing = config.get("ProcessingConfiguration") or {}
    unsupported = {p["Type"] for p in processing.get("Processors") or []} - SUPPORTED_PROCESSORS
    if processing.get("Enabled") and unsupported:
        raise NotImplementedError(f"the local cloud's Firehose does not run {sorted(unsupported)} processors")
    return _moto_create_delivery_stream(self, region, name, kind, kinesis_source, encryption, s3, extended_s3, *others)


def _put_record_batch(self: FirehoseBackend, delivery_stream_name: str,
                      records: list[dict[str, bytes]]) -> dict[str, Any]:
    stream = self.delivery_streams.get(delivery_stream_name)
    if _delivery is None or stream is None or "ExtendedS3" not in stream.destinations[0]:
        return _moto_put_record_batch(self, delivery_stream_name, records)
    _delivery.ingest(self, delivery_stream_name, [r["Data"] for r in records])
    return {"FailedPutCount": 0, "Encrypted": bool(stream.delivery_stream_encryption_configuration),
            "RequestResponses": [{"RecordId": uuid.uuid4().hex} for _ in records]}


def _send_log_event(self: FirehoseBackend, delivery_stream_arn: str, filter_name: str, log_group_name: str,
                    log_stream_name: str, log_events: list[dict[str, Any]]) -> None:
    """What CloudWatch Logs puts into a subscribed stream: one gzip'd DATA_MESSAGE envelope per batch."""
    envelope = {"messageType": "DATA_MESSAGE", "owner": self.account_id, "logGroup": log_group_name,
                "logStream": log_stream_name, "subscriptionFilters": [filter_name], "logEvents": log_events}
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as zipped:
        zipped.write(json.dumps(envelope, separators=(",", ":")).encode())
    stream = self.lookup_name_from_arn(delivery_stream_arn)
    if stream is not None:
        self.put_record_batch(stream.delivery_stream_name, [{"Data": buffer.getvalue()}])


def flush() -> int:
    """Deliver every buffer now (tests; `mlops down` need not wait): the number of objects written."""
    return _delivery.flush(everything=True) if _delivery is not None else 0


@contextlib.contextmanager
def faithful_delivery() -> Iterator[Delivery]:
    """Subscription filters and Firehose's ExtendedS3 delivery as AWS runs them, for the context's life."""
    global _delivery
    delivery = _delivery = Delivery()
    with contextlib.ExitStack() as patches:
        patches.enter_context(mock.patch.object(LogStream, "_send_log_events", _send_log_events))
        patches.enter_context(mock.patch.object(LogsBackend, "put_subscription_filter", _put_subscription_filter))
        patches.enter_context(mock.patch.object(FirehoseBackend, "create_delivery_stream", _create_delivery_stream))
        patches.enter_context(mock.patch.object(FirehoseBackend, "put_record_batch", _put_record_batch))
        patches.enter_context(mock.patch.object(FirehoseBackend, "send_log_event", _send_log_event))
        try:
            yield delivery
        finally:
            delivery.stop()
            _delivery = None
