"""Pipeline: from an upload to a registered model on the local cloud, against a plain script; and the
online-store write of 100k entities against the writer it replaced.

The local cloud is started as `mlops demo` starts it (the CDK app synthesized, LocalCloud on free
ports with every function warm, state in a temporary directory); a small run warms the workers up.
Then, for each row count (10k, 100k and 1M by default; `python -m bench --only pipeline --rows
10000,100000`), the demo's churn table of that many rows is written to a CSV file and:

ours:      the upload of the file to the data bucket (PutObject), the upload rule, the Step Functions
           execution through RegisterDataset, ValidateDataset, BuildFeatures, Train, Evaluate and
           RegisterModel, each step a Lambda function in its own worker process: from the upload's
           start to RegisterModel's end (in the execution's history). The run then goes on (Promote,
           PublishFeatures, RecordSuccess); it is waited for before the next measurement.
baseline:  a plain pandas + scikit-learn script doing the same fit and holdout evaluation on the same
           rows: read the CSV, a stratified 80/20 split, the spec's preprocessing and estimator, ROC AUC
           on the holdout.

Both are repeated (REPEATS, fewer for large tables) in alternating order, and the medians compared.
Each step's time (from the execution history) and the largest state the execution carried are printed
on stderr, and the workers' peak memory at the end (Lambda's limits: the steps' memory, a 256 KB state).

online write: 100k entities' latest features written to the local cloud's features table by the
online store (functions.features.dynamo: batches of 25, several in flight, unprocessed items sent
again) against the writer it replaced (boto3's batch_writer, one batch at a time: OLD_WRITER below),
in a process of their own, as a step's worker is; alternating, REPEATS_ONLINE times each.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench.churn import churn_spec, training_frame
from bench.measure import emit, note
from functions.spec import ModelSpec

MODEL = "churn-bench"
ROWS = (10_000, 100_000, 1_000_000)
ROWS_VARIABLE = "BENCH_PIPELINE_ROWS"  # e.g. 10000,100000 (python -m bench --rows sets it)
GOALS = {100_000: "<= 4.0", 1_000_000: "<= 2.0"}  # fixed orchestration costs weigh more on small data
NO_GOAL = "-"
WARMUP_ROWS = 2_000
REPEATS = 3  # per row count, up to LARGE_ROWS
LARGE_ROWS = 500_000  # from here one run each (minutes on two cores)
ONLINE_ENTITIES = 100_000
REPEATS_ONLINE = 1
ONLINE_GOAL = "<= 0.1"
RUN_TIMEOUT_S = 1_800
STATE_LIMIT_BYTES = 256 * 1024  # a Step Functions state (and a Lambda payload) at most
POLL_S = 0.1
REGISTERED_AFTER = "RegisterModel"


def row_counts() -> list[int]:
    text = os.environ.get(ROWS_VARIABLE, "").strip()
    return [int(part) for part in text.split(",") if part.strip()] if text else list(ROWS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else f"{rows // 1_000}k" if rows % 1_000 == 0 else str(rows)


# --- the plain script -------------------------------------------------------------------------------


def plain_script(path: Path, spec: ModelSpec) -> float:
    """What a data scientist runs instead: read the CSV, split, fit the same pipeline, score the holdout."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.read_csv(path)
    features, target = frame[spec.feature_names], frame[spec.target]
    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=spec.holdout_fraction,
                                                        random_state=0, stratify=target)
    preprocess = ColumnTransformer([
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
         spec.numeric_features),
        ("categorical", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                  ("encode", OneHotEncoder(handle_unknown="ignore"))]), spec.categorical_features),
    ])
    model = Pipeline([("preprocess", preprocess), ("estimator", LogisticRegression(**spec.estimator.params))])
    model.fit(x_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))


# --- ours: the local cloud --------------------------------------------------------------------------


