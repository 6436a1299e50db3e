"""Traffic during a roll-out (functions/serving/rollout.py): the canary's share and stickiness, shadow scoring
that never changes an answer, a failing challenger that never fails a request, the roll-out read on the TTL,
and the per-variant metrics."""

import json
import time
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from functions.errors import NotFound, RequestInvalid, RetryableError
from functions.records import Rollout
from functions.serving import handler
from functions.serving import rollout as traffic
from functions.serving.model_cache import ModelCache, ModelUnavailable
from tests.fakes import throttled
from tests.serving.conftest import TTL


@pytest.fixture(autouse=True)
def fresh_rollouts(monkeypatch, clock):
    """The handler's container-wide roll-out cache, empty for each test."""
    monkeypatch.setattr(handler, "rollouts", traffic.Rollouts(clock=clock))


def running(mode="canary", share=0.1, rollout_id="churn-v2-1", challenger=2) -> Rollout:
    return Rollout(model="churn", rollout_id=rollout_id, champion=1, challenger=challenger, mode=mode, share=share,
                   bake_seconds=60, started_by="me", started_at="2026-01-01T00:00:00+00:00",
                   bake_ends_at="2026-01-01T00:01:00+00:00")


@dataclass(frozen=True)
class Answer:
    predictions: list
    probabilities: list[list[float]] | None


def model(version: int):
    return SimpleNamespace(model="churn", version=version)


def predict(loaded, instances) -> Answer:
    return Answer([loaded.version] * len(instances), [[0.25, 0.75]] * len(instances))


class Observed(list):
    def __call__(self, model, variant, latency_ms, answer):
        self.append((variant, answer is not None))


def serve(rollout, key="k", challenger=model, predictor=predict, observe=None):
    return traffic.serve([{"x": 1}], champion=model(1), rollout=rollout, key=key, challenger=challenger,
                         predict=predictor, observe=observe if observe is not None else Observed())


@pytest.mark.parametrize("share", [0.01, 0.1, 0.5, 0.9])
def test_a_canary_takes_its_share_of_request_ids_within_statistical_tolerance(share):
    n = 20_000
    taken = sum(traffic.takes(running(share=share), f"request-{i}") for i in range(n))
    sigma = (share * (1 - share) / n) ** 0.5
    assert abs(taken / n - share) < 5 * sigma, (taken / n, share)


def test_a_routing_key_always_gets_the_same_variant_and_each_rollout_draws_anew():
    keys = [f"user-{i}" for i in range(2_000)]
    first = [traffic.takes(running(share=0.3), key) for key in keys]
    assert first == [traffic.takes(running(share=0.3), key) for key in keys], "sticky per key"
    other = [traffic.takes(running(share=0.3, rollout_id="churn-v3-2"), key) for key in keys]
    assert first != other, "another roll-out's salt picks other callers"
    # A larger share keeps every caller the smaller one had (the buckets are fixed per key).
    wider = [traffic.takes(running(share=0.6), key) for key in keys]
    assert all(w for f, w in zip(first, wider, strict=True) if f)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"X-Routing-Key": " user-7 "}, "user-7"), ({"x-routing-key": "u"}, "u"), ({"X-ROUTING-KEY": "u"}, "u"),
    ({"X-Routing-Key": "   "}, "req"), ({}, "req"), (None, "req"), ({"X-Routing-Key": 5}, "req"),
])
def test_the_routing_key_is_the_header_else_the_request_id(headers, expected):
    assert traffic.routing_key(headers, "req") == expected


@pytest.mark.parametrize("key", ["", "x" * 1_000_000, "\ud800 lone surrogate", "ключ 🔑", "\x00\n"])
def test_any_key_hashes_into_the_unit_interval(key):
    assert 0 <= traffic.bucket("r", key) < 1


def test_a_canary_request_is_answered_by_the_challenger_and_counted_as_its():
    observed = Observed()
    key = next(k for k in map(str, range(1000)) if traffic.takes(running(), k))
    served = serve(running(), key, observe=observed)
    assert (served.answer.variant, served.answer.result.predictions, served.shadow) == ("challenger", [2], None)
    assert observed == [("challenger", True)]
    other = next(k for k in map(str, range(1000)) if not traffic.takes(running(), k))
    assert serve(running(), other).answer.variant == "champion"


