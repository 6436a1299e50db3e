"""Local HTTP: POST predict through the local cloud's REST gateway against GET /health through it.

The local cloud is started as `mlops demo` starts it (the CDK app synthesized, LocalCloud on
free ports, state in a temporary directory), the demo's churn model is trained by uploading
its CSV (the whole Step Functions pipeline), then requests alternate:

ours:      p50 of POST /v1/models/churn/predict with one instance (API key, request model
           validation, the serving function: model cache, predict, capture line, metrics).
baseline:  p50 of GET /health through the same gateway: a mock integration (no function), so the
           floor of HTTP, the API key-less route and the gateway itself.

Requests share one kept-alive connection, as an application's HTTP client does.

Throughput: CLIENTS threads, each with its own connection, send CLIENT_REQUESTS predicts each at once
(with an API key of its own whose usage plan does not throttle them: the figure is the API's, not the
plan's), against one client sending the same number one at a time; requests per second (ratio > 1: the
clients are served side by side), and the requests that did not get HTTP 200 (the goal: none).

A second figure: the p50 of the same predict while a training run is in flight (a model of its
own, boosted for long enough that its Train step lasts seconds) against the p50 of the predicts
above, with no run in flight. Each function runs in its own worker process, as on Lambda, so a
training step must not hold up predictions.
"""

import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from bench.churn import MODEL, churn_spec, instances, training_frame
from bench.measure import emit, note
from functions.spec import ModelSpec

if TYPE_CHECKING:
    from cli.platform import Platform

REQUESTS = 100
WARMUP = 5
GOAL = "<= 3.0"
TRAINING_GOAL = "<= 1.5"
BUSY_MODEL = "churn-busy"
BUSY_ESTIMATOR = {"name": "gradient_boosting", "params": {"max_iter": 1500, "early_stopping": False}}
BUSY_ROWS = 5_000
PACE_S = 0.04
RUN_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 10
CLIENTS = 8
CLIENT_REQUESTS = 25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples)


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        return _run(Path(tmp))


def _run(tmp: Path) -> list[dict]:
    import boto3

    from cli.platform import Platform
    from local.cloud import LocalCloud, synthesize

    started = time.perf_counter()
    template, stack_name = synthesize(str(tmp / "cdk.out"))
    note(f"local_http: CDK app synthesized in {time.perf_counter() - started:.1f} s")
    cloud = LocalCloud(template=template, stack_name=stack_name, aws_port=_free_port(), api_port=_free_port(),
                       state_dir=tmp / "state")
    try:
        outputs = cloud.start()
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                region_name=outputs["Region"])
        platform = Platform(outputs, session, outputs["Endpoint"])
        spec = churn_spec()
        platform.registry.put_spec(spec)
        path = tmp / "churn.csv"
        training_frame().to_csv(path, index=False)
        pushed = platform.push_dataset(MODEL, path)
        run = platform.wait_for_run(MODEL, pushed["run_id"], timeout_s=RUN_TIMEOUT_S, poll_s=0.2)
        if run.status != "SUCCEEDED":
            raise RuntimeError(f"the training run failed: {run.failure_reason}")
        note(f"local_http: local cloud up and model trained in {time.perf_counter() - started:.1f} s")

        base = outputs["ApiUrl"].rstrip("/")
        client = requests.Session()
        client.headers["x-api-key"] = outputs["ApiKey"]
        rows = instances(spec, REQUESTS + WARMUP)

        def call(method: str, url: str, body: dict | None = None) -> float:
            began = time.perf_counter()
            response = client.request(method, url, json=body, timeout=REQUEST_TIMEOUT_S)
            elapsed = (time.perf_counter() - began) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{method} {url} answered HTTP {response.status_code}: {response.text[:300]}")
            return elapsed

        def health() -> float:
            return call("GET", f"{base}/health")

        def predict(i: int) -> float:
            return call("POST", f"{base}/v1/models/{MODEL}/predict", {"instances": [rows[i]]})

        for i in range(WARMUP):  # the first predict loads the champion (a cold start)
            health()
            predict(i)
        ours, baseline = [], []
        for i in range(REQUESTS):
            if i % 2:
                baseline.append(health())
                ours.append(predict(WARMUP + i))
            else:
                ours.append(predict(WARMUP + i))
                baseline.append(health())

        throughput, sequential, errors = _throughput(platform, base, rows)
        note(f"local_http: {CLIENTS} clients x {CLIENT_REQUESTS} predicts: {throughput:.0f}/s, one client "
             f"{sequential:.0f}/s, {errors} answers other than 200")

        busy_spec = {**spec.model_dump(), "name": BUSY_MODEL, "estimator": BUSY_ESTIMATOR}
        platform.registry.put_spec(ModelSpec.model_validate(busy_spec))
        busy = tmp / "busy.csv"
        training_frame(BUSY_ROWS).to_csv(busy, index=False)
        pushed = platform.push_dataset(BUSY_MODEL, busy)
        during: list[float] = []
        finished = threading.Event()

        def wait_for_the_run() -> None:
            platform.wait_for_run(BUSY_MODEL, pushed["run_id"], timeout_s=RUN_TIMEOUT_S)
            finished.set()

        waiter = threading.Thread(target=wait_for_the_run)
        waiter.start()
        while not finished.wait(PACE_S):  # below the usage plan's rate, as a well-behaved client
            during.append(predict(len(during) % REQUESTS))
        waiter.join()
        note(f"local_http: {len(during)} predicts while a training run was in flight")
    finally:
        cloud.stop()
    requests_sent = CLIENTS * CLIENT_REQUESTS
    return [emit("local_http", "http_predict_p50_ms", _p50_ms(ours), _p50_ms(baseline), GOAL),
            emit("local_http", "http_predict_p50_during_training_ms", _p50_ms(during), _p50_ms(ours), TRAINING_GOAL),
            emit("local_http", f"http_predicts_per_s_{CLIENTS}_clients", throughput, sequential,
                 "none (requests/s against one client's)"),
            emit("local_http", f"http_predict_errors_{CLIENTS}_clients", errors, requests_sent, "0 errors")]


