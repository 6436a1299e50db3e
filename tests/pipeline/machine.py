"""The training state machine, run in-process: the template's Task states in order, each with the template's
Retry policy and its Catch into RecordFailure, over tasks that take the JSON state and return their JSON result
as the Lambda handlers do (the domain steps on the in-memory stores, or the handlers themselves under moto).

What the runner mirrors is read from infra/training.py's source, without importing the CDK: the steps and
their result paths (STEPS), the errors and maximum attempts of each `add_retry` call (a retrier counts its
own attempts; the first whose errors match an error decides), the errors and result path of the
`add_catch` call, the error and cause of the Fail state after RecordFailure, each Choice's condition
(`.when(sfn.Condition.is_string("$.path"), state)`, taken after the step that writes the path); and the rule on the
execution's status change is the `ended` callback. tests/pipeline/test_fault_matrix.py checks all of it
against the synthesized template. Retry intervals are not waited for.
"""

import ast
import copy
import json
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

TRAINING_SOURCE = Path(__file__).resolve().parents[2] / "infra" / "training.py"

Task = Callable[[dict[str, Any]], dict[str, Any]]
# Called before every attempt of a state: (state name, attempt from 0, the state's input).
BeforeAttempt = Callable[[str, int, dict[str, Any]], None]


@dataclass(frozen=True)
class Retrier:
    errors: frozenset[str]
    max_attempts: int  # retries after the first attempt (Step Functions' MaxAttempts)


@dataclass(frozen=True)
class Choice:
    """A Choice state after the step that writes `path`'s first part: to `target` when the test holds."""

    path: str  # without "$."
    test: str  # the sfn.Condition: is_string, is_present or is_not_null
    target: str

    def holds(self, state: dict[str, Any]) -> bool:
        value: Any = state
        for part in self.path.split("."):
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
        return {"is_string": isinstance(value, str), "is_present": True, "is_not_null": value is not None}[self.test]


@dataclass(frozen=True)
class Template:
    """What the runner takes from the template."""

    steps: list[tuple[str, str]]  # (state name, result path without "$."), in order
    retriers: list[Retrier]  # in order: the first whose errors match an error decides, each with its own count
    catch_errors: frozenset[str]
    error_path: str  # where a caught error goes (without "$.")
    fail_error: str  # the error of the Fail state after RecordFailure
    fail_cause_path: str | None  # where its cause is read (without "$."), when it is not a fixed text
    choices: list[Choice]
    failure_state: str = "RecordFailure"
    failure_path: str = "run"


@cache
def template() -> Template:
    tree = ast.parse(TRAINING_SOURCE.read_text())
    constants = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
                 for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                 if isinstance(target, ast.Name) and node.value is not None}

    def value(node: ast.expr) -> Any:
        if isinstance(node, ast.Name) and node.id in constants:
            node = constants[node.id]
        return ast.literal_eval(node)

    def calls(method: str, positional: bool = False) -> list[dict[str, ast.expr]]:
        """The keyword (and, if asked, positional: "0", "1"...) arguments of each call of `.method(...)`."""
        found = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and (
            isinstance(node.func, ast.Attribute) and node.func.attr == method)]
        return [{**({str(i): arg for i, arg in enumerate(call.args)} if positional else {}),
                 **{keyword.arg: keyword.value for keyword in call.keywords if keyword.arg}} for call in found]

    (catch,) = calls("add_catch")  # one Catch for every step (else: teach the runner the new shape)
    (fail,) = calls("Fail")
    steps_node = constants["STEPS"]
    assert isinstance(steps_node, ast.List), "infra/training.py's STEPS is no longer a list of tuples"
    steps = []
    for row in steps_node.elts:
        assert isinstance(row, ast.Tuple)
        steps.append((value(row.elts[0]), value(row.elts[2]).removeprefix("$.")))
    choices = []
    for when in calls("when", positional=True):
        condition, target = when["0"], when["1"]
        assert isinstance(condition, ast.Call) and isinstance(condition.func, ast.Attribute)
        assert isinstance(target, ast.Name), "a Choice's target is a state's variable"
        test = condition.func.attr
        assert test in {"is_string", "is_present", "is_not_null"}, f"teach the runner sfn.Condition.{test}"
        by_variable = {re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower(): name for name, _ in steps}
        choices.append(Choice(value(condition.args[0]).removeprefix("$."), test, by_variable[target.id]))
    return Template(
        steps=steps,
        choices=choices,
        retriers=[Retrier(frozenset(value(retry["errors"])),
                          value(retry["max_attempts"]) if "max_attempts" in retry else 3)  # CDK's default: 3
                  for retry in calls("add_retry")],
        catch_errors=frozenset(value(catch["errors"])),
        error_path=value(catch["result_path"]).removeprefix("$."),
        fail_error=value(fail["error"]),
        fail_cause_path=value(fail["cause_path"]).removeprefix("$.") if "cause_path" in fail else None,
    )


