"""The local Lambda runtime end to end: a training step does not hold up predictions.

Each function runs in its own warm worker process, so a predict is answered while the pipeline's
Train step is running, in about its usual time (before, the local cloud ran one invocation at a
time and a predict waited for the whole step).
"""

import statistics
import threading
import time

import pytest

from tests.conftest import CHURN_FEATURES
from tests.e2e.conftest import MODEL, SPEC, csv_bytes, register_spec, upload_and_wait

pytestmark = pytest.mark.e2e
USUAL_LIMIT_S = 1.0  # a predict here takes tens of ms; a step it waited for would take seconds
SLOW_MODEL = "churn-slow"
SLOW_ESTIMATOR = {"name": "gradient_boosting", "params": {"max_iter": 400, "early_stopping": False}}


def test_predictions_are_answered_while_a_training_step_runs(trained_model, api, aws, local_cloud):
    from cli.demo_data import churn_frame

    instance = churn_frame(rows=1, seed=3)[CHURN_FEATURES].to_dict("records")[0]
    # A model of its own whose Train step takes a while (boosting rounds), while the served one is asked.
    register_spec(aws, local_cloud, SLOW_MODEL, {**SPEC, "estimator": SLOW_ESTIMATOR})

    def predict() -> tuple[float, float, int]:
        began = time.time()
        status = api("POST", f"/v1/models/{MODEL}/predict", json={"instances": [instance]}).status_code
        return began, time.time(), status

    idle = [predict() for _ in range(10)]
    calls: list[tuple[float, float, int]] = []
    done = threading.Event()

    def keep_predicting() -> None:
        while not done.wait(0.02):  # a steady client, leaving the pipeline its core
            calls.append(predict())

    worker = threading.Thread(target=keep_predicting)
    worker.start()
    try:
        execution = upload_and_wait(aws, local_cloud, f"datasets/{SLOW_MODEL}/train.csv", csv_bytes(2_000, seed=9))
    finally:
        done.set()
        worker.join()
    assert execution["status"] == "SUCCEEDED", execution.get("cause")

    start, end = _step_window(aws, execution["executionArn"], "Train")
    during = [(began, ended) for began, ended, _ in calls if start <= began and ended <= end]

    assert {status for *_, status in idle + calls} == {200}
    assert len(during) >= 3, f"predicts answered within the {end - start:.2f} s Train step: {len(during)}"
    latencies = [ended - began for began, ended in during]
    assert max(latencies) < USUAL_LIMIT_S, latencies
    usual = statistics.median(ended - began for began, ended, _ in idle)
    assert statistics.median(latencies) < max(5 * usual, 0.2), (latencies, usual)


def _step_window(aws, execution_arn: str, step: str) -> tuple[float, float]:
    """When the step was entered and exited (epoch seconds), from the execution's history."""
    events = aws("stepfunctions").get_execution_history(executionArn=execution_arn)["events"]
    entered = next(e for e in events if e.get("stateEnteredEventDetails", {}).get("name") == step)
    exited = next(e for e in events if e.get("stateExitedEventDetails", {}).get("name") == step)
    return entered["timestamp"].timestamp(), exited["timestamp"].timestamp()