def _throughput(platform: "Platform", base: str, rows: list[dict]) -> tuple[float, float, int]:
    """(requests/s of CLIENTS clients at once, requests/s of one client, answers other than 200)."""
    apigateway = platform.client("apigateway")
    (plan,) = apigateway.get_usage_plans()["items"]
    unthrottled = apigateway.create_usage_plan(name="bench-throughput", apiStages=plan["apiStages"],
                                               throttle={"rateLimit": 10_000.0, "burstLimit": 10_000})
    key = apigateway.create_api_key(name="bench-throughput", value=f"bench-throughput-{time.time_ns()}", enabled=True)
    apigateway.create_usage_plan_key(usagePlanId=unthrottled["id"], keyId=key["id"], keyType="API_KEY")
    url, headers = f"{base}/v1/models/{MODEL}/predict", {"x-api-key": key["value"]}
    deadline = time.monotonic() + 30  # the gateway reads the keys again every 5 s
    while requests.post(url, json={"instances": [rows[0]]}, headers=headers, timeout=REQUEST_TIMEOUT_S
                        ).status_code == 403:
        if time.monotonic() > deadline:
            raise RuntimeError("the throughput key was never accepted")
        time.sleep(0.5)
    statuses: list[int] = []
    refused: list[str] = []

    def client(count: int) -> None:
        with requests.Session() as session:
            session.headers.update(headers)
            for i in range(count):
                body = {"instances": [rows[i % len(rows)]]}
                response = session.post(url, json=body, timeout=REQUEST_TIMEOUT_S)
                statuses.append(response.status_code)
                if response.status_code != 200 and len(refused) < 3:
                    refused.append(f"{response.status_code} {response.text[:200]}")

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(CLIENT_REQUESTS,)) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    together = CLIENTS * CLIENT_REQUESTS / (time.perf_counter() - began)
    errors = sum(status != 200 for status in statuses)
    if errors:
        note(f"local_http: answers other than 200 under {CLIENTS} clients: {refused}")
    began = time.perf_counter()
    client(CLIENTS * CLIENT_REQUESTS)
    alone = CLIENTS * CLIENT_REQUESTS / (time.perf_counter() - began)
    return together, alone, errors