def test_shadow_never_changes_an_answer():
    for i in range(300):
        alone = serve(None, f"r{i}")
        shadowed = serve(running(mode="shadow", share=1.0), f"r{i}")
        assert shadowed.answer.variant == "champion"
        assert shadowed.answer.result == alone.answer.result
        assert shadowed.shadow is not None and shadowed.shadow.variant == "shadow"
        assert shadowed.shadow.result.predictions == [2]


def test_a_shadow_samples_its_share():
    shadows = sum(serve(running(mode="shadow", share=0.25), f"r{i}").shadow is not None for i in range(4_000))
    assert abs(shadows / 4_000 - 0.25) < 5 * (0.25 * 0.75 / 4_000) ** 0.5


def fails(version):
    raise ModelUnavailable("churn", version)


def test_a_challenger_that_cannot_answer_never_fails_the_request():
    key = next(k for k in map(str, range(1000)) if traffic.takes(running(), k))
    for mode in ("canary", "shadow"):
        observed = Observed()
        served = serve(running(mode=mode, share=0.5 if mode == "canary" else 1.0), key, challenger=fails,
                       observe=observed)
        assert served.answer.variant == "champion" and served.answer.result.predictions == [1]
        assert served.shadow is None and served.challenger_errors == ["ModelUnavailable: version 2 of model "
                                                                      "'churn' could not be loaded (see the logs)"]
        assert ("challenger", False) in observed and ("champion", True) in observed

    def broken(loaded, instances):
        if loaded.version == 2:
            raise ZeroDivisionError
        return predict(loaded, instances)

    served = serve(running(mode="shadow", share=1.0), predictor=broken)
    assert served.answer.result.predictions == [1] and served.challenger_errors == ["ZeroDivisionError"]


def test_a_request_the_champion_refuses_is_refused_and_not_counted_against_the_challenger():
    def refuses(loaded, instances):
        raise RequestInvalid("instance 0: field 'x' must be a number")

    observed = Observed()
    key = next(k for k in map(str, range(1000)) if traffic.takes(running(), k))
    with pytest.raises(RequestInvalid):
        serve(running(), key, predictor=refuses, observe=observed)
    assert observed == []


def test_the_rollout_is_read_on_the_ttl_and_kept_when_the_registry_is_busy(stores, clock):
    rollouts = traffic.Rollouts(clock=clock)
    registry = stores.registry
    assert rollouts.running(registry, "churn", TTL) is None
    registry.rollouts["churn"] = running()
    assert rollouts.running(registry, "churn", TTL) is None, "within the TTL"
    clock.advance(TTL + 1)
    assert rollouts.running(registry, "churn", TTL) == running()
    registry.rollouts["churn"] = running().model_copy(update={"status": "rolled_back"})
    clock.advance(TTL + 1)
    registry.faults.inject("get_rollout", throttled())
    assert rollouts.running(registry, "churn", TTL) == running(), "busy: routes as before"
    assert rollouts.running(registry, "churn", TTL) is None, "an ended roll-out routes nothing"
    assert registry.faults.calls.count("get_rollout") == 4


def test_metrics_by_model_and_variant_and_by_variant(capsys):
    traffic.emit_metrics("churn", "challenger", 2.5, Answer([1, 0], [[0.2, 0.8], [0.6, 0.4]]), namespace="Mlops")
    traffic.emit_metrics("churn", "challenger", 0.0, None, namespace="Mlops")
    ok, failed = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    directive = ok["_aws"]["CloudWatchMetrics"][0]
    assert ["model", "variant"] in directive["Dimensions"] and ["variant"] in directive["Dimensions"]
    assert (ok["model"], ok["variant"], ok["ModelErrors"], ok["ModelLatency"], ok["ModelInstances"]) == (
        "churn", "challenger", [0.0], [2.5], [2.0])
    assert ok["PositiveClassProbability"] == [0.6]
    assert failed["ModelErrors"] == [1.0] and "ModelLatency" not in failed
    assert traffic.positive_share(Answer([1], None)) is None
    assert traffic.positive_share(Answer([1], [[0.1, 0.2, 0.7]])) is None


