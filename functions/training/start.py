"""Starting a run per upload: a run is named after the uploaded object version.

So a duplicate event (EventBridge delivers at least once) finds its run record and its
execution already there and starts nothing. Light on imports: the upload trigger is small.
"""

from typing import Any

from functions.pipeline.executions import Executions
from functions.records import Run
from functions.registry.store import RegistryStore
from functions.spec import is_model_name
from functions.storage.objects import sha256


def run_id_for(model: str, bucket: str, key: str, version_id: str | None) -> str:
    """The run an upload starts: the same object version always gives the same id."""
    return f"{model}-{sha256(f'{bucket}/{key}/{version_id}'.encode())[:16]}"


def model_of_key(key: str) -> str | None:
    """The model an upload is for: datasets/<model>/<file>; None for any other key."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "datasets" or not parts[2] or not is_model_name(parts[1]):
        return None
    return parts[1]


def start_run(registry: RegistryStore, executions: Executions, *, bucket: str, key: str, version_id: str | None,
              code_version: str) -> dict[str, Any]:
    """Record the run (RUNNING) and start its execution; both are no-ops for a duplicate event.

    `recorded` says whether this event created the run: a duplicate finds the record there.
    """
    model = model_of_key(key)
    if model is None:
        return {"started": False, "reason": f"{key} is not under datasets/<model>/<file>"}
    run_id = run_id_for(model, bucket, key, version_id)
    recorded = registry.start_run(Run(model=model, run_id=run_id, bucket=bucket, key=key, version_id=version_id,
                                      code_version=code_version))
    started = executions.start(run_id, {"run_id": run_id, "model": model, "bucket": bucket, "key": key,
                                        "version_id": version_id})
    return {"started": started, "recorded": recorded, "run_id": run_id, "model": model}
