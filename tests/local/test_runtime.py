"""The local Lambda runtime: each function in its own warm workers, concurrently, as Lambda runs them."""

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from local.runtime import DEFAULT_CONCURRENCY, FunctionConfig, Invocation, LambdaRuntime, TooManyRequestsException
from tests.local.conftest import WAIT_S, Listener, Sink, gone

BASE = {"BASE": "1"}
STREAM = re.compile(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}")


def config(name: str, handler: str, environment: dict[str, str] | None = None, **settings: Any) -> FunctionConfig:
    return FunctionConfig(name, f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
                          f"tests.local.handlers.{handler}", environment or {}, **settings)


@pytest.fixture(scope="module")
def sink() -> Sink:
    return Sink()


@pytest.fixture(scope="module")
def runtime(listener: Listener, sink: Sink) -> Iterator[LambdaRuntime]:
    os.environ["LEAK_CHECK"] = "the parent's"  # set before any worker exists: none may see it
    report = {"REPORT_PORT": str(listener.port)}
    # A preload module that is not installed is skipped (the tests need no heavy libraries).
    lambda_runtime = LambdaRuntime(BASE, log_sink=sink, preload=["no_such_library"])
    for function in [
        config("one", "echo_env", {"WHO": "one"}),
        config("two", "echo_env", {"WHO": "two"}),
        config("provisioned", "echo_env"),
        config("boom", "boom"),
        config("waiter", "report", report),
        config("single", "report", report, reserved_concurrency=1),
        config("closed", "report", report, reserved_concurrency=0),
        config("nap", "nap", timeout_s=1),
        config("crash", "crash"),
        config("chatty", "chatty"),
        config("missing", "nowhere"),
    ]:
        lambda_runtime.register(function)
    yield lambda_runtime
    lambda_runtime.stop()
    del os.environ["LEAK_CHECK"]


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def payload(invocation: Invocation) -> dict:
    return json.loads(invocation.payload)


def test_a_worker_sees_exactly_its_functions_environment(runtime: LambdaRuntime) -> None:
    one = payload(runtime.invoke("one", {}))
    two = payload(runtime.invoke("arn:aws:lambda:us-east-1:123456789012:function:two", {}))
    assert one["environment"] == {
        **BASE,
        "WHO": "one",
        "AWS_LAMBDA_FUNCTION_NAME": "one",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/one",
        "AWS_LAMBDA_LOG_STREAM_NAME": one["stream"],
        "_HANDLER": "tests.local.handlers.echo_env",
        "TZ": ":UTC",
    }
    assert STREAM.fullmatch(one["stream"])
    assert two["environment"]["WHO"] == "two" and "LEAK_CHECK" not in two["environment"]


def test_the_handler_is_imported_in_its_functions_environment(runtime: LambdaRuntime) -> None:
    assert payload(runtime.invoke("one", {}))["imported_with"] == "one"
    assert payload(runtime.invoke("two", {}))["imported_with"] == "two"


def test_a_warm_worker_serves_the_next_invocation(runtime: LambdaRuntime) -> None:
    first, second = payload(runtime.invoke("one", {})), payload(runtime.invoke("one", {}))
    assert first["pid"] == second["pid"] and first["stream"] == second["stream"]
    assert first["pid"] != payload(runtime.invoke("two", {}))["pid"]


