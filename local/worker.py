"""Lambda execution environments on the local cloud: the fork server and the workers it forks.

The fork server is one process per local cloud. It imports the heavy third-party libraries
once (its preload list), so every worker forked from it starts warm: a cold start pays only
for the handler's own modules. A worker first replaces os.environ with its function's
environment and only then imports the handler, because production handlers parse their
settings once, at import. It then serves one invocation at a time over a socket, as Lambda's
runtime serves an execution environment, and what it prints goes to a pipe the runtime ships
to CloudWatch Logs, with START / END / REPORT lines and errors logged as Lambda logs them.

Not multiprocessing's forkserver: it re-runs the parent's __main__ in every child before the
target (for `mlops up`, the CLI, which imports functions.* in the wrong environment), its
server inherits the parent's whole environment, and it is one per process. Only the standard
library is imported here: the fork server loads this module before it preloads anything.
"""

import contextlib
import gc
import importlib
import io
import json
import logging
import math
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

HEADER = struct.Struct("!I")  # a frame on a socket: its length, then its bytes
STATUS = struct.Struct("q")  # on a worker's status pipe: its pid, then its exit code (negative: signal)

# What a worker sends back: one kind byte, then JSON.
READY, INIT_ERROR, RESULT, ERROR = b"R", b"E", b"0", b"1"

Handler = Callable[[Any, "LambdaContext"], Any]


def send_frame(sock: socket.socket, body: bytes, fds: Sequence[int] = ()) -> None:
    header = HEADER.pack(len(body))
    if fds:
        socket.send_fds(sock, [header], list(fds))
    else:
        sock.sendall(header)
    sock.sendall(body)


def recv_frame(sock: socket.socket, max_fds: int = 0) -> tuple[bytes, list[int]] | None:
    """The next frame and the descriptors sent with it; None once the peer is gone."""
    fds: list[int] = []
    try:
        if max_fds:
            head, fds, _, _ = socket.recv_fds(sock, HEADER.size, max_fds)
        else:
            head = sock.recv(HEADER.size)
        if 0 < len(head) < HEADER.size:
            head += _exactly(sock, HEADER.size - len(head)) or b""
        body = _exactly(sock, HEADER.unpack(head)[0]) if len(head) == HEADER.size else None
    except OSError:
        body = None
    if body is None:
        for fd in fds:
            os.close(fd)
        return None
    return body, fds


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray(size)
    view, received = memoryview(buffer), 0
    while received < size:
        count = sock.recv_into(view[received:])
        if not count:
            return None  # the peer went away mid-frame
        received += count
    return bytes(buffer)


# --- the fork server ---------------------------------------------------------------------------

def serve(sock_fd: int, preload: list[str]) -> None:
    """Preload, then fork a worker per request until the runtime closes its end of the socket."""
    for module in preload:
        # One not installed is skipped: the functions that need it fail at their own import, as on Lambda.
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    gc.freeze()  # what was imported is shared with every worker; their collections leave it alone
    server = socket.socket(fileno=sock_fd)
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_r, False)
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD reaches the wakeup pipe
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # ends its workers too (below)
    workers: dict[int, int] = {}  # pid -> the write end of its status pipe
    try:
        while True:
            readable, _, _ = select.select([server.fileno(), wakeup_r], [], [])
            if wakeup_r in readable:
                while _drain(wakeup_r):
                    pass
                _reap(workers, block=False)
            if server.fileno() not in readable:
                continue
            frame = recv_frame(server, max_fds=3)
            if frame is None:
                return
            request = json.loads(frame[0])
            if request["op"] == "kill":
                if request["pid"] in workers:  # not reaped yet, so the pid is still that worker's
                    _kill_group(request["pid"])
                continue
            control, output, status = frame[1]
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    server.close()
                    for fd in (wakeup_r, wakeup_w, *workers.values()):
                        os.close(fd)
                    signal.set_wakeup_fd(-1)
                    for signum in (signal.SIGCHLD, signal.SIGTERM):
                        signal.signal(signum, signal.SIG_DFL)
                    code = _work(control, output, request["handler"], request["environment"])
                except SystemExit as exit:  # sys.exit() in a function ends its runtime, with that status
                    code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
                except Exception:  # a failure of this runtime itself, to the worker's log stream
                    logging.getLogger("mlops.local").exception("the local Lambda runtime failed")
                finally:
                    os._exit(code)  # never back into the fork server's loop
            with contextlib.suppress(OSError):  # it may have exited already
                os.setpgid(pid, pid)  # the worker does it too: whichever runs first, a kill finds the group
            os.close(control)
            os.close(output)
            _write_status(status, pid)
            workers[pid] = status
    finally:
        for pid in workers:
            _kill_group(pid)
        _reap(workers, block=True)


def _drain(fd: int) -> bytes:
    try:
        return os.read(fd, 512)
    except BlockingIOError:
        return b""


def _reap(workers: dict[int, int], block: bool) -> None:
    for pid in list(workers):
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if done:
            status_fd = workers.pop(pid)
            _write_status(status_fd, os.waitstatus_to_exitcode(status))
            os.close(status_fd)


