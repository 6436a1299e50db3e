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
  (moto delivers only to logs, SQS, archives and buses and raises on the rest) the event as
  AWS sends it: its time in ISO 8601 (moto's rules hold it in epoch seconds, with an
  ingestion time of moto's own, and format it only for the targets moto delivers to), and only
  enabled rules with an event pattern receive events (moto lets a schedule-only rule match
  every event, so a drift check that writes its report to S3 would trigger itself forever).
- DynamoDB operations are atomic, so concurrent conditional writes (two promotions, a promotion and
  a rollback) never lose an update, and a Query reads its partition up to its limit, instead of
  sorting the whole table on every call, and an item's size is summed once, not once per attribute
  (local/dynamodb.py).
- Step Functions executes state machines (moto's own switch, turned on), and a Standard
  execution emits the "Step Functions Execution Status Change" event to the default event bus
  when it starts and when it ends (SUCCEEDED, FAILED, TIMED_OUT or ABORTED), with the detail
  AWS sends, to every target (a queue's rule too: handed over in the form PutEvents hands events
  to moto's rules, which moto's SQS delivery expects); moto emits none.
- Step Functions' `sagemaker:createTrainingJob.sync` runs the training job's entry point in-process
  (local/sagemaker.py); moto's interpreter refuses `.sync` for SageMaker, and moto runs no job.
- CloudWatch Logs subscription filters pass only the events their pattern matches, and Data Firehose
  delivers to S3 as AWS does: processing (decompression, CloudWatch Logs message extraction, JQ
  metadata extraction, delimiter), dynamic partitioning, buffering and GZIP (local/firehose.py).
- CloudWatch GetMetricData matches dimensions exactly and answers percentiles, SEARCH and metric
  math (FILL, + - * /), as the dashboard's widgets ask (local/metrics.py).
- StopExecution stops an execution that has started but whose interpreter is still reading its
  definition (moto's worker has no environment yet and the call failed with a 500, or has not entered
  its first state and the stop was ignored): it waits for the program to run; and a stop that cuts a
  Task short ends the execution ABORTED (moto failed it when the Task's Catch chose a next state).
- Distributed Map states accept an integer ToleratedFailurePercentage, enforce their tolerated
  failures and write their results with their ResultWriter (local/maps.py), as AWS does.

An execution that does not succeed is one line on the console ("execution <name> failed at
<state>: <reason>"), instead of what moto's interpreter logs (its internal objects' reprs).

`apply()` is idempotent; `remove()` restores moto.
"""

import copy
import json
import logging
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaBackend
from moto.core.config import default_user_config
from moto.events.models import Rule
from moto.events.utils import EventMessageType, EventTemplateParser
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.utilities.arns import parse_arn

from local import firehose, maps, metrics, sagemaker
from local.dynamodb import atomic_dynamodb, linear_item_size, partition_queries
from local.events import put_on_default_bus, service_event
from local.runtime import LambdaRuntime, TooManyRequestsException

log = logging.getLogger("mlops.local")

_moto_invoke = LambdaBackend.invoke
_moto_send_to_targets = Rule.send_to_targets
_moto_execution_start = Execution.start
_moto_worker_stop = ExecutionWorker.stop
_moto_set_error = Environment.set_error
_moto_set_next_state = Environment.next_state_name.fset  # type: ignore[attr-defined]
_moto_execution_terminated = BaseExecutionWorkerCommunication.terminated
_runtime: LambdaRuntime | None = None
_applied: ExitStack | None = None  # the active patches; closing it restores moto
_MOTO_INTERPRETER = "moto.stepfunctions.parser"  # logs every failure with its parser objects' reprs
MAX_REASON_CHARS = 300


def apply(runtime: LambdaRuntime) -> None:
    global _runtime, _applied
    _runtime = runtime
    if _applied is None:
        _applied = ExitStack()
        _applied.enter_context(mock.patch.object(LambdaBackend, "invoke", _invoke))
        _applied.enter_context(mock.patch.object(Rule, "send_to_targets", _send_to_targets))
        _applied.enter_context(atomic_dynamodb())
        _applied.enter_context(firehose.faithful_delivery())
        _applied.enter_context(metrics.faithful_metric_data())
        _applied.enter_context(partition_queries())
        _applied.enter_context(linear_item_size())
        _applied.enter_context(mock.patch.dict(default_user_config["stepfunctions"], {"execute_state_machine": True}))
        _applied.enter_context(mock.patch.object(Execution, "start", _execution_start))
        _applied.enter_context(mock.patch.object(ExecutionWorker, "stop", _stop_when_running))
        _applied.enter_context(mock.patch.object(Environment, "set_error", _error_unless_stopped))
        _applied.enter_context(mock.patch.object(Environment, "next_state_name", property(
            Environment.next_state_name.fget, _next_state_unless_stopped)))  # type: ignore[attr-defined]
        _applied.enter_context(mock.patch.object(BaseExecutionWorkerCommunication, "terminated", _execution_ended))
        _applied.enter_context(mock.patch.object(state_task_factory, "state_task_service_for",
                                                 sagemaker.state_task_service_for(
                                                     state_task_factory.state_task_service_for)))
        _applied.enter_context(mock.patch.object(maps.AmazonStateLanguageParser, "parse", staticmethod(maps.parse)))
        _applied.enter_context(mock.patch.object(maps.DistributedIterationComponent, "_map_run", maps.map_run))
        _applied.enter_context(mock.patch.object(maps.ResourceEvalS3, "_handle_put_object",
                                                 staticmethod(maps.put_results)))
        _applied.enter_context(mock.patch.object(maps.ResultWriter, "_eval_body", maps.write_results))
        interpreter = logging.getLogger(_MOTO_INTERPRETER)  # its loggers below it inherit the level
        _applied.callback(interpreter.setLevel, interpreter.level)
        interpreter.setLevel(logging.CRITICAL + 1)  # _report_end says what matters, in one line


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


class _ServiceException(LambdaClientError):
    """Lambda's own failure (HTTP 500), which Step Functions names Lambda.ServiceException."""

    code = 500

    def __init__(self) -> None:
        super().__init__("ServiceException", "The local Lambda runtime is stopped.")


def _invoke(self: LambdaBackend, function_name: str, qualifier: str | None, body: bytes, headers: Any,
            response_headers: dict[str, str]) -> str | bytes | None:
    if _runtime is None or _runtime.resolve(function_name) is None:
        return _moto_invoke(self, function_name, qualifier, body, headers, response_headers)
    event = json.loads(body) if body else {}
    try:
        if (headers.get("X-Amz-Invocation-Type") or "") == "Event":
            _runtime.invoke_async(function_name, event)  # Lambda's event queue runs it (HTTP 202)
            response_headers["Content-Length"] = "0"
            return b""
        result = _runtime.invoke(function_name, event)
    except TooManyRequestsException as throttled:
        raise _TooManyRequests(throttled.reason) from None
    except RuntimeError:  # the local cloud is stopping: its executions' last calls fail, without a traceback
        raise _ServiceException() from None
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


def as_sent(event: EventMessageType) -> dict[str, Any]:
    """The event as EventBridge sends it to a target, from the form moto's rules receive it in (PutEvents and
    S3 give them its time in epoch seconds and an "ingestion-time" of moto's own): AWS sends the time as
    ISO 8601 in UTC to the second ("2026-01-31T12:00:05Z"), which handlers may validate as a string."""
    sent = {key: copy.deepcopy(value) for key, value in event.items() if key != "ingestion-time"}
    sent["time"] = _iso(sent.get("time"))
    return sent


def _iso(at: Any) -> Any:
    is_epoch = isinstance(at, int | float) and not isinstance(at, bool)
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if is_epoch else at


def _target_input(target: dict, received: EventMessageType, transform_input: bool) -> Any:
    event = as_sent(received)
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        node: Any = event
        for part in target["InputPath"].lstrip("$").strip(".").split("."):
            node = node.get(part) if part else node
        return node
    if transform_input and "InputTransformer" in target:
        transformer = target["InputTransformer"]
        # The predefined variables as AWS fills them (moto's parser puts in its own form of the event).
        template = (transformer.get("InputTemplate") or "").replace("<aws.events.event.json>", json.dumps(event))
        template = template.replace("<aws.events.event.ingestion-time>", str(_iso(received.get("ingestion-time"))))
        filled: Any = {**event, "ingestion-time": ""}  # its variable is filled above
        return EventTemplateParser.parse(input_template=template, input_paths_map=transformer.get("InputPathsMap", {}),
                                         event=filled)
    return event


def deliver(target: dict, payload: Any) -> None:
    """Deliver an event to a Lambda or Step Functions target, asynchronously as EventBridge does."""
    assert _runtime is not None, "patches.apply() first"
    arn = parse_arn(target["Arn"])
    if arn.service == "lambda":
        try:
            _runtime.invoke_async(target["Arn"], payload)  # EventBridge invokes Lambda asynchronously
        except (KeyError, RuntimeError):  # EventBridge delivery failures never reach the sender
            if not _runtime.stopped:  # stopping the local cloud is no failure to report
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


def _execution_start(self: Execution) -> None:
    _emit_status_change(self)  # RUNNING, before the execution can end
    _moto_execution_start(self)


STOP_WAIT_S = 60.0  # at most, for the interpreter to have parsed the definition


def _stop_when_running(self: ExecutionWorker, stop_date: datetime, error: str | None, cause: str | None) -> None:
    # Until the program enters its first state, moto's stop is lost: no environment (a 500), or one whose
    # program state is still None (set_stop then ignores the stop and the execution runs to its end).
    deadline = time.monotonic() + STOP_WAIT_S
    while not _started(self) and time.monotonic() < deadline:
        time.sleep(0.01)
    if not _started(self):
        raise RuntimeError("the execution did not start within a minute")
    _moto_worker_stop(self, stop_date=stop_date, error=error, cause=cause)


def _next_state_unless_stopped(self: Environment, name: str) -> None:
    # A stopped execution runs no further state. moto raised here when a stop cut a Task short and its Catch
    # then chose the next state, and the execution ended FAILED instead of ABORTED.
    if isinstance(self.program_state(), ProgramStopped):
        return
    _moto_set_next_state(self, name)


def _error_unless_stopped(self: Environment, error: Any) -> None:
    # Stopped is final: an error the cut-short state raises afterwards (an uncaught failure, a Task whose output
    # the stop took away) made moto end a stopped execution FAILED.
    if isinstance(self.program_state(), ProgramStopped):
        return
    _moto_set_error(self, error)


def _started(worker: ExecutionWorker) -> bool:
    return worker.env is not None and worker.env.program_state() is not None


def _execution_ended(self: BaseExecutionWorkerCommunication) -> None:
    _moto_execution_terminated(self)
    _emit_status_change(self.execution)
    _report_end(self.execution)


def execution_status_change(execution: Execution) -> dict[str, Any]:
    """The event Step Functions sends to EventBridge when a Standard execution's status changes."""
    status = execution.exec_status.value if execution.exec_status else "RUNNING"
    succeeded = status == "SUCCEEDED"
    output = (execution.output if isinstance(execution.output, str) or not succeeded
              else json.dumps(execution.output, separators=(",", ":")))  # compact, as Step Functions writes it
    detail = {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": status,
        "startDate": _epoch_ms(execution.start_date),
        "stopDate": _epoch_ms(execution.stop_date) if execution.stop_date else None,
        "input": execution.execution_input,
        "output": output if succeeded else None,
        "inputDetails": {"included": True},
        "outputDetails": {"included": True} if succeeded else None,
        "error": execution.error or None,
        "cause": execution.cause or None,
    }
    return service_event("aws.states", "Step Functions Execution Status Change", account=execution.account_id,
                         region=execution.region_name, resources=[execution.exec_arn], detail=detail)


def _emit_status_change(execution: Execution) -> None:
    if str(getattr(execution.sm_type, "value", execution.sm_type)) != "STANDARD":
        return  # Express workflows emit no status-change events
    try:
        put_on_default_bus(execution_status_change(execution))  # moto's targets and as_sent format its time
    except Exception:  # EventBridge delivery failures never reach the execution
        log.exception("the status change of execution %s was not delivered", execution.exec_arn)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _report_end(execution: Execution) -> None:
    """One console line for an execution that did not succeed (a stopping local cloud's are not news)."""
    status = execution.exec_status.value if execution.exec_status else ""
    if status not in {"FAILED", "TIMED_OUT", "ABORTED"} or _runtime is None or _runtime.stopped:
        return
    try:
        events = execution.to_history_output()["events"]
    except Exception:  # noqa: BLE001 - the line is said without the history rather than not at all
        events = []
    log.warning("%s", end_line(execution.name, status, events, execution.error, execution.cause))


def end_line(name: str, status: str, events: Any, error: str | None, cause: str | None) -> str:
    """The line: `execution <name> failed at <state>: <error>: <message>`, from its history: the state
    whose task failed last (a caught failure too: the pipeline catches every step's) and its error."""
    state = failed_in = None
    failure: dict = {}
    for event in events:
        kind = str(getattr(event.get("type"), "value", event.get("type")) or "")  # moto's are enum members
        details = next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
        if kind.endswith("StateEntered"):
            state = details.get("name")
        elif kind.endswith(("Failed", "TimedOut")) and not kind.startswith("Execution"):
            failed_in, failure = state, details
    if status != "FAILED":
        where = f" in {state}" if state else ""
        return f"execution {name} {'timed out' if status == 'TIMED_OUT' else 'was aborted'}{where}"
    if not failure:
        failed_in, failure = state, {"error": error, "cause": cause}
    return f"execution {name} failed" + (f" at {failed_in}" if failed_in else "") + f": {_reason(failure)}"


def _reason(failure: dict) -> str:
    """A Lambda error's cause is its JSON error (errorMessage, errorType, stackTrace): its message is the reason."""
    error, cause = str(failure.get("error") or ""), str(failure.get("cause") or "")
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        cause = str(parsed["errorMessage"])
    elif isinstance(parsed, dict) and "TrainingJobStatus" in parsed:  # a SageMaker job's description: why it ended
        cause = (f"training job {parsed.get('TrainingJobName')} {parsed['TrainingJobStatus']}: "
                 f"{parsed.get('FailureReason')}")
    text = " ".join((f"{error}: {cause}" if error and cause else error or cause or "no reason given").split())
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS - 1] + "…"
