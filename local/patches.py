"""The few places where moto lacks an AWS behaviour the platform relies on.

Each patch adds the behaviour as AWS documents it and leaves everything else to moto:

- Lambda `Invoke` of a function deployed from the template runs it on the local runtime
  (moto runs function code only in Docker): a synchronous invoke waits for the result, or is
  throttled with HTTP 429 TooManyRequestsException past the function's concurrency; an
  asynchronous one (`InvocationType=Event`) is queued and answered 202 at once. Step Functions'
  `lambda:invoke` tasks reach it too, since moto's state machine interpreter calls Lambda
  through the server, and it names a throttle `Lambda.TooManyRequestsException`, which the
  pipeline's Retry catches.
- EventBridge rules deliver to Lambda functions and Step Functions state machines
  (moto delivers only to logs, SQS, archives and buses and raises on the rest), and only
  enabled rules with an event pattern receive events (moto lets a schedule-only rule match
  every event, so a drift check that writes its report to S3 would trigger itself forever).
- Step Functions executes state machines (moto's own switch, turned on).

`apply()` is idempotent; `remove()` restores moto.
"""

import copy
import json
import logging
import threading
import uuid
from contextlib import ExitStack
from typing import Any
from unittest import mock

from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaBackend
from moto.core.config import default_user_config
from moto.events.models import Rule
from moto.events.utils import EventMessageType, EventTemplateParser
from moto.utilities.arns import parse_arn

from local.runtime import LambdaRuntime, TooManyRequestsException

log = logging.getLogger("mlops.local")

_moto_invoke = LambdaBackend.invoke
_moto_send_to_targets = Rule.send_to_targets
_runtime: LambdaRuntime | None = None
_applied: ExitStack | None = None  # the active patches; closing it restores moto


def apply(runtime: LambdaRuntime) -> None:
    global _runtime, _applied
    _runtime = runtime
    if _applied is None:
        _applied = ExitStack()
        _applied.enter_context(mock.patch.object(LambdaBackend, "invoke", _invoke))
        _applied.enter_context(mock.patch.object(Rule, "send_to_targets", _send_to_targets))
        _applied.enter_context(mock.patch.dict(default_user_config["stepfunctions"], {"execute_state_machine": True}))


def remove() -> None:
    global _runtime, _applied
    if _applied is not None:
        _applied.close()
    _runtime, _applied = None, None


class _TooManyRequests(LambdaClientError):
    """Lambda's throttling error, with the body and status Lambda answers it with."""

    code = 429

    def __init__(self, reason: str) -> None:
        super().__init__("TooManyRequestsException", "Rate Exceeded.")
        self.description = json.dumps({"__type": "TooManyRequestsException", "message": "Rate Exceeded.",
                                       "Reason": reason, "Type": "User"})


def _invoke(self: LambdaBackend, function_name: str, qualifier: str | None, body: bytes, headers: Any,
            response_headers: dict[str, str]) -> str | bytes | None:
    if _runtime is None or _runtime.resolve(function_name) is None:
        return _moto_invoke(self, function_name, qualifier, body, headers, response_headers)
    event = json.loads(body) if body else {}
    if (headers.get("X-Amz-Invocation-Type") or "") == "Event":
        _runtime.invoke_async(function_name, event)  # Lambda's event queue runs it (HTTP 202)
        response_headers["Content-Length"] = "0"
        return b""
    try:
        result = _runtime.invoke(function_name, event)
    except TooManyRequestsException as throttled:
        raise _TooManyRequests(throttled.reason) from None
    if result.function_error:
        response_headers["x-amz-function-error"] = result.function_error
    response_headers["x-amzn-RequestId"] = result.request_id
    response_headers["Content-Length"] = str(len(result.payload))
    return result.payload


def _send_to_targets(self: Rule, original_event: EventMessageType, transform_input: bool = True) -> None:
    if self.state != "ENABLED" or not self.event_pattern.get_pattern():
        return  # disabled, or a schedule-only rule: it fires on its schedule, never on events
    if not self.event_pattern.matches_event(original_event):
        return
    ours = [t for t in self.targets if parse_arn(t["Arn"]).service in ("lambda", "states")]
    others = [t for t in self.targets if t not in ours]
    for target in ours:
        deliver(target, _target_input(target, original_event, transform_input))
    if others:
        rule = copy.copy(self)
        rule.targets = others
        _moto_send_to_targets(rule, original_event, transform_input)


def _target_input(target: dict, event: EventMessageType, transform_input: bool) -> Any:
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        node: Any = event
        for part in target["InputPath"].lstrip("$").strip(".").split("."):
            node = node.get(part) if part else node
        return node
    if transform_input and "InputTransformer" in target:
        transformer = target["InputTransformer"]
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,
        )
    return copy.deepcopy(event)


def deliver(target: dict, payload: Any) -> None:
    """Deliver an event to a Lambda or Step Functions target, asynchronously as EventBridge does."""
    assert _runtime is not None, "patches.apply() first"
    arn = parse_arn(target["Arn"])
    if arn.service == "lambda":
        try:
            _runtime.invoke_async(target["Arn"], payload)  # EventBridge invokes Lambda asynchronously
        except (KeyError, RuntimeError):  # EventBridge delivery failures never reach the sender
            log.exception("EventBridge delivery to %s failed", target["Arn"])
        return

    def run() -> None:
        from moto.stepfunctions.responses import get_backend

        try:
            get_backend(arn.account, arn.region).start_execution(
                target["Arn"], name=str(uuid.uuid4()), execution_input=json.dumps(payload)
            )
        except Exception:  # EventBridge delivery failures never reach the sender
            log.exception("EventBridge delivery to %s failed", target["Arn"])

    threading.Thread(target=run, daemon=True).start()
