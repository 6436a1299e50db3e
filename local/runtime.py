"""An in-process Lambda runtime: runs handlers from functions/ with their template environment.

Each function gets what Lambda gives it: the environment variables of its template entry
plus the runtime's own (function name, region, credentials, and the local endpoint), a
context object, and the error shape Lambda reports for an unhandled exception
(errorType / errorMessage). Invocations are serialized because a process has one
os.environ; each one sees exactly its own function's environment.

With a log sink, what an invocation prints (its log lines and metric documents) goes to the
sink instead of the terminal, as Lambda sends a function's stdout to CloudWatch Logs.
"""

import importlib
import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FunctionConfig:
    name: str
    arn: str
    handler: str  # "package.module.callable", the image's CMD
    environment: dict[str, str]
    memory_mb: int = 128
    timeout_s: int = 3
    log_group: str = ""  # where its output goes (the deployer sets /aws/lambda/<name> by default)


@dataclass
class LambdaContext:
    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


@dataclass
class Invocation:
    payload: bytes
    function_error: str | None = None  # "Unhandled" when the handler raised
    request_id: str = ""


LogSink = Callable[[str, str], None]  # (log group, what one invocation printed)


class LambdaRuntime:
    def __init__(self, base_environment: dict[str, str], log_sink: LogSink | None = None):
        self._base = dict(base_environment)
        self._functions: dict[str, FunctionConfig] = {}
        self._lock = threading.RLock()
        self._log_sink = log_sink
        self._outputs: dict[str, _InvocationOutput] = {}
        self._buffers = threading.local()  # what the invoking thread printed, while it runs

    def capture_output(self) -> None:
        """Route what invocations print (stdout and stderr) to the log sink, until release_output."""
        if self._log_sink is not None and not self._outputs:
            self._outputs = {"stdout": _InvocationOutput(sys.stdout, self._buffers),
                             "stderr": _InvocationOutput(sys.stderr, self._buffers)}
            sys.stdout, sys.stderr = self._outputs["stdout"], self._outputs["stderr"]

    def release_output(self) -> None:
        for name, output in self._outputs.items():
            if getattr(sys, name) is output:
                setattr(sys, name, output.passthrough)
        self._outputs = {}

    def register(self, config: FunctionConfig) -> None:
        self._functions[config.name] = config

    def resolve(self, name_or_arn: str) -> FunctionConfig | None:
        name = name_or_arn.split(":function:")[-1].split(":")[0]
        return self._functions.get(name)

    @property
    def functions(self) -> dict[str, FunctionConfig]:
        return dict(self._functions)

    def invoke(self, name_or_arn: str, event: Any) -> Invocation:
        config = self.resolve(name_or_arn)
        if config is None:
            raise KeyError(f"function {name_or_arn} is not deployed")
        context = LambdaContext(config.name, config.arn, config.memory_mb, config.timeout_s,
                                log_group_name=config.log_group)
        environment = {
            **self._base,
            **config.environment,
            "AWS_LAMBDA_FUNCTION_NAME": config.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "_HANDLER": config.handler,
        }
        with self._lock, _environment(environment), self._logs(config):
            try:
                handler = _load(config.handler)
                result = handler(event, context)
                return Invocation(json.dumps(result).encode(), None, context.aws_request_id)
            except Exception as error:  # noqa: BLE001 - reported the way Lambda reports it
                body = {
                    "errorType": type(error).__name__,
                    "errorMessage": str(error),
                    "requestId": context.aws_request_id,
                    "stackTrace": traceback.format_tb(error.__traceback__),
                }
                return Invocation(json.dumps(body).encode(), "Unhandled", context.aws_request_id)

    @contextmanager
    def _logs(self, config: FunctionConfig):
        if not self._outputs:
            yield
            return
        self._buffers.text = io.StringIO()
        try:
            yield
        finally:
            text, self._buffers.text = self._buffers.text.getvalue(), None
            if text:
                self._log_sink(config.log_group, text)


class _InvocationOutput(io.TextIOBase):
    """A sys.stdout or sys.stderr that keeps what an invoking thread prints; the rest passes through."""

    def __init__(self, passthrough, buffers: threading.local):
        self.passthrough = passthrough
        self._buffers = buffers

    def write(self, text: str) -> int:
        buffer = getattr(self._buffers, "text", None)
        return (buffer if buffer is not None else self.passthrough).write(text)

    def flush(self) -> None:
        self.passthrough.flush()

    def isatty(self) -> bool:
        return self.passthrough.isatty()

    def fileno(self) -> int:
        return self.passthrough.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.passthrough, "encoding", "utf-8")


def _load(handler: str):
    module, _, name = handler.rpartition(".")
    return getattr(importlib.import_module(module), name)


class _environment:
    """Swap os.environ for the duration of one invocation."""

    def __init__(self, values: dict[str, str]):
        self.values = values

    def __enter__(self):
        self.saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.values)

    def __exit__(self, *exc):
        os.environ.clear()
        os.environ.update(self.saved)
        return False
