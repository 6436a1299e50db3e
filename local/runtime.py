"""Lambda on the local cloud: every function runs in its own warm worker processes.

Production handlers parse their settings once, at import, from their own environment, and a
long training step must not hold up a predict. So the runtime does what Lambda does:

- A worker (an execution environment) runs one function with exactly the environment the
  template gives it plus Lambda's own variables, and imports the handler only once that
  environment is set. It is started on first use, reused while warm, and handles one
  invocation at a time. Workers are forked from a fork server that has already imported the
  heavy libraries (PRELOAD; see local/worker.py), so a cold start pays for the handler's own
  modules only.
- Different functions run at the same time, and one function up to its reserved concurrency
  (ReservedConcurrentExecutions) or DEFAULT_CONCURRENCY. Beyond its reserved concurrency a
  synchronous invoke is throttled (TooManyRequestsException, HTTP 429 on AWS); beyond
  DEFAULT_CONCURRENCY, a limit of this machine's and not of AWS (where such a function shares the
  account's 1,000), it waits for a worker. An asynchronous one waits in the function's queue until
  a worker is free, as in Lambda's internal event queue.
- An invocation past its function's timeout ends its worker (Sandbox.Timedout); a worker that
  exits mid-invocation is a Runtime.ExitError; an exception is reported as Lambda reports it.
- An asynchronous event whose invocation fails is retried as its asynchronous invocation config
  says (two retries by default, while the event is younger than its maximum age); then, if the
  config names an on-failure destination, Lambda's invocation record goes there (the failure
  sink sends it). Lambda waits a minute before the first retry and two before the second: the
  local cloud waits as many seconds (LOCAL_RETRY_DELAYS_S).
- What a worker prints goes to the log sink as it is printed, one log stream per worker.
"""

import json
import logging
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from local.worker import INIT_ERROR, RESULT, STATUS, recv_frame, send_frame

log = logging.getLogger("mlops.local")

# Invocations at once of a function without reserved concurrency. On AWS such functions share
# the account's pool (1,000); locally each worker is a process on a laptop's few cores.
DEFAULT_CONCURRENCY = 4
INIT_TIMEOUT_S = 10.0  # Lambda's limit on a function's init phase, outside its timeout
RETRY_DELAYS_S = (60.0, 120.0)  # Lambda's waits before an asynchronous event's first and second retry
LOCAL_RETRY_DELAYS_S = (1.0, 2.0)
MAX_EVENT_AGE_S = 21600  # Lambda's default: an asynchronous event is kept six hours at most

# Third-party libraries the handlers import, imported once by the fork server (which has the
# environment all functions share, not any function's own variables). Never a functions.*
# module: those parse their settings at import, in each worker's own environment.
PRELOAD = (
    "numpy", "pandas", "pyarrow.parquet", "scipy.stats",
    "sklearn.compose", "sklearn.ensemble", "sklearn.impute", "sklearn.linear_model", "sklearn.metrics",
    "sklearn.model_selection", "sklearn.pipeline", "sklearn.preprocessing",
    "skops.io", "skl2onnx", "onnxruntime",
    "boto3", "boto3.dynamodb.conditions", "pydantic",
    "aws_lambda_powertools", "aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.parser",
    "aws_xray_sdk.core",  # Powertools' tracer
)
# BLAS libraries imported before the fork keep to one thread: a fork copies no threads, and
# Lambda gives a function one or two vCPUs anyway.
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_FORK_SERVER = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
                "from local.worker import serve; serve(int(sys.argv[2]), json.loads(sys.argv[3]))")


@dataclass
class FunctionConfig:
    name: str
    arn: str
    handler: str  # "package.module.callable", the image's CMD
    environment: dict[str, str]
    memory_mb: int = 128
    timeout_s: float = 3
    log_group: str = ""  # where its output goes; Lambda's default: /aws/lambda/<name>
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions
    # Its asynchronous invocation config (AWS::Lambda::EventInvokeConfig), Lambda's defaults without one.
    max_retry_attempts: int = 2
    max_event_age_s: float = MAX_EVENT_AGE_S
    on_failure: str | None = None  # the destination's ARN

    def __post_init__(self) -> None:
        self.log_group = self.log_group or f"/aws/lambda/{self.name}"

    @property
    def concurrency(self) -> int:
        return DEFAULT_CONCURRENCY if self.reserved_concurrency is None else self.reserved_concurrency