class Cloud:
    def __init__(self, tmp: Path):
        import boto3

        from cli.platform import Platform
        from local.cloud import LocalCloud, synthesize

        started = time.perf_counter()
        template, stack_name = synthesize(str(tmp / "cdk.out"))
        self.cloud = LocalCloud(template=template, stack_name=stack_name, aws_port=_free_port(),
                                api_port=_free_port(), state_dir=tmp / "state", warm=True)
        outputs = self.cloud.start()
        self.outputs = outputs
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                region_name=outputs["Region"])
        self.platform = Platform(outputs, session, outputs["Endpoint"])
        self.sfn = self.platform.client("stepfunctions")
        self.spec = churn_spec().model_copy(update={"name": MODEL})
        self.platform.registry.put_spec(self.spec)
        note(f"pipeline: local cloud up in {time.perf_counter() - started:.1f} s")

    def stop(self) -> None:
        self.cloud.stop()

    def run(self, path: Path) -> dict[str, Any]:
        """Upload `path`, wait for its run to end; the seconds to the registered model, each step's, the state."""
        started = datetime.now(UTC)
        began = time.perf_counter()
        pushed = self.platform.push_dataset(MODEL, path, retrain=True)
        run = self.platform.wait_for_run(MODEL, pushed["run_id"], timeout_s=RUN_TIMEOUT_S, poll_s=POLL_S)
        ended = time.perf_counter() - began
        if run.status != "SUCCEEDED":
            raise RuntimeError(f"the run of {path.name} failed at {run.failed_step}: {run.failure_reason}")
        execution = self._execution(pushed["run_id"])
        steps, exits = self._steps(execution)
        if REGISTERED_AFTER not in exits:
            raise RuntimeError(f"the run of {path.name} has no {REGISTERED_AFTER} state in its history")
        output = self.sfn.describe_execution(executionArn=execution)["output"]
        return {"registered_s": (exits[REGISTERED_AFTER] - started).total_seconds(), "ended_s": ended,
                "steps": steps, "state_bytes": len(output.encode())}

    def _execution(self, run_id: str) -> str:
        paginator = self.sfn.get_paginator("list_executions")
        for page in paginator.paginate(stateMachineArn=self.outputs["StateMachineArn"]):
            for execution in page["executions"]:
                if execution["name"] == run_id:
                    return execution["executionArn"]
        raise RuntimeError(f"no execution named {run_id}")

    def _steps(self, execution: str) -> tuple[dict[str, float], dict[str, datetime]]:
        entered: dict[str, datetime] = {}
        steps: dict[str, float] = {}
        exits: dict[str, datetime] = {}
        events = self.sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        for event in events:
            if event["type"] == "TaskStateEntered":
                entered[event["stateEnteredEventDetails"]["name"]] = event["timestamp"]
            elif event["type"] == "TaskStateExited":
                name = event["stateExitedEventDetails"]["name"]
                exits[name] = event["timestamp"]
                steps[name] = (event["timestamp"] - entered[name]).total_seconds()
        return steps, exits