def test_a_challenger_version_is_loaded_once_and_a_bad_one_not_retried_before_the_ttl(churn_champion, stores,
                                                                                     clock):
    cache = ModelCache(clock=clock)
    loaded = cache.version(stores.registry, stores.objects, "churn", 1, TTL)
    assert loaded.version == 1
    assert cache.version(stores.registry, stores.objects, "churn", 1, TTL) is loaded
    assert stores.objects.faults.calls.count("get_bytes") == 1
    with pytest.raises(NotFound):
        cache.version(stores.registry, stores.objects, "churn", 99, TTL)
    key = loaded_key = stores.registry.get_version("churn", 1).artifacts
    stores.objects.put_bytes(key.onnx_key or loaded_key.skops_key, b"tampered")
    cache.clear()
    failures = []
    with pytest.raises(ModelUnavailable):
        cache.version(stores.registry, stores.objects, "churn", 1, TTL, on_load_failure=lambda m, v: failures.append(v))
    reads = stores.objects.faults.calls.count("get_bytes")
    with pytest.raises(ModelUnavailable):
        cache.version(stores.registry, stores.objects, "churn", 1, TTL)
    assert stores.objects.faults.calls.count("get_bytes") == reads and failures == [1]


def test_a_busy_registry_while_loading_a_challenger_is_retryable(churn_champion, stores, clock):
    stores.registry.faults.inject("get_version", throttled())
    with pytest.raises(RetryableError):
        ModelCache(clock=clock).version(stores.registry, stores.objects, "churn", 1, TTL)


# --- through the handler ------------------------------------------------------------------------


def with_challenger(stores, mode: str, share: float) -> Rollout:
    """v2 of churn (v1's model, approved) rolling out beside v1."""
    record = stores.registry.get_version("churn", 1)
    stores.registry.put_version(record.model_copy(update={"version": 2, "run_id": "r2", "status": "Approved"}))
    stores.registry.rollouts["churn"] = running(mode=mode, share=share)
    return stores.registry.rollouts["churn"]


def test_a_canary_answers_with_its_variant_and_its_capture_says_so(churn_champion, stores, api, captures, capsys):
    from tests.serving.helpers import INSTANCE, PREDICT

    current = with_challenger(stores, "canary", 0.5)
    canary = next(k for k in map(str, range(1000)) if traffic.takes(current, k))
    status, body, _ = api.call("POST", PREDICT, {"instances": [INSTANCE]}, headers={"X-Routing-Key": canary})
    assert status == 200 and (body["variant"], body["version"]) == ("challenger", 2)
    assert [(c["variant"], c["version"]) for c in captures] == [("challenger", 2)]
    stay = next(k for k in map(str, range(1000)) if not traffic.takes(current, k))
    for _ in range(3):
        status, body, _ = api.call("POST", PREDICT, {"instances": [INSTANCE]}, headers={"x-routing-key": stay})
        assert (status, body["variant"], body["version"]) == (200, "champion", 1)
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"ModelErrors"' in line]
    assert [(d["variant"], d["ModelErrors"]) for d in documents] == [("challenger", [0.0])] + [("champion", [0.0])] * 3


def test_a_shadow_is_captured_and_never_returned(churn_champion, stores, api, captures):
    from tests.serving.helpers import INSTANCE, PREDICT

    _, alone, _ = api.call("POST", PREDICT, {"instances": [INSTANCE]})
    with_challenger(stores, "shadow", 1.0)
    handler.rollouts.clear()  # the roll-out is read again at once (its TTL, in a test)
    status, shadowed, _ = api.call("POST", PREDICT, {"instances": [INSTANCE]})
    assert status == 200
    assert {k: v for k, v in shadowed.items() if k != "request_id"} == {
        k: v for k, v in alone.items() if k != "request_id"}
    assert shadowed["variant"] == "champion"
    assert [(c["variant"], c["version"]) for c in captures[1:]] == [("champion", 1), ("shadow", 2)]
    assert captures[1]["request_id"] == captures[2]["request_id"] == shadowed["request_id"]