class LambdaServiceError(Exception):
    """A failure of the Lambda service itself (the invoke, not the function): its name is the state's error."""

    def __init__(self, name: str = "Lambda.TooManyRequestsException"):
        super().__init__(name)
        self.name = name


def lambda_error(error: Exception) -> dict[str, str]:
    """Step Functions' {"Error", "Cause"} of a Lambda task that raised `error` (its errorType is the class name)."""
    if isinstance(error, LambdaServiceError):
        return {"Error": error.name, "Cause": f"{error.name}: Rate Exceeded."}
    name = type(error).__name__
    cause = {"errorMessage": str(error), "errorType": name,
             "stackTrace": traceback.format_tb(error.__traceback__)}
    return {"Error": name, "Cause": json.dumps(cause)}


@dataclass
class Execution:
    status: str  # SUCCEEDED, or FAILED (RecordFailure ran, or itself failed past its retries); RUNNING if stopped
    state: dict[str, Any]
    error: dict[str, str] | None = None  # the execution's own error, when it failed
    attempts: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (state, error) of every failed attempt
    stopped_before: str | None = None  # where `until` stopped it


class _Failed(Exception):
    def __init__(self, error: dict[str, str]):
        super().__init__(error["Error"])
        self.error = error


class StateMachine:
    """The pipeline's execution: Task states in order, retried and caught as the template says.

    `ended` stands for the rule on the execution's status change (a failed execution's run is
    recorded FAILED if it is still RUNNING): called with the execution once it has FAILED.
    """

    def __init__(self, tasks: dict[str, Task], *, before: BeforeAttempt | None = None,
                 ended: Callable[["Execution"], Any] | None = None):
        self.template = template()
        names = [name for name, _ in self.template.steps] + [self.template.failure_state]
        missing = sorted(set(names) - set(tasks))
        assert not missing, f"no task for state(s) {', '.join(missing)}"
        self.tasks, self.before, self.ended = tasks, before, ended

    def run(self, state: dict[str, Any], *, start_at: str | None = None,
            until: Callable[[str, dict[str, Any]], bool] | None = None) -> "Execution":
        """Run from the first state (or `start_at`, with the state the earlier ones left) to the end, or
        until `until(state name, its input)` says to stop before that state (the execution stays RUNNING)."""
        execution = Execution(status="RUNNING", state=json.loads(json.dumps(state)))
        if start_at == self.template.failure_state:  # a caught error is already at its path
            self._record_failure(execution)
            if self.ended is not None:
                self.ended(execution)
            return execution
        steps = self.template.steps
        names = [name for name, _ in steps]
        at = names.index(start_at) if start_at is not None else 0
        while at < len(steps):
            name, path = steps[at]
            if until is not None and until(name, execution.state):
                execution.stopped_before = name
                return execution
            try:
                execution.state[path] = self._invoke(execution, name)
            except _Failed as failure:
                caught = self.template.catch_errors
                if "States.ALL" in caught or failure.error["Error"] in caught:
                    execution.state[self.template.error_path] = failure.error
                    self._record_failure(execution)
                else:
                    execution.status, execution.error = "FAILED", failure.error
                if self.ended is not None:
                    self.ended(execution)
                return execution
            at += 1
            for choice in self.template.choices:
                if choice.path.split(".")[0] == path and choice.holds(execution.state):
                    at = names.index(choice.target)
        execution.status = "SUCCEEDED"
        return execution

    def _record_failure(self, execution: "Execution") -> None:
        execution.status = "FAILED"
        try:
            result = self._invoke(execution, self.template.failure_state)
        except _Failed as failure:  # no Catch: the execution fails with RecordFailure's own error
            execution.error = failure.error
            return
        execution.state[self.template.failure_path] = result
        cause: Any = execution.state
        for part in (self.template.fail_cause_path or "").split("."):
            cause = cause.get(part) if isinstance(cause, dict) and part else cause
        execution.error = {"Error": self.template.fail_error, "Cause": str(cause) if cause is not None else ""}

    def _invoke(self, execution: "Execution", name: str) -> dict[str, Any]:
        retries = [0] * len(self.template.retriers)
        attempt = 0
        while True:
            execution.attempts[name] = execution.attempts.get(name, 0) + 1
            payload = copy.deepcopy(execution.state)  # every attempt gets the same input
            if self.before is not None:
                self.before(name, attempt, payload)
            attempt += 1
            try:
                result = self.tasks[name](payload)
            except Exception as error:  # Step Functions sees every error of the function
                shape = lambda_error(error)
                execution.failures.append((name, shape["Error"]))
                retrier = next((i for i, r in enumerate(self.template.retriers)
                                if shape["Error"] in r.errors or "States.ALL" in r.errors), None)
                if retrier is not None and retries[retrier] < self.template.retriers[retrier].max_attempts:
                    retries[retrier] += 1
                    continue
                raise _Failed(shape) from error
            return json.loads(json.dumps(result))  # what a Lambda result survives: JSON


