"""Registry: "which version was serving at time T" with 10,000 alias moves in the registry table.

The local cloud's DynamoDB (moto's server, with the local cloud's patches, on a free port) holds
one model whose champion moved 10,000 times, each move as set_alias writes it: an audit entry
(AUDIT#<time>#<uuid>) and a history entry (HISTORY#champion#<time>), filled with BatchWriteItem.
Then, for times spread over the whole history:

ours:      `mlops models at`'s read (functions.registry.lifecycle.serving_at): one query,
           sk BETWEEN HISTORY#champion# AND HISTORY#champion#<T>, newest first, Limit 1.
baseline:  what a registry without alias-history keys does: read the whole audit trail (every
           AUDIT# item, page after page) and find the last champion move at or before T in Python.

Both answer every time identically (checked). The goal is absolute (under 100 ms on the local
cloud), so the figure is `ours` in milliseconds; the ratio says how much the keys save.
"""

import logging
import random
import socket
from datetime import UTC, datetime, timedelta

import boto3

from bench.measure import compare, emit, note
from functions.records import AuditEntry
from functions.registry.dynamo import DynamoRegistryStore, _audit_sk, _history_sk
from functions.registry.lifecycle import serving_at
from functions.registry.store import instant
from functions.spec import ModelSpec
from functions.storage.dynamo import to_item

MOVES = 10_000
VERSIONS = 20
MODEL = "churn"
GOAL = "<= 100 ms"
START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=7)
SPEC = {"name": MODEL, "task": "classification", "target": "churned", "metric": "roc_auc",
        "features": [{"name": "tenure_months", "type": "numeric"}], "estimator": {"name": "logistic_regression"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moves() -> list[AuditEntry]:
    """10,000 moves of the champion among 20 versions, 7 minutes apart (each from the version before it)."""
    rng = random.Random(7)
    entries, current = [], None
    for i in range(MOVES):
        version = rng.choice([v for v in range(1, VERSIONS + 1) if v != current])
        entries.append(AuditEntry(model=MODEL, action="set_champion", alias="champion", version=version,
                                  from_version=current, reason=f"move {i}", at=instant(START + i * STEP),
                                  actor="arn:aws:sts::123456789012:assumed-role/bench/promote"))
        current = version
    return entries


def naive_at(store: DynamoRegistryStore, at: str) -> AuditEntry | None:
    """The whole audit trail, scanned for the last champion move at or before `at`."""
    found = None
    for entry in store.changes(MODEL):  # oldest first
        if entry.alias == "champion" and entry.at <= at:
            found = entry
    return found


def run() -> list[dict]:
    from local.cloud import MotoServer
    from local.dynamodb import atomic_dynamodb, partition_queries

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = _free_port()
    server = MotoServer("127.0.0.1", port)
    with atomic_dynamodb(), partition_queries():  # as the local cloud's patches have them
        server.start()
        try:
            return _run(f"http://127.0.0.1:{port}")
        finally:
            server.stop()


def _run(endpoint: str) -> list[dict]:
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    dynamodb = session.resource("dynamodb", endpoint_url=endpoint)
    table = dynamodb.create_table(
        TableName="registry", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
    )
    store = DynamoRegistryStore(table)
    store.put_spec(ModelSpec.model_validate(SPEC))
    history = moves()
    with table.batch_writer() as batch:
        for entry in history:
            batch.put_item(Item=to_item(entry, pk=f"MODEL#{MODEL}", sk=_audit_sk(entry.at)))
            batch.put_item(Item=to_item(entry, pk=f"MODEL#{MODEL}", sk=_history_sk("champion", entry.at)))
    note(f"registry: {MOVES} alias moves ({2 * MOVES} items) in the local cloud's DynamoDB")

    rng = random.Random(11)
    span = (MOVES - 1) * STEP
    times = [instant(START - STEP + rng.random() * (span + 2 * STEP)) for _ in range(3)]
    times += [history[0].at, history[-1].at, instant(START - STEP)]  # at a move, the last one, before the first
    for at in times:  # the same answers (the baseline takes seconds: a few times only)
        assert serving_at(store, MODEL, at) == naive_at(store, at), at
    cycle = iter(range(10**9))

    def ours() -> object:
        return serving_at(store, MODEL, times[next(cycle) % len(times)])

    def baseline() -> object:
        return naive_at(store, times[next(cycle) % len(times)])

    ours_ms, baseline_ms = compare(ours, baseline, repeat=5, number=1, warmup=1)
    return [emit("registry", "alias_at_time_10k_ms", ours_ms, baseline_ms, GOAL)]