def _write_status(fd: int, value: int) -> None:
    with contextlib.suppress(BrokenPipeError):  # the runtime may have let go of that worker
        os.write(fd, STATUS.pack(value))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# --- a worker ----------------------------------------------------------------------------------

@dataclass
class LambdaContext:
    """The `context` Lambda's Python runtime passes to a handler."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: str  # a string, as the Python runtime gives it
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int  # epoch milliseconds, as Lambda's runtime API gives it
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def _work(control_fd: int, output_fd: int, handler_name: str, environment: dict[str, str]) -> int:
    """A worker's life: its environment, its handler, then one invocation at a time. Returns its exit code."""
    os.setpgid(0, 0)  # a timeout kills the worker and whatever it started
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    sys.stdout, sys.stderr = _line_buffered(1), _line_buffered(2)
    os.environ.clear()
    os.environ.update(environment)
    time.tzset()
    control = socket.socket(fileno=control_fd)

    began = time.monotonic()
    handler = _load(handler_name)
    if isinstance(handler, dict):
        _log_error(handler)
        send_frame(control, INIT_ERROR + json.dumps(handler).encode())
        return 1
    init_ms: float | None = (time.monotonic() - began) * 1000
    send_frame(control, READY)
    # Each invocation: its details, then its event, as Lambda's runtime API hands them over.
    while (details := recv_frame(control)) and (event := recv_frame(control)):
        send_frame(control, _invoke(handler, json.loads(details[0]), json.loads(event[0]), init_ms))
        init_ms = None
    return 0


def _line_buffered(fd: int) -> io.TextIOWrapper:
    """A new text stream on the pipe: line-buffered, as Lambda's runtime flushes what a function prints."""
    return io.TextIOWrapper(io.BufferedWriter(io.FileIO(fd, "w", closefd=False)), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True)


def _load(name: str) -> Handler | dict[str, Any]:
    """The handler, or the error Lambda's Python runtime reports when it cannot load it."""
    module_name, _, attribute = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        return _fault("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}")
    except SyntaxError as error:
        return _fault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {error}")
    except Exception as error:  # noqa: BLE001 - any failure at import is the function's init error
        return _exception(error, "")
    handler = getattr(module, attribute, None)
    if handler is None:
        return _fault("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'")
    return handler


def _invoke(handler: Handler, request: dict[str, Any], event: Any, init_ms: float | None) -> bytes:
    request_id = request["request_id"]
    environ = os.environ
    context = LambdaContext(
        function_name=environ["AWS_LAMBDA_FUNCTION_NAME"],
        function_version=environ["AWS_LAMBDA_FUNCTION_VERSION"],
        invoked_function_arn=request["arn"],
        memory_limit_in_mb=environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
        aws_request_id=request_id,
        log_group_name=environ["AWS_LAMBDA_LOG_GROUP_NAME"],
        log_stream_name=environ["AWS_LAMBDA_LOG_STREAM_NAME"],
        deadline_ms=request["deadline_ms"],
    )
    print(f"START RequestId: {request_id} Version: {context.function_version}")
    began = time.monotonic()
    try:
        response = handler(event, context)
    except Exception as error:  # noqa: BLE001 - reported the way Lambda reports it
        failure = _exception(error, request_id)
        _log_error(failure)
        result = ERROR + json.dumps(failure).encode()
    else:
        try:
            result = RESULT + json.dumps(response, default=_number, ensure_ascii=False).encode()
        except (TypeError, ValueError) as error:
            failure = _fault("Runtime.MarshalError", f"Unable to marshal response: {error}", request_id)
            _log_error(failure)
            result = ERROR + json.dumps(failure).encode()
    duration_ms = (time.monotonic() - began) * 1000
    sys.stdout.flush()
    sys.stderr.flush()
    memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    report = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
              f"Billed Duration: {math.ceil(duration_ms)} ms\t"
              f"Memory Size: {context.memory_limit_in_mb} MB\tMax Memory Used: {memory_mb} MB")
    if init_ms is not None:
        report += f"\tInit Duration: {init_ms:.2f} ms"
    print(f"END RequestId: {request_id}\n{report}")
    return result


def _number(value: object) -> object:
    """Lambda's Python runtime marshals a Decimal (as DynamoDB returns numbers) as a number."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _fault(error_type: str, message: str, request_id: str = "") -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": []}


def _exception(error: BaseException, request_id: str) -> dict[str, Any]:
    frames = traceback.extract_tb(error.__traceback__)
    while frames and frames[0].filename == __file__:  # the function's frames only, as Lambda shows them
        frames.pop(0)
    return {"errorMessage": str(error), "errorType": type(error).__name__, "requestId": request_id,
            "stackTrace": traceback.format_list(frames)}


def _log_error(failure: dict[str, Any]) -> None:
    """As Lambda's runtime logs it: one log event, its lines joined by carriage returns."""
    lines = [f"[ERROR] {failure['errorType']}: {failure['errorMessage']}"]
    if failure["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        lines += [line for frame in failure["stackTrace"] for line in frame.splitlines()]
    print("\r".join(lines), file=sys.stderr)