def workers_peak_rss_mb() -> dict[str, float]:
    """The peak resident memory (VmHWM) of each Python process below this one (the local Lambda runtime's fork
    server and its workers), by process."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    peaks: dict[str, float] = {}
    pending = list(children.get(os.getpid(), []))
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if ":" in line)
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
        except OSError:
            continue
        if "VmHWM" in status and command.startswith(sys.executable):  # the fork server and its workers
            peaks[f"{pid} {command}"] = int(status["VmHWM"].split()[0]) / 1024
    return peaks


def _median(values: list[float]) -> float:
    return statistics.median(values)


def pipeline_figures(cloud: Cloud, tmp: Path) -> list[dict]:
    warmup = tmp / "warmup.csv"
    training_frame(WARMUP_ROWS).to_csv(warmup, index=False)
    cloud.run(warmup)
    plain_script(warmup, cloud.spec)
    lines, ratios = [], []
    for rows in row_counts():
        path = tmp / f"churn-{rows}.csv"
        training_frame(rows).to_csv(path, index=False)
        repeats = REPEATS if rows < LARGE_ROWS else 1
        ours: list[float] = []
        baseline: list[float] = []
        for i in range(repeats):
            order = ["ours", "baseline"] if i % 2 == 0 else ["baseline", "ours"]
            for side in order:
                if side == "ours":
                    result = cloud.run(path)
                    ours.append(result["registered_s"])
                    steps = ", ".join(f"{name} {seconds:.2f}" for name, seconds in result["steps"].items())
                    note(f"pipeline {_label(rows)}: registered after {result['registered_s']:.2f} s, run ended "
                         f"after {result['ended_s']:.2f} s; steps (s): {steps}; largest state "
                         f"{result['state_bytes']} bytes")
                    if result["state_bytes"] > STATE_LIMIT_BYTES:
                        raise RuntimeError(f"the execution's state grew to {result['state_bytes']} bytes, past "
                                           f"Step Functions' {STATE_LIMIT_BYTES}")
                else:
                    began = time.perf_counter()
                    plain_script(path, cloud.spec)
                    baseline.append(time.perf_counter() - began)
        line = emit("pipeline", f"upload_to_registered_model_{_label(rows)}_rows_ms", _median(ours) * 1000,
                    _median(baseline) * 1000, GOALS.get(rows, NO_GOAL))
        lines.append(line)
        ratios.append(f"{_label(rows)}: {line['ratio']}")
        path.unlink()
    note(f"pipeline: ours / plain script by rows: {', '.join(ratios)}")
    peaks = workers_peak_rss_mb()
    if peaks:
        largest = max(peaks, key=peaks.__getitem__)
        note(f"pipeline: the largest peak memory of a local Lambda worker was {peaks[largest]:.0f} MB "
             f"(process {largest.split()[0]}; shared pages of the fork server included)")
    return lines


# --- the online-store write ---------------------------------------------------------------------------


def old_writer(table: Any, model: str, rows: dict[str, dict[str, Any]], *, dataset_id: str, ttl_days: int) -> int:
    """OLD_WRITER: the online store's put_latest before issue 7 (boto3's batch_writer: one batch at a time)."""
    from functions.features.store import row_json

    now = datetime.now(UTC)
    expires_at = int(now.timestamp()) + int(ttl_days) * 86_400
    with table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
        for key, row in rows.items():
            batch.put_item(Item={
                "pk": f"{model}#{key}", "sk": "LATEST", "model": model, "entity": key, "features": row_json(row),
                "dataset_id": dataset_id, "updated_at": now.isoformat(timespec="seconds"), "expires_at": expires_at,
            })
    return len(rows)


def online_rows(entities: int) -> dict[str, dict[str, Any]]:
    from functions.features.build import model_frame
    from functions.features.store import latest_rows

    spec = churn_spec()
    assert spec.entity_id is not None
    return latest_rows(model_frame(training_frame(entities), spec), spec.entity_id, spec.feature_names)


def online_child(endpoint: str, table_name: str, entities: int, repeats: int) -> None:
    """In a process of its own (as a step's worker): write the rows both ways, alternating; print the times."""
    import boto3

    from functions.features.dynamo import DynamoOnlineStore

    resource = boto3.resource("dynamodb", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION",
                                                                                            "us-east-1"))
    table = resource.Table(table_name)
    store = DynamoOnlineStore(table)
    rows = online_rows(entities)
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    for i in range(repeats):
        order = ["ours", "baseline"] if i % 2 == 0 else ["baseline", "ours"]
        for side in order:
            began = time.perf_counter()
            if side == "ours":
                written = store.put_latest("bench-online", rows, dataset_id="d" * 64, ttl_days=1)
            else:
                written = old_writer(table, "bench-online", rows, dataset_id="d" * 64, ttl_days=1)
            times[side].append(time.perf_counter() - began)
            assert written == len(rows)
    print(json.dumps(times))


def online_figure(cloud: Cloud) -> dict:
    environment = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_REGION": cloud.outputs["Region"]}
    command = [sys.executable, "-m", "bench.pipeline", "--online-child", cloud.outputs["Endpoint"],
               cloud.outputs["FeaturesTableName"], str(ONLINE_ENTITIES), str(REPEATS_ONLINE)]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"the online-write child failed: {done.stderr[-2000:]}")
    times = json.loads(done.stdout.strip().splitlines()[-1])
    note(f"pipeline: online write of {ONLINE_ENTITIES} entities (s): ours {times['ours']}, "
         f"one batch at a time {times['baseline']}")
    return emit("pipeline", f"online_write_{_label(ONLINE_ENTITIES)}_entities_ms", _median(times["ours"]) * 1000,
                _median(times["baseline"]) * 1000, ONLINE_GOAL)


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        cloud = Cloud(Path(tmp))
        try:
            return [online_figure(cloud), *pipeline_figures(cloud, Path(tmp))]
        finally:
            cloud.stop()


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--online-child":
        online_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        run()