@dataclass
class Invocation:
    payload: bytes
    function_error: str | None = None  # "Unhandled" when the function failed (error, timeout, exit)
    request_id: str = ""


class TooManyRequestsException(Exception):
    """Lambda's answer (HTTP 429) to a synchronous invoke beyond the function's reserved concurrency."""

    def __init__(self, config: FunctionConfig) -> None:
        self.reason = "ReservedFunctionConcurrentInvocationLimitExceeded"
        super().__init__(f"Rate Exceeded. ({config.name}: {self.reason})")


LogSink = Callable[[str, str, str], None]  # (log group, log stream, what a worker printed)
FailureSink = Callable[[str, dict], None]  # (on-failure destination ARN, Lambda's invocation record)


@dataclass
class _Event:
    """An asynchronous event in a function's queue: its payload, its invocations so far, when it was queued."""

    payload: bytes
    attempts: int = 0
    queued_at: float = field(default_factory=time.monotonic)


@dataclass
class _Function:
    config: FunctionConfig
    idle: list["_Worker"] = field(default_factory=list)  # warm workers, the most recently used last
    running: int = 0  # invocations in flight
    queue: deque[_Event] = field(default_factory=deque)  # asynchronous events waiting for a worker


class LambdaRuntime:
    def __init__(self, base_environment: dict[str, str], log_sink: LogSink | None = None,
                 preload: Sequence[str] = PRELOAD, failure_sink: FailureSink | None = None,
                 retry_delays_s: Sequence[float] = RETRY_DELAYS_S) -> None:
        self._base = dict(base_environment)
        self._log_sink = log_sink
        self._failure_sink = failure_sink
        self._retry_delays_s = tuple(retry_delays_s)
        self._preload = list(preload)
        self._functions: dict[str, _Function] = {}
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)  # a slot of a function was given back
        self._fork_server: _ForkServer | None = None
        self._stopped = False

    def register(self, config: FunctionConfig) -> None:
        """Deploy a function. The first one starts the fork server, whose imports overlap the deployment."""
        with self._lock:
            self._functions[config.name] = _Function(config)
            if self._fork_server is None and not self._stopped:
                self._fork_server = _ForkServer({**self._base, **_ONE_THREAD}, self._preload)

    def configure_async(self, name_or_arn: str, *, max_retry_attempts: int | None = None,
                        max_event_age_s: float | None = None, on_failure: str | None = None) -> None:
        """Set a deployed function's asynchronous invocation config (PutFunctionEventInvokeConfig)."""
        function = self._function(name_or_arn)
        with self._lock:
            function.config = replace(
                function.config, on_failure=on_failure,
                max_retry_attempts=2 if max_retry_attempts is None else max_retry_attempts,
                max_event_age_s=MAX_EVENT_AGE_S if max_event_age_s is None else max_event_age_s)

    def resolve(self, name_or_arn: str) -> FunctionConfig | None:
        function = self._functions.get(name_or_arn.split(":function:")[-1].split(":")[0])
        return function.config if function else None

    @property
    def functions(self) -> dict[str, FunctionConfig]:
        return {name: function.config for name, function in self._functions.items()}

    def invoke(self, name_or_arn: str, event: Any) -> Invocation:
        """Run the function on the event and wait for its result (InvocationType RequestResponse)."""
        function, payload = self._function(name_or_arn), json.dumps(event).encode()
        with self._lock:
            while function.running >= function.config.concurrency:
                if function.config.reserved_concurrency is not None:
                    raise TooManyRequestsException(function.config)
                # Unreserved, the function shares the account's 1,000 on AWS: the local cap is this machine's,
                # so the invoke waits for a worker instead of failing where AWS would not.
                if self._stopped:
                    raise RuntimeError("the local Lambda runtime is stopped")
                self._freed.wait()
            function.running += 1
        return self._run(function, payload)

    def invoke_async(self, name_or_arn: str, event: Any) -> None:
        """Queue the event for the function (InvocationType Event); it runs once a worker is free."""
        function, payload = self._function(name_or_arn), json.dumps(event).encode()
        self._enqueue(function, _Event(payload))

    def _enqueue(self, function: "_Function", event: _Event) -> None:
        with self._lock:
            if self._stopped:
                return
            function.queue.append(event)
        self._dispatch(function)

    def provision(self, name_or_arn: str) -> None:
        """Start one execution environment of the function now, initialized and idle, as Lambda's
        provisioned concurrency does, so that its first invocation is warm."""
        function = self._function(name_or_arn)
        worker = self._start(function.config, initialization="provisioned-concurrency")
        with self._lock:
            keep = not self._stopped
            if keep:
                function.idle.insert(0, worker)  # the most recently used stay last
        if not keep:
            worker.close()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """End every worker, busy or idle (the fork server kills them all), and drop queued events."""
        with self._lock:
            self._stopped = True
            self._freed.notify_all()
            idle = [worker for function in self._functions.values() for worker in function.idle]
            for function in self._functions.values():
                function.idle.clear()
                function.queue.clear()
            fork_server, self._fork_server = self._fork_server, None
        if fork_server is not None:
            fork_server.stop()
        for worker in idle:
            worker.close()

    def _function(self, name_or_arn: str) -> _Function:
        config = self.resolve(name_or_arn)
        if config is None:
            raise KeyError(f"function {name_or_arn} is not deployed")
        if self._stopped:
            raise RuntimeError("the local Lambda runtime is stopped")
        return self._functions[config.name]

    def _dispatch(self, function: _Function) -> None:
        """Run queued events while the function has capacity, each on its own thread."""
        while True:
            with self._lock:
                if self._stopped or not function.queue or function.running >= function.config.concurrency:
                    return
                function.running += 1
                event = function.queue.popleft()
            threading.Thread(target=self._run_queued, args=(function, event), daemon=True,
                             name=f"event-{function.config.name}").start()

    def _run_queued(self, function: _Function, event: _Event) -> None:
        try:
            result = self._run(function, event.payload)
        except (OSError, RuntimeError):
            log.exception("asynchronous invocation of %s could not start", function.config.name)
            return
        if not result.function_error or self._stopped:  # a worker killed by the stop is no failure of its own
            return
        event.attempts += 1
        config = function.config
        log.warning("asynchronous invocation of %s failed (attempt %d of %d): %s", config.name, event.attempts,
                    config.max_retry_attempts + 1, result.payload[:500])
        if event.attempts > config.max_retry_attempts:
            self._failed(config, event, result, "RetriesExhausted")
            return
        delay = self._retry_delays_s[min(event.attempts, len(self._retry_delays_s)) - 1]
        if time.monotonic() + delay - event.queued_at > config.max_event_age_s:
            self._failed(config, event, result, "EventAgeExceeded")
            return
        retry = threading.Timer(delay, self._enqueue, args=(function, event))
        retry.daemon = True
        retry.start()

    def _failed(self, config: FunctionConfig, event: _Event, result: Invocation, condition: str) -> None:
        """An event Lambda gives up on: its invocation record goes to the on-failure destination, if any."""
        if config.on_failure is None or self._failure_sink is None:
            return
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {"requestId": result.request_id, "functionArn": f"{config.arn}:$LATEST",
                               "condition": condition, "approximateInvokeCount": event.attempts},
            "requestPayload": json.loads(event.payload),
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                                "functionError": result.function_error},
            "responsePayload": _json_or_text(result.payload),
        }
        try:
            self._failure_sink(config.on_failure, record)
        except Exception:  # a lost record must not stop the runtime; it is logged
            log.exception("the failed event of %s could not be sent to %s", config.name, config.on_failure)

    def _run(self, function: _Function, payload: bytes) -> Invocation:
        """One invocation on a warm worker or a new one, in a slot the caller took."""
        try:
            with self._lock:
                worker = function.idle.pop() if function.idle else None
            worker = worker or self._start(function.config)
            result = worker.invoke(function.config, payload)
            with self._lock:
                keep = worker.alive and not self._stopped
                if keep:
                    function.idle.append(worker)
            if not keep:
                worker.close()
            return result
        finally:
            with self._lock:
                function.running -= 1
                self._freed.notify_all()
            self._dispatch(function)

    def _start(self, config: FunctionConfig, initialization: str = "on-demand") -> "_Worker":
        stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        environment = {
            **self._base,
            **config.environment,
            "AWS_LAMBDA_FUNCTION_NAME": config.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": initialization,
            "AWS_LAMBDA_LOG_GROUP_NAME": config.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "_HANDLER": config.handler,
            "TZ": ":UTC",
        }
        fork_server = self._fork_server
        if fork_server is None:
            raise RuntimeError("the local Lambda runtime is stopped")
        return fork_server.fork(config, environment, stream, self._log_sink)


