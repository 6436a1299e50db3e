"""The training state machine, run in-process: the template's Task states in order, each with the template's
Retry policy and its Catch into RecordFailure, over tasks that take the JSON state and return their JSON result
as the Lambda handlers do (the domain steps on the in-memory stores, or the handlers themselves under moto).

What the runner mirrors is read from infra/training.py's source, without importing the CDK: the steps and
their result paths (STEPS), the errors and maximum attempts of each `add_retry` call (a retrier counts its
own attempts; the first whose errors match an error decides), the errors and result path of the
`add_catch` call into RecordFailure, the error and cause of the Fail state after RecordFailure, each Choice's
condition (`.when(sfn.Condition.is_string("$.path"), state)`, taken after the step that writes the path); and
the rule on the execution's status change is the `ended` callback. The training section (between
PlanTraining and Train: the search's Choice, its inline or Distributed Map of trials, SelectBest, the
backend's Choice, the SageMaker task and CollectTraining) is read from its tables (SECTION_STEPS, TRIAL,
SEARCH_MAPS, TRIAL_STATES, TRIAL_INPUT, the SageMaker task's retrier): a Map runs the Trial task per item
(the inline Map's items from the state, the Distributed Map's read from S3 by `read_items`), each trial
retried as a step and, past its retries, caught by its Pass state (the iteration ends). A SageMaker task is
a task that raises TaskFailed (States.TaskFailed, the job's description as cause) for a job that failed.
tests/pipeline/test_fault_matrix.py checks all of it against the synthesized template. Retry intervals are
not waited for.
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

from infra.settings import SAGEMAKER_TASK

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
class Section:
    """The training section, between PlanTraining and Train (infra/training.py's diagram)."""

    plan: str  # the state whose result decides (PlanTraining)
    search_choice: str  # its Choice on $.plan.search: a Map per strategy, else the backend's Choice
    maps: dict[str, str]  # strategy ("inline", "distributed") -> the Map state
    trial_states: dict[str, tuple[str, str]]  # strategy -> (its trial's task state, its Pass state)
    trial: str  # the task every trial runs (its function's name in the tasks)
    trial_input: dict[str, str]  # the Map's ItemSelector: field -> path ("$$.Map.Item.Value": the item)
    steps: dict[str, str]  # SelectBest and CollectTraining -> result path
    backend_choice: str  # its Choice on $.plan.backend: "sagemaker" -> the SageMaker task, else Train
    sagemaker: str  # the SageMaker task (result at training_job)
    sagemaker_retriers: list[Retrier]
    train: str = "Train"
    evaluate: str = "Evaluate"


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
    section: Section
    failure_state: str = "RecordFailure"
    failure_path: str = "run"

    def path_of(self, name: str) -> str:
        """Where a task state's result goes (without "$.")."""
        paths = {**dict(self.steps), **self.section.steps, self.section.sagemaker: "training_job"}
        return paths[name]


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

    # One Catch into RecordFailure for every state of the run (else: teach the runner the new shape); a
    # trial's own Catch (into its Pass state) is the section's.
    (catch,) = [c for c in calls("add_catch", positional=True)
                if isinstance(c["0"], ast.Name) and c["0"].id == "record_failure"]
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
        if test == "string_equals":  # the training section's Choices (on $.plan): the Section below
            continue
        assert test in {"is_string", "is_present", "is_not_null"}, f"teach the runner sfn.Condition.{test}"
        by_variable = {re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower(): name for name, _ in steps}
        choices.append(Choice(value(condition.args[0]).removeprefix("$."), test, by_variable[target.id]))
    def retrier(retry: dict[str, ast.expr]) -> Retrier:
        return Retrier(frozenset(value(retry["errors"])),
                       value(retry["max_attempts"]) if "max_attempts" in retry else 3)  # CDK's default: 3

    def is_sagemaker(retry: dict[str, ast.expr]) -> bool:
        return isinstance(retry["errors"], ast.Name) and retry["errors"].id == "SAGEMAKER_ERRORS"

    trial = constants["TRIAL"]
    assert isinstance(trial, ast.Tuple)
    trial_name = ast.literal_eval(trial.elts[0])
    section_steps = constants["SECTION_STEPS"]
    assert isinstance(section_steps, ast.List)
    section = Section(
        plan="PlanTraining", search_choice=value(constants["SEARCH_CHOICE"]), maps=value(constants["SEARCH_MAPS"]),
        trial_states={mode: tuple(names) for mode, names in value(constants["TRIAL_STATES"]).items()},
        trial=trial_name, trial_input=value(constants["TRIAL_INPUT"]),
        steps={value(row.elts[0]): value(row.elts[2]).removeprefix("$.") for row in section_steps.elts
               if isinstance(row, ast.Tuple)},
        backend_choice=value(constants["BACKEND_CHOICE"]), sagemaker=SAGEMAKER_TASK,
        sagemaker_retriers=[retrier(retry) for retry in calls("add_retry") if is_sagemaker(retry)],
    )
    return Template(
        steps=steps,
        choices=choices,
        section=section,
        retriers=[retrier(retry) for retry in calls("add_retry") if not is_sagemaker(retry)],
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


class TaskFailed(Exception):
    """A service task's own failure (a SageMaker job that failed): States.TaskFailed, its description as cause."""

    def __init__(self, cause: dict[str, Any]):
        super().__init__("States.TaskFailed")
        self.cause = cause


def lambda_error(error: Exception) -> dict[str, str]:
    """Step Functions' {"Error", "Cause"} of a Lambda task that raised `error` (its errorType is the class name)."""
    if isinstance(error, LambdaServiceError):
        return {"Error": error.name, "Cause": f"{error.name}: Rate Exceeded."}
    if isinstance(error, TaskFailed):
        return {"Error": "States.TaskFailed", "Cause": json.dumps(error.cause)}
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
    path: list[str] = field(default_factory=list)  # the states it went through, in order (Choices aside)


class _Failed(Exception):
    def __init__(self, error: dict[str, str]):
        super().__init__(error["Error"])
        self.error = error


ItemReader = Callable[[str, str], list[Any]]  # (bucket, key) -> the JSON array a Distributed Map reads


class StateMachine:
    """The pipeline's execution: its states as the template links them, retried and caught as it says.

    `ended` stands for the rule on the execution's status change (a failed execution's run is
    recorded FAILED if it is still RUNNING): called with the execution once it has FAILED.
    `read_items` is the Distributed Map's ItemReader (S3 GetObject of a JSON array).
    """

    def __init__(self, tasks: dict[str, Task], *, before: BeforeAttempt | None = None,
                 ended: Callable[["Execution"], Any] | None = None, read_items: ItemReader | None = None):
        self.template = template()
        names = [name for name, _ in self.template.steps] + [self.template.failure_state]
        missing = sorted(set(names) - set(tasks))
        assert not missing, f"no task for state(s) {', '.join(missing)}"
        self.tasks, self.before, self.ended, self.read_items = tasks, before, ended, read_items

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
        name: str | None = start_at or self.template.steps[0][0]
        while name is not None:
            if until is not None and until(name, execution.state):
                execution.stopped_before = name
                return execution
            execution.path.append(name)
            try:
                if name in self.template.section.maps.values():
                    self._map(execution, name)
                else:
                    execution.state[self.template.path_of(name)] = self._invoke(execution, name)
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
            name = self._next(name, execution.state)
        execution.status = "SUCCEEDED"
        return execution

    def _next(self, name: str, state: dict[str, Any]) -> str | None:
        """The state after `name` (None: the end), through the Choices that follow it."""
        section = self.template.section
        plan = state.get("plan") or {}
        backend = section.sagemaker if plan.get("backend") == "sagemaker" else section.train
        if name == section.plan:
            return section.maps.get(plan.get("search"), backend)
        if name in section.maps.values():
            return "SelectBest"
        if name == "SelectBest":
            return backend
        if name == section.sagemaker:
            return "CollectTraining"
        if name == "CollectTraining":
            return section.evaluate
        names = [step for step, _ in self.template.steps]
        at = names.index(name) + 1
        path = dict(self.template.steps)[name]
        for choice in self.template.choices:
            if choice.path.split(".")[0] == path and choice.holds(state):
                at = names.index(choice.target)
        return names[at] if at < len(names) else None

    def _map(self, execution: "Execution", name: str) -> None:
        """A Map of trials: each item through the trial task (retried as a step); a trial failing past its retries
        is caught by its Pass state, so the Map goes on. The Map's result is discarded (ResultPath null)."""
        section = self.template.section
        state = execution.state
        if name == section.maps["inline"]:
            items = list(state["plan"]["items"])
        else:
            assert self.read_items is not None, "a Distributed Map needs read_items (its ItemReader)"
            items = self.read_items(state["bucket"], state["plan"]["trials_key"])
        for item in items:
            trial_input = {field: item if path == "$$.Map.Item.Value" else _at(state, path)
                           for field, path in section.trial_input.items()}
            try:
                self._invoke(execution, section.trial, trial_input)
            except _Failed:  # its Catch: the Pass state ends the iteration
                continue

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

    def _invoke(self, execution: "Execution", name: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
        retriers = (self.template.section.sagemaker_retriers if name == self.template.section.sagemaker
                    else self.template.retriers)
        retries = [0] * len(retriers)
        attempt = 0
        while True:
            execution.attempts[name] = execution.attempts.get(name, 0) + 1
            payload = copy.deepcopy(execution.state if event is None else event)  # every attempt: the same input
            if self.before is not None:
                self.before(name, attempt, payload)
            attempt += 1
            try:
                result = self.tasks[name](payload)
            except Exception as error:  # Step Functions sees every error of the function
                shape = lambda_error(error)
                execution.failures.append((name, shape["Error"]))
                retrier = next((i for i, r in enumerate(retriers)
                                if shape["Error"] in r.errors or "States.ALL" in r.errors), None)
                if retrier is not None and retries[retrier] < retriers[retrier].max_attempts:
                    retries[retrier] += 1
                    continue
                raise _Failed(shape) from error
            return json.loads(json.dumps(result))  # what a Lambda result survives: JSON


def _at(state: dict[str, Any], path: str) -> Any:
    value: Any = state
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


# --- the tasks: domain steps on in-memory stores, or the Lambda handlers --------------------------


def domain_tasks(stores: Any) -> dict[str, Task]:
    """Each state's domain call on `stores` (tests/conftest.Stores), parsing the state as the handler does."""
    from functions.pipeline.state import parse_state
    from functions.training import runs
    from tests.training.helpers import DOMAIN_STEPS, SECTION_DOMAIN, domain_trial

    by_path = {path: name for name, path in template().steps}

    def task(step: Callable[[Any, Any], Any]) -> Task:
        return lambda state: step(stores, parse_state(state)).model_dump(mode="json")

    tasks = {by_path[path]: task(step) for path, step in DOMAIN_STEPS}
    tasks.update({name: task(step) for name, step in SECTION_DOMAIN.items()})
    tasks[template().section.trial] = lambda event: domain_trial(stores, event)
    tasks[template().failure_state] = task(lambda s, state: runs.record_failure(s.registry, state))
    return tasks


def domain_items(stores: Any) -> ItemReader:
    """The Distributed Map's ItemReader on the in-memory bucket."""
    return lambda bucket, key: stores.objects.get_json(key)


def handler_tasks(context: Any) -> dict[str, Task]:
    """Each state's Lambda handler (functions/*/handler.py), as the template names them."""
    from functions.pipeline.state import parse_state
    from functions.pipeline.step import metrics
    from functions.storage.s3 import data_objects
    from functions.training import handler as training_handler
    from tests.training.helpers import STEPS, run_sagemaker_job

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
    tasks.update({"SelectBest": task(training_handler.select_best),
                  "CollectTraining": task(training_handler.collect_training),
                  template().section.trial: task(training_handler.run_trial),
                  template().section.sagemaker: lambda state: run_sagemaker_job(data_objects(),
                                                                                parse_state(state))})
    tasks[template().failure_state] = task(training_handler.record_failure)
    return tasks


def handler_items() -> ItemReader:
    """The Distributed Map's ItemReader on the data bucket (moto's S3)."""
    from functions.storage.s3 import data_objects

    return lambda bucket, key: data_objects().get_json(key)


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
