"""`mlops rollout ...`: start a roll-out as the user (registry.rollout) and schedule its bake time's end."""

import hashlib
import json
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from cli.platform import Platform, PlatformError
from functions.records import Rollout, RolloutMode
from functions.registry.rollout import RolloutOutcome, rollback_rollout, start

STATE_MACHINE_OUTPUT = "RolloutStateMachineArn"
MAX_EXECUTION_NAME = 80


def execution_name(rollout_id: str) -> str:
    """The bake execution's name: the roll-out's id (a duplicate start is refused), hashed when too long."""
    if len(rollout_id) <= MAX_EXECUTION_NAME:
        return rollout_id
    return f"{rollout_id[:MAX_EXECUTION_NAME - 17]}-{hashlib.sha256(rollout_id.encode()).hexdigest()[:16]}"


def start_rollout(p: Platform, model: str, version: int, *, mode: RolloutMode, share: float, bake_seconds: int,
                  reason: str) -> RolloutOutcome:
    """Start the roll-out, then the state machine that ends its bake time; a roll-out whose bake end cannot be
    scheduled is rolled back at once (it would otherwise run until someone ends it)."""
    arn = p.outputs.get(STATE_MACHINE_OUTPUT)
    if not arn:
        raise PlatformError(f"the platform's outputs name no roll-out state machine ({STATE_MACHINE_OUTPUT}): "
                            "deploy the current version of the stack")
    outcome = start(p.registry, model, version, mode=mode, share=share, bake_seconds=bake_seconds, actor=p.actor,
                    reason=reason, events=p.events)
    rollout = outcome.rollout
    assert rollout is not None
    try:
        p.client("stepfunctions").start_execution(stateMachineArn=arn, name=execution_name(rollout.rollout_id),
                                                  input=json.dumps(bake_input(rollout)))
    except (BotoCoreError, ClientError) as error:
        rollback_rollout(p.registry, model, actor=p.actor, events=p.events, rollout_id=rollout.rollout_id,
                         reason="its bake time's end could not be scheduled")
        raise PlatformError(f"the roll-out's bake time could not be scheduled ({error}); it was rolled back") from None
    return outcome


def bake_input(rollout: Rollout) -> dict:
    """What the bake state machine is started with: its Wait state reads bake_ends_at (RFC 3339, UTC)."""
    ends = datetime.fromisoformat(rollout.bake_ends_at).astimezone(UTC)
    return {"model": rollout.model, "rollout_id": rollout.rollout_id, "bake_ends_at": f"{ends:%Y-%m-%dT%H:%M:%SZ}"}
