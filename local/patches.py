"""The few places where moto lacks an AWS behaviour the platform relies on.

Each patch adds the behaviour as AWS documents it and leaves everything else to moto:

- Lambda `Invoke` of a function deployed from the template runs its handler in-process
  (moto runs function code only in Docker). Step Functions' `lambda:invoke` tasks reach it
  too, since moto's state machine interpreter calls Lambda through the server.
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
from typing import Any

from moto.awslambda.models import LambdaBackend
from moto.core.config import default_user_config
from moto.events.models import Rule
from moto.events.utils import EventTemplateParser
from moto.utilities.arns import parse_arn

from local.runtime import LambdaRuntime

log = logging.getLogger("mlops.local")

_original: dict[str, Any] = {}
_runtime: LambdaRuntime | None = None


def apply(runtime: LambdaRuntime) -> None:
    global _runtime
    _runtime = runtime
    if _original:
        return
    _original["invoke"] = LambdaBackend.invoke
    _original["send_to_targets"] = Rule.send_to_targets
    _original["sfn_execute"] = default_user_config["stepfunctions"]["execute_state_machine"]
    LambdaBackend.invoke = _invoke
    Rule.send_to_targets = _send_to_targets
    default_user_config["stepfunctions"]["execute_state_machine"] = True


def remove() -> None:
    global _runtime
    if not _original:
        return
    LambdaBackend.invoke = _original.pop("invoke")
    Rule.send_to_targets = _original.pop("send_to_targets")
    default_user_config["stepfunctions"]["execute_state_machine"] = _original.pop("sfn_execute")
    _runtime = None


def _invoke(self, function_name, qualifier, body, headers, response_headers):
    if _runtime is None or _runtime.resolve(function_name) is None:
        return _original["invoke"](self, function_name, qualifier, body, headers, response_headers)
    event = json.loads(body) if body else {}
    if (headers.get("X-Amz-Invocation-Type") or "") == "Event":
        # Asynchronous invocation: accepted now, run in the background (HTTP 202).
        threading.Thread(target=_runtime.invoke, args=(function_name, event), daemon=True).start()
        response_headers["Content-Length"] = "0"
        return b""
    result = _runtime.invoke(function_name, event)
    if result.function_error:
        response_headers["x-amz-function-error"] = result.function_error
    response_headers["x-amzn-RequestId"] = result.request_id
    response_headers["Content-Length"] = str(len(result.payload))
    return result.payload


def _send_to_targets(self, original_event, transform_input: bool = True):
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
        _original["send_to_targets"](rule, original_event, transform_input)


def _target_input(target: dict, event: dict, transform_input: bool) -> Any:
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
    arn = parse_arn(target["Arn"])

    def run() -> None:
        try:
            if arn.service == "lambda":
                result = _runtime.invoke(target["Arn"], payload)
                if result.function_error:
                    log.warning("EventBridge target %s failed: %s", target["Arn"], result.payload[:500])
            else:
                from moto.stepfunctions.responses import get_backend

                get_backend(arn.account, arn.region).start_execution(
                    target["Arn"], name=str(uuid.uuid4()), execution_input=json.dumps(payload)
                )
        except Exception:  # noqa: BLE001 - EventBridge delivery failures never reach the sender
            log.exception("EventBridge delivery to %s failed", target["Arn"])

    threading.Thread(target=run, daemon=True).start()
