"""Running the pipeline's step handlers in order, the way the state machine does (in-process)."""

import json

from functions.data import handler as data_handler
from functions.features import handler as features_handler
from functions.registry import handler as registry_handler
from functions.training import handler as training_handler
from functions.training.start import run_id_for

STEPS = [
    ("dataset", data_handler.register_dataset),
    ("validation", data_handler.validate_dataset),
    ("features", features_handler.build_features),
    ("training", training_handler.train),
    ("evaluation", training_handler.evaluate),
    ("registration", registry_handler.register_model),
    ("promotion", registry_handler.promote),
    ("run", training_handler.record_success),
]


def upload_state(aws, model: str, name: str, body: bytes) -> dict:
    """Upload a file under datasets/<model>/ and return the execution input start_pipeline builds."""
    key = f"datasets/{model}/{name}"
    version_id = aws.upload(key, body)
    run_id = run_id_for(model, aws.bucket, key, version_id)
    from functions.registry.dynamo import registry_store

    registry_store().start_run(model, run_id, bucket=aws.bucket, key=key, version_id=version_id, code_version="test-1")
    return {"run_id": run_id, "model": model, "bucket": aws.bucket, "key": key, "version_id": version_id}


def run_pipeline(state: dict, context) -> dict:
    """Every step in order; a raised error goes to record_failure with Step Functions' error shape."""
    state = json.loads(json.dumps(state))
    for path, step in STEPS:
        try:
            result = step(state, context)
        except Exception as error:  # noqa: BLE001 - the state machine catches States.ALL
            cause = json.dumps({"errorMessage": str(error), "errorType": type(error).__name__})
            state["error"] = {"Error": type(error).__name__, "Cause": cause}
            state["run"] = training_handler.record_failure(state, context)
            state["raised"] = error
            return state
        state[path] = json.loads(json.dumps(result))  # what a Lambda result survives: JSON
    return state