def test_a_failing_canary_fires_its_alarm_and_is_rolled_back_while_the_champion_keeps_serving(
        churn_champion, stores, pipeline_aws, aws_api, capsys, lambda_context):
    """moto + the local cloud's alarm evaluator, driven directly: requests -> EMF metrics -> the template's
    challenger alarm -> its "CloudWatch Alarm State Change" event (read from a queue a rule sends it to) -> the
    roll-out function -> rolled back, and every answer, before and after, is the champion's."""
    import boto3

    from functions.registry import rollout
    from functions.registry.dynamo import DynamoRegistryStore
    from functions.rollout.handler import handler as rollout_handler
    from local.alarms import AlarmEvaluator
    from local.logs import metric_data
    from tests.rollout.test_alarms import received
    from tests.serving.helpers import INSTANCE, PREDICT

    # v2: approved, but its artifact is not what the registry says (the challenger cannot load).
    record = stores.registry.get_version("churn", 1)
    broken = record.artifacts.model_copy(update={"onnx_key": "models/churn/v2/model.onnx"})
    stores.objects.put("models/churn/v2/model.onnx", b"not the model")
    stores.registry.put_version(record.model_copy(update={"version": 2, "run_id": "r2", "status": "Approved",
                                                          "artifacts": broken}))
    pipeline_aws.seed(stores)
    registry = DynamoRegistryStore(pipeline_aws.tables["registry"])
    started = rollout.start(registry, "churn", 2, mode="canary", share=0.5, bake_seconds=600, actor="me").rollout

    cw, sns, sqs, events = (boto3.client(s) for s in ("cloudwatch", "sns", "sqs", "events"))
    topic = sns.create_topic(Name="alarms")["TopicArn"]
    cw.put_metric_alarm(AlarmName="ChallengerErrors", Namespace="Mlops", MetricName="ModelErrors",  # the template's
                        Dimensions=[{"Name": "variant", "Value": "challenger"}], Statistic="Average", Period=60,
                        EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=0.05,
                        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching",
                        AlarmActions=[topic])
    alarm_arn = cw.describe_alarms(AlarmNames=["ChallengerErrors"])["MetricAlarms"][0]["AlarmArn"]
    url = sqs.create_queue(QueueName="rollout-function")["QueueUrl"]
    events.put_rule(Name="challenger-alarm", EventPattern=json.dumps({
        "source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"], "resources": [alarm_arn],
        "detail": {"state": {"value": ["ALARM"]}}}))
    events.put_targets(Rule="challenger-alarm", Targets=[{"Id": "f", "Arn": sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]}])

    def requests(n: int) -> list[dict]:
        answers = []
        for i in range(n):
            status, body, _ = aws_api.call("POST", PREDICT, {"instances": [INSTANCE]},
                                           headers={"X-Routing-Key": f"user-{i}"})
            assert status == 200, body
            answers.append(body)
        for line in capsys.readouterr().out.splitlines():  # what the log shipper puts to CloudWatch
            if '"_aws"' in line:
                for namespace, data in metric_data(json.loads(line)):
                    cw.put_metric_data(Namespace=namespace, MetricData=data)
        return answers

    answers = requests(20)
    assert {(a["variant"], a["version"]) for a in answers} == {("champion", 1)}, "the broken canary never answered"
    evaluator = AlarmEvaluator(cw, sns, "123456789012", "us-east-1", scale=1, clock=lambda: time.time() + 60)
    assert ("ChallengerErrors", "OK", "ALARM") in evaluator.evaluate_all()

    (event,) = received(sqs, url)
    outcome = rollout_handler(event, lambda_context)
    assert [o["rollout"]["status"] for o in outcome["rolled_back"]] == ["rolled_back"]
    ended = registry.get_rollout("churn")
    assert ended.rollout_id == started.rollout_id and ended.end_reason.startswith("alarm ChallengerErrors fired")
    assert registry.get_alias("churn") == 1
    assert [e.action for e in registry.changes("churn") if e.rollout_id] == ["rollout_start", "rollout_rollback"]

    handler.rollouts.clear()  # the roll-out's end is read again (the TTL, in a test)
    after = requests(20)
    assert {(a["variant"], a["version"]) for a in after} == {("champion", 1)}
    # Rolled back twice is once: a repeated event changes nothing.
    assert rollout_handler(event, lambda_context) == {"rolled_back": []}