class _ForkServer:
    """The process workers are forked from (local.worker.serve), the heavy libraries already imported."""

    def __init__(self, environment: dict[str, str], preload: list[str]) -> None:
        self._socket, theirs = socket.socketpair()
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _FORK_SERVER, json.dumps(sys.path), str(theirs.fileno()), json.dumps(preload)],
                env=environment, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the local cloud only, which then stops the workers
            )
        self._lock = threading.Lock()

    def fork(self, config: FunctionConfig, environment: dict[str, str], stream: str,
             sink: LogSink | None) -> "_Worker":
        control, their_control = socket.socketpair()
        output_r, output_w = os.pipe()
        status_r, status_w = os.pipe()
        request = {"op": "fork", "handler": config.handler, "environment": environment}
        try:
            with self._lock:
                send_frame(self._socket, json.dumps(request).encode(), [their_control.fileno(), output_w, status_w])
        except OSError:
            for fd in (output_r, status_r):
                os.close(fd)
            control.close()
            raise
        finally:
            their_control.close()
            os.close(output_w)
            os.close(status_w)
        pid = _read_status(status_r, timeout_s=None)  # written as soon as it forked (after the preload, at first)
        if pid is None:
            raise RuntimeError("the local Lambda fork server is gone")
        return _Worker(self, pid, control, status_r, output_r, config.log_group, stream, sink)

    def kill(self, pid: int) -> None:
        try:
            with self._lock:
                send_frame(self._socket, json.dumps({"op": "kill", "pid": pid}).encode())
        except OSError:
            pass  # stopped: it killed every worker on its way out

    def stop(self, timeout_s: float = 2.0) -> None:
        """Closing its socket, or SIGTERM, makes it kill every worker it forked, reap them and exit.

        SIGTERM too: while it still imports its preload list (seconds, after a start) it reads no
        socket, and it has forked no worker yet, so SIGTERM's default action ends it at once.
        """
        with self._lock:
            self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
        self._process.terminate()
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class _Worker:
    """One execution environment, seen from the runtime: a worker process and its pipes."""

    def __init__(self, fork_server: _ForkServer, pid: int, control: socket.socket, status_fd: int, output_fd: int,
                 log_group: str, stream: str, sink: LogSink | None) -> None:
        self.fork_server, self.pid, self.control, self.status_fd = fork_server, pid, control, status_fd
        self.log_group, self.stream, self.sink = log_group, stream, sink
        self.ready = False  # its handler is imported
        self.alive = True
        self.timed_out = False
        self.pump = threading.Thread(target=self._pump, args=(output_fd,), daemon=True, name=f"logs-{pid}")
        self.pump.start()

    def invoke(self, config: FunctionConfig, payload: bytes) -> Invocation:
        request_id = str(uuid.uuid4())
        began = time.monotonic()
        if not self.ready:
            # The init phase may take INIT_TIMEOUT_S on its own; beyond that it eats into the timeout.
            init_by = began + INIT_TIMEOUT_S
            frame = self._receive(init_by + config.timeout_s)
            if frame is None:
                return self._lost(config, request_id)
            if frame[:1] == INIT_ERROR:
                self.alive = False
                return Invocation(frame[1:], "Unhandled", request_id)
            self.ready = True
            began = min(time.monotonic(), init_by)
        deadline = began + config.timeout_s
        # As Lambda's runtime API hands it over: the request's details, then the event as it came.
        details = {"request_id": request_id, "arn": config.arn,
                   "deadline_ms": int((time.time() + deadline - time.monotonic()) * 1000)}
        try:
            send_frame(self.control, json.dumps(details).encode())
            send_frame(self.control, payload)
        except OSError:
            return self._lost(config, request_id)
        frame = self._receive(deadline)
        if frame is None:
            return self._lost(config, request_id)
        return Invocation(frame[1:], None if frame[:1] == RESULT else "Unhandled", request_id)

    def close(self) -> None:
        """Let go of the worker; an idle one exits when its socket closes, and the fork server reaps it."""
        self.control.close()
        os.close(self.status_fd)
        self.pump.join(1.0)  # its last lines reach the sink

    def _receive(self, until: float) -> bytes | None:
        """The worker's next frame; None if it exited, or if `until` passed (then it timed out)."""
        if not _readable(self.control, until - time.monotonic()):
            self.timed_out = True
            return None
        frame = recv_frame(self.control)
        return frame[0] if frame else None

    def _lost(self, config: FunctionConfig, request_id: str) -> Invocation:
        """No answer: what Lambda reports when a function times out or its runtime exits."""
        self.alive = False
        if self.timed_out:
            self.fork_server.kill(self.pid)
            error_type, message = "Sandbox.Timedout", f"Task timed out after {config.timeout_s:.2f} seconds"
            now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            logged = f"{now} {request_id} {message}"
        else:
            code = _read_status(self.status_fd, timeout_s=1.0)
            error_type = "Runtime.ExitError"
            message = (f"Runtime exited with error: {_exit_reason(code)}" if code
                       else "Runtime exited without providing a reason")
            logged = f"RequestId: {request_id} Error: {message}\n{error_type}"
        self.pump.join(1.0)  # what it printed before it ended comes first in its log stream
        self._log(f"{logged}\nEND RequestId: {request_id}\n")
        body = {"errorType": error_type, "errorMessage": f"RequestId: {request_id} Error: {message}"}
        return Invocation(json.dumps(body).encode(), "Unhandled", request_id)

    def _pump(self, output_fd: int) -> None:
        """Ship what the worker prints to its log stream, line by line as it prints it."""
        pending = b""
        with open(output_fd, "rb", buffering=0) as output:
            while chunk := output.read(65536):
                lines, newline, pending = (pending + chunk).rpartition(b"\n")
                if newline:
                    self._log(lines.decode("utf-8", "replace") + "\n")
        if pending:
            self._log(pending.decode("utf-8", "replace"))

    def _log(self, text: str) -> None:
        if self.sink is not None:
            self.sink(self.log_group, self.stream, text)


def _json_or_text(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")


def _readable(source: socket.socket | int, timeout_s: float | None) -> bool:
    poller = select.poll()  # not select(): a busy local cloud may hold descriptors past FD_SETSIZE
    poller.register(source, select.POLLIN)
    return bool(poller.poll(None if timeout_s is None else max(0, math.ceil(timeout_s * 1000))))


def _read_status(fd: int, timeout_s: float | None) -> int | None:
    """The next number the fork server wrote for a worker (its pid, then its exit code)."""
    if not _readable(fd, timeout_s):
        return None
    data = os.read(fd, STATUS.size)
    return STATUS.unpack(data)[0] if len(data) == STATUS.size else None


def _exit_reason(code: int) -> str:
    """As Lambda words it: "exit status 3", "signal: killed"."""
    return f"exit status {code}" if code > 0 else f"signal: {(signal.strsignal(-code) or str(-code)).lower()}"