def test_a_provisioned_environment_is_initialized_before_the_first_invocation_and_serves_it(
        runtime: LambdaRuntime) -> None:
    runtime.provision("provisioned")
    first = payload(runtime.invoke("provisioned", {}))
    assert first["environment"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "provisioned-concurrency"
    assert payload(runtime.invoke("provisioned", {}))["pid"] == first["pid"], "the same warm environment"


def test_different_functions_run_at_the_same_time(
    runtime: LambdaRuntime, listener: Listener, pool: ThreadPoolExecutor,
) -> None:
    blocked = pool.submit(runtime.invoke, "waiter", {"wait": True})
    conn, message = listener.next()  # it runs, and returns only at our word
    assert runtime.invoke("one", {}).function_error is None
    assert not blocked.done()
    conn.sendall(b"go\n")
    assert payload(blocked.result())["pid"] == message["pid"]


def test_past_its_concurrency_a_sync_invoke_is_throttled_and_an_event_waits(
    runtime: LambdaRuntime, listener: Listener, pool: ThreadPoolExecutor,
) -> None:
    first = pool.submit(runtime.invoke, "single", {"wait": True, "n": 1})
    conn, running = listener.next()
    with pytest.raises(TooManyRequestsException) as throttled:
        runtime.invoke("single", {"n": 2})
    assert throttled.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
    runtime.invoke_async("single", {"n": 3})
    assert listener.quiet(), "the event ran while the only slot was busy"
    conn.sendall(b"go\n")
    assert first.result().function_error is None
    _, queued = listener.next()
    assert queued["event"] == {"n": 3} and queued["pid"] == running["pid"]  # the freed, warm worker


def test_a_function_without_reserved_concurrency_runs_a_few_at_once_and_the_next_invoke_waits_for_one(
    runtime: LambdaRuntime, listener: Listener, pool: ThreadPoolExecutor,
) -> None:
    """Unreserved, a function shares the account's 1,000 on AWS: the local cap is the machine's, never a 429."""
    waiting = [pool.submit(runtime.invoke, "waiter", {"wait": True}) for _ in range(DEFAULT_CONCURRENCY + 1)]
    conns = [listener.next()[0] for _ in range(DEFAULT_CONCURRENCY)]
    assert listener.quiet(), "the fifth invoke waits for a worker"
    conns[0].sendall(b"go\n")
    fifth, _ = listener.next()  # runs once the first has returned
    for conn in [*conns[1:], fifth]:
        conn.sendall(b"go\n")
    assert all(w.result().function_error is None for w in waiting)


def test_zero_reserved_concurrency_throttles_every_invoke(runtime: LambdaRuntime) -> None:
    with pytest.raises(TooManyRequestsException):
        runtime.invoke("closed", {})


def test_an_exception_is_reported_as_lambda_reports_it(runtime: LambdaRuntime) -> None:
    result = runtime.invoke("boom", {"x": 1})
    body = payload(result)
    assert result.function_error == "Unhandled"
    assert (body["errorType"], body["errorMessage"]) == ("ValueError", "bad input 1")
    assert body["requestId"] == result.request_id
    (frame,) = body["stackTrace"]  # the function's own frames, not the runtime's
    assert "in boom" in frame


def test_a_function_past_its_timeout_is_ended_and_the_next_invocation_gets_a_fresh_worker(
    runtime: LambdaRuntime, sink: Sink,
) -> None:
    warm = payload(runtime.invoke("nap", {"seconds": 0}))["pid"]
    result = runtime.invoke("nap", {"seconds": 30})
    assert result.function_error == "Unhandled"
    message = f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds"
    assert payload(result) == {"errorType": "Sandbox.Timedout", "errorMessage": message}
    assert gone(warm)
    sink.wait_for(f"{result.request_id} Task timed out after 1.00 seconds")
    assert payload(runtime.invoke("nap", {"seconds": 0}))["pid"] != warm


def test_a_worker_that_exits_is_a_runtime_exit_error_and_the_next_invocation_works(runtime: LambdaRuntime) -> None:
    result = runtime.invoke("crash", {"code": 3})
    assert result.function_error == "Unhandled"
    message = f"RequestId: {result.request_id} Error: Runtime exited with error: exit status 3"
    assert payload(result) == {"errorType": "Runtime.ExitError", "errorMessage": message}
    assert runtime.invoke("crash", {}).function_error is None


def test_a_handler_that_is_not_there_is_an_init_error(runtime: LambdaRuntime) -> None:
    result = runtime.invoke("missing", {})
    assert result.function_error == "Unhandled"
    assert payload(result)["errorType"] == "Runtime.HandlerNotFound"
    assert payload(result)["errorMessage"] == "Handler 'nowhere' missing on module 'tests.local.handlers'"


def test_unknown_function_is_refused(runtime: LambdaRuntime) -> None:
    with pytest.raises(KeyError, match="not deployed"):
        runtime.invoke("nope", {})


def test_what_a_worker_prints_goes_to_its_own_log_stream(runtime: LambdaRuntime, sink: Sink) -> None:
    result = runtime.invoke("chatty", {})
    group, stream = sink.wait_for(f"END RequestId: {result.request_id}")
    assert group == "/aws/lambda/chatty" and STREAM.fullmatch(stream)
    lines = sink.lines(stream)
    start = lines.index(f"START RequestId: {result.request_id} Version: $LATEST")
    assert lines[start + 1:start + 4] == ['{"level": "INFO", "message": "hello"}', "a warning",
                                          f"END RequestId: {result.request_id}"]
    assert lines[start + 4].startswith(f"REPORT RequestId: {result.request_id}\tDuration: ")
    assert "Init Duration: " in lines[start + 4]  # its cold start
    assert payload(runtime.invoke("one", {}))["stream"] != stream


def test_stop_ends_every_worker_and_the_fork_server_even_a_busy_one(
    listener: Listener, pool: ThreadPoolExecutor,
) -> None:
    runtime = LambdaRuntime(BASE, preload=[])
    runtime.register(config("one", "echo_env"))
    runtime.register(config("waiter", "report", {"REPORT_PORT": str(listener.port)}))
    idle = payload(runtime.invoke("one", {}))
    busy = pool.submit(runtime.invoke, "waiter", {"wait": True})
    _, running = listener.next()
    runtime.stop()
    assert payload(busy.result())["errorType"] == "Runtime.ExitError"
    assert all(gone(pid) for pid in (idle["pid"], running["pid"], idle["ppid"]))
    with pytest.raises(RuntimeError, match="stopped"):
        runtime.invoke("one", {})


class Failures:
    """A failure sink that keeps what Lambda sends to on-failure destinations."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self._changed = threading.Condition()

    def __call__(self, destination: str, record: dict) -> None:
        with self._changed:
            self.sent.append((destination, record))
            self._changed.notify_all()

    def wait(self, count: int) -> list[tuple[str, dict]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.sent) >= count, WAIT_S), self.sent
            return list(self.sent)


DLQ = "arn:aws:sqs:us-east-1:123456789012:failed-events"


@pytest.fixture
def failing() -> Iterator[tuple[LambdaRuntime, Failures]]:
    failures = Failures()
    lambda_runtime = LambdaRuntime(BASE, preload=[], failure_sink=failures, retry_delays_s=(0.01, 0.02))
    lambda_runtime.register(config("boom", "boom"))
    lambda_runtime.register(config("one", "echo_env"))
    yield lambda_runtime, failures
    lambda_runtime.stop()


def test_a_failed_event_is_retried_then_its_record_goes_to_the_on_failure_destination(
    failing: tuple[LambdaRuntime, Failures],
) -> None:
    lambda_runtime, failures = failing
    lambda_runtime.configure_async("boom", on_failure=DLQ)  # Lambda's defaults: two retries
    lambda_runtime.configure_async("one", on_failure=DLQ)
    lambda_runtime.invoke_async("one", {"x": 0})  # succeeds: nothing is sent
    lambda_runtime.invoke_async("boom", {"x": 7})
    ((destination, record),) = failures.wait(1)
    assert destination == DLQ and record["version"] == "1.0"
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"].endswith(":function:boom:$LATEST")
    assert record["requestPayload"] == {"x": 7}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == "bad input 7"


@pytest.mark.parametrize("settings, condition, count", [
    ({"max_retry_attempts": 0}, "RetriesExhausted", 1),
    ({"max_retry_attempts": 2, "max_event_age_s": 0}, "EventAgeExceeded", 1),
])
def test_no_retry_past_the_configured_attempts_or_age(failing: tuple[LambdaRuntime, Failures], settings: dict,
                                                       condition: str, count: int) -> None:
    lambda_runtime, failures = failing
    lambda_runtime.configure_async("boom", on_failure=DLQ, **settings)
    lambda_runtime.invoke_async("boom", {"x": 1})
    ((_, record),) = failures.wait(1)
    assert (record["requestContext"]["condition"], record["requestContext"]["approximateInvokeCount"]) == (
        condition, count)


def test_without_a_destination_a_failed_event_is_dropped_after_its_retries(
    failing: tuple[LambdaRuntime, Failures], caplog: pytest.LogCaptureFixture,
) -> None:
    lambda_runtime, failures = failing
    lambda_runtime.invoke_async("boom", {"x": 1})
    deadline = time.monotonic() + WAIT_S
    while not any("attempt 3 of 3" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, [r.getMessage()[:80] for r in caplog.records]
        time.sleep(0.01)
    assert failures.sent == []