# --- the tasks: domain steps on in-memory stores, or the Lambda handlers --------------------------


def domain_tasks(stores: Any) -> dict[str, Task]:
    """Each state's domain call on `stores` (tests/conftest.Stores), parsing the state as the handler does."""
    from functions.pipeline.state import parse_state
    from functions.training import runs
    from tests.training.helpers import DOMAIN_STEPS

    by_path = {path: name for name, path in template().steps}

    def task(step: Callable[[Any, Any], Any]) -> Task:
        return lambda state: step(stores, parse_state(state)).model_dump(mode="json")

    tasks = {by_path[path]: task(step) for path, step in DOMAIN_STEPS}
    tasks[template().failure_state] = task(lambda s, state: runs.record_failure(s.registry, state))
    return tasks


def handler_tasks(context: Any) -> dict[str, Task]:
    """Each state's Lambda handler (functions/*/handler.py), as the template names them."""
    from functions.pipeline.step import metrics
    from functions.training import handler as training_handler
    from tests.training.helpers import STEPS

    by_path = {path: name for name, path in template().steps}

    def task(handler: Callable[[dict[str, Any], Any], dict[str, Any]]) -> Task:
        def invoke(state: dict[str, Any]) -> dict[str, Any]:
            try:
                return handler(state, context)
            except Exception:
                metrics.clear_metrics()  # the next invocation's Lambda would not see what this one left
                raise

        return invoke

    tasks = {by_path[path]: task(handler) for path, handler in STEPS}
    tasks[template().failure_state] = task(training_handler.record_failure)
    return tasks


# --- the rule on the execution's status change --------------------------------------------------


def status_change(execution: Execution) -> dict[str, Any]:
    """The "Step Functions Execution Status Change" detail of a failed execution, as EventBridge delivers it."""
    state = execution.state
    started_with = {name: state.get(name) for name in ("run_id", "model", "bucket", "key", "version_id")}
    error = execution.error or {}
    return {
        "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:pipeline:{state['run_id']}",
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:pipeline",
        "name": state["run_id"], "status": execution.status, "startDate": 1_700_000_000_000,
        "stopDate": 1_700_000_060_000, "input": json.dumps(started_with), "error": error.get("Error"),
        "cause": error.get("Cause"),
    }


def domain_ended(registry: Any) -> Callable[[Execution], Any]:
    """The rule's domain call on `registry` (records the run FAILED only while it is still RUNNING)."""
    from functions.training import ended

    return lambda execution: ended.record_execution_end(registry, ended.ExecutionStatus.model_validate(
        status_change(execution)))


def handler_ended(context: Any) -> Callable[[Execution], Any]:
    """The rule's Lambda handler, with the EventBridge event around the status change."""
    from functions.training import handler as training_handler

    def deliver(execution: Execution) -> Any:
        event = {"version": "0", "id": "5c1b0a9e-0000-0000-0000-000000000000",
                 "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
                 "account": "123456789012", "time": "2024-01-01T00:01:00Z", "region": "us-east-1",
                 "resources": [status_change(execution)["executionArn"]], "detail": status_change(execution)}
        return training_handler.record_execution_end(event, context)

    return deliver
