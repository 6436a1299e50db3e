"""A run whose execution ended without recording how it ended: recorded FAILED, with the reason.

The pipeline records each run's end itself (RecordSuccess, or RecordFailure from its catch). An
execution that times out, is stopped, or fails outside the catch never gets there; Step
Functions then emits its "Step Functions Execution Status Change" event, and the run is
recorded FAILED from it, only while it is still RUNNING: an end already recorded is never
overwritten (a late event, a duplicate, or a run that recorded its own failure first). A failed
execution (RecordFailure itself failed) also gives back a version number its run reserved but
never registered, as RecordFailure would have (whoever recorded the run); a stopped or timed-out
one does not, since its RegisterModel may still be running. A version the run did register, and
its promotion, are recorded with the failure.
"""

import json
import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from functions.errors import MlopsError
from functions.records import now_iso
from functions.registry.store import RegistryStore
from functions.training.runs import MAX_REASON_CHARS, failure_reason

logger = logging.getLogger(__name__)

ENDED_UNRECORDED = {"FAILED", "TIMED_OUT", "ABORTED"}


class ExecutionStatus(BaseModel):
    """The detail of a "Step Functions Execution Status Change" event, as AWS documents it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    name: str = Field(min_length=1, max_length=80)  # the run id: executions are named after their run
    status: Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"]
    start_date: int = Field(alias="startDate")  # epoch milliseconds
    stop_date: int | None = Field(None, alias="stopDate")
    input: str | None = None  # the execution's input (JSON text): the run id and model
    error: str | None = None
    cause: str | None = None


def run_model(execution: ExecutionStatus) -> str | None:
    """The model of the run, from the execution's input (what StartPipeline started it with)."""
    try:
        started_with = json.loads(execution.input or "")
    except ValueError:
        return None
    model = started_with.get("model") if isinstance(started_with, dict) else None
    return model if isinstance(model, str) and model else None


def end_reason(execution: ExecutionStatus) -> tuple[str, str]:
    """(reason for the user, error type) of an execution that ended without recording its run."""
    run_id = execution.name
    if execution.status == "TIMED_OUT":
        minutes = max(0, (execution.stop_date or execution.start_date) - execution.start_date) // 60_000
        return (f"the pipeline did not finish within its time limit (stopped after {minutes} minutes); "
                f"see the logs of run {run_id}"), "States.Timeout"
    if execution.status == "ABORTED":
        why = f": {execution.cause.strip()}" if execution.cause and execution.cause.strip() else ""
        return f"the pipeline was stopped{why}"[:MAX_REASON_CHARS], execution.error or "ExecutionAborted"
    # The execution's error is the last one, from the only task outside the catch (RecordFailure): a
    # domain error's own message, else the internal-error wording with the run to look up.
    error = execution.error or "ExecutionFailed"
    return failure_reason({"Error": error, "Cause": execution.cause}, run_id, "RecordFailure"), error


def what_it_registered(registry: RegistryStore, model: str, run_id: str) -> dict[str, Any]:
    """The version the run registered and whether it is the champion ({} when it registered none)."""
    versions = [v.version for v in registry.list_versions(model) if v.run_id == run_id]
    if not versions:
        return {}
    champion = registry.get_alias(model, "champion")
    return {"model_version": versions[-1], "promoted": champion == versions[-1], "champion": champion}


def record_execution_end(registry: RegistryStore, execution: ExecutionStatus) -> dict[str, Any]:
    """Record the run FAILED if its execution ended unsuccessfully while the run is still RUNNING."""
    run_id = execution.name
    if execution.status not in ENDED_UNRECORDED:
        return {"recorded": False, "run_id": run_id, "reason": f"the execution is {execution.status}"}
    model = run_model(execution)
    if model is None:
        logger.warning("the execution's input names no model", extra={"run_id": run_id})
        return {"recorded": False, "run_id": run_id, "reason": "the execution's input names no model"}
    reason, error_type = end_reason(execution)
    outcome = what_it_registered(registry, model, run_id)
    if outcome:  # as RecordFailure would have said it: the version stays registered, the record says so
        done = "became the champion" if outcome["promoted"] else "was registered"
        reason = f"v{outcome['model_version']} {done}, but the run's success was not recorded: {reason}"
    recorded = registry.end_run(model, run_id, status="FAILED", ended_at=now_iso(),
                                failure_reason=reason[:MAX_REASON_CHARS], error_type=error_type, **outcome)
    released = False
    if execution.status == "FAILED":  # given back only if never registered nor passed (a conditional write)
        try:
            released = registry.release_version(model, run_id)
        except MlopsError:  # the number stays taken: a gap in the versions, never a duplicate
            logger.warning("the run's reserved version number was not given back", extra={"run_id": run_id})
    return {"recorded": recorded, "run_id": run_id, "model": model, "status": execution.status,
            **({"version_released": True} if released else {}),
            **({"failure_reason": reason} if recorded else {"reason": "the run's end is already recorded"})}
