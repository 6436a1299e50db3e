"""The registry store's contract, run against the fake and the DynamoDB adapter (moto) alike;
then what only the adapter does: its items, and AWS errors translated."""

import pytest

from functions.errors import Conflict, MlopsError, NotFound, RetryableError, UnknownModel
from functions.records import Artifacts, ModelVersion, Run
from functions.spec import Feature
from tests.conftest import client_error, reset_execution_environment


def run(run_id: str, **fields) -> Run:
    values = dict(model="m", run_id=run_id, bucket="b", key=f"datasets/m/{run_id}.csv", code_version="c")
    return Run(**{**values, **fields})


def version(number: int, **fields) -> ModelVersion:
    values = dict(model="m", version=number, run_id=f"r{number}", dataset_id="d" * 64, task="regression", target="y",
                  signature=[Feature(name="x", type="numeric")], metric="rmse", code_version="c",
                  holdout_key=f"runs/m/r{number}/holdout.parquet",
                  artifacts=Artifacts(skops_key="k", skops_sha256="s" * 64, skops_trusted_types=["numpy.dtype"]),
                  estimator="linear_regression")
    return ModelVersion(**{**values, **fields})


# --- the contract: both backends ----------------------------------------------------------------


def test_specs_round_trip_update_in_place_and_list_by_name(backend, churn_spec):
    store = backend.store
    store.put_spec(churn_spec)
    changed = churn_spec.model_copy(update={"metric": "f1"})
    store.put_spec(changed)
    assert store.get_spec("churn") == changed
    store.put_spec(churn_spec.model_copy(update={"name": "another"}))
    assert [s.name for s in store.list_specs()] == ["another", "churn"]


def test_an_unknown_model_says_how_to_create_it(backend):
    message = r"no model spec named 'x' is registered; create it with `mlops models create x --spec FILE`"
    with pytest.raises(UnknownModel, match=message):
        backend.store.get_spec("x")


def test_runs_are_recorded_once_and_listed_newest_first(backend):
    store = backend.store
    assert store.start_run(run("r1")) is True
    assert store.start_run(run("r1", bucket="other")) is False
    store.start_run(run("r2", version_id=None))
    store.update_run("m", "r1", status="SUCCEEDED", metrics={"roc_auc": 0.75}, model_version=3,
                     params={"alpha": 0.5, "solver": None})
    recorded = store.get_run("m", "r1")
    assert recorded.bucket == "b" and recorded.status == "SUCCEEDED" and recorded.model_version == 3
    assert recorded.metrics == {"roc_auc": 0.75} and recorded.params == {"alpha": 0.5, "solver": None}
    assert isinstance(recorded.model_version, int) and isinstance(recorded.metrics["roc_auc"], float)
    assert [r.run_id for r in store.list_runs("m")] == ["r2", "r1"]
    assert [r.run_id for r in store.list_runs("m", limit=1)] == ["r2"]
    with pytest.raises(NotFound):
        store.get_run("m", "r9")


def test_a_run_update_is_checked_against_the_fields_of_a_run(backend):
    backend.store.start_run(run("r1"))
    with pytest.raises(KeyError, match="no field"):
        backend.store.update_run("m", "r1", colour="blue")
    with pytest.raises(ValueError):
        backend.store.update_run("m", "r1", status="HALF-DONE")
    assert backend.store.get_run("m", "r1").status == "RUNNING"


def test_a_non_finite_metric_is_left_out_and_the_run_still_reads(backend):
    backend.store.start_run(run("r1"))
    backend.store.update_run("m", "r1", metrics={"roc_auc": 0.75, "odd": float("nan")})
    assert backend.store.get_run("m", "r1").metrics == {"roc_auc": 0.75}


def test_versions_are_written_once_and_read_back_typed(backend):
    store = backend.store
    store.put_version(version(1, metrics={"rmse": 1.5}, classes=None, params={"alpha": 0.1}))
    with pytest.raises(Conflict):
        store.put_version(version(1, run_id="r2"))
    recorded = store.get_version("m", 1)
    assert recorded == version(1, metrics={"rmse": 1.5}, params={"alpha": 0.1}, created_at=recorded.created_at)
    assert recorded.status == "PendingManualApproval" and isinstance(recorded.metrics["rmse"], float)
    assert recorded.artifacts.format == "skops"
    store.put_version(version(10))
    assert [v.version for v in store.list_versions("m")] == [1, 10]  # numerically, not as text
    with pytest.raises(NotFound):
        store.get_version("m", 7)


def test_classes_keep_their_exact_types(backend):
    backend.store.put_version(version(1, task="classification", metric="f1", classes=[True, 2, 2.5, "x"]))
    classes = backend.store.get_version("m", 1).classes
    assert classes == [True, 2, 2.5, "x"] and [type(c) for c in classes] == [bool, int, float, str]


def test_a_run_gets_one_version_number_however_often_it_asks(backend):
    store = backend.store
    assert [store.version_for_run("m", "run-a"), store.version_for_run("m", "run-a")] == [1, 1]
    assert [store.version_for_run("m", r) for r in ("run-b", "run-c")] == [2, 3]
    assert store.version_for_run("other", "run-a") == 1  # numbered per model
    assert store.list_versions("m") == [], "reserving a number registers nothing"


def test_aliases_move_conditionally_and_leave_an_audit_trail(backend):
    store = backend.store
    assert store.get_alias("m") is None
    store.set_alias("m", "champion", 1, expected=None, reason="first")
    with pytest.raises(Conflict):
        store.set_alias("m", "champion", 2, expected=None, reason="lost race")
    with pytest.raises(Conflict):
        store.set_alias("m", "champion", 2, expected=5, reason="stale view")
    store.set_alias("m", "champion", 2, expected=1, reason="better")
    store.set_alias("m", "challenger", 3, expected=None, reason="not better")
    assert store.get_alias("m") == 2 and store.get_alias("m", "challenger") == 3
    assert [(a.alias, a.version, a.from_version, a.reason, a.action) for a in store.audit_trail("m")] == [
        ("champion", 1, None, "first", "set_champion"), ("champion", 2, 1, "better", "set_champion"),
        ("challenger", 3, None, "not better", "set_challenger")]
    assert store.audit_trail("other") == []


def test_an_unknown_alias_is_refused_and_nothing_moves(backend):
    with pytest.raises(ValueError):
        backend.store.set_alias("m", "latest", 1, expected=None, reason="x")
    assert backend.store.get_alias("m", "latest") is None and backend.store.audit_trail("m") == []


# --- version numbers under faults: none skipped, none given twice (issue 6 item 14) --------------


def reserved(store, model: str = "m") -> list[int]:
    """The numbers the next two runs get: what a failed call left of the counter."""
    return [store.version_for_run(model, "next-1"), store.version_for_run(model, "next-2")]


@pytest.mark.parametrize("reply_lost", [False, True], ids=["throttled", "reply lost"])
def test_a_failed_reservation_is_retried_to_the_same_number_and_skips_none(backend, reply_lost):
    backend.fail("reservation", reply_lost=reply_lost)
    with pytest.raises(RetryableError):
        backend.store.version_for_run("m", "run-a")
    assert backend.store.version_for_run("m", "run-a") == 1
    assert backend.store.version_for_run("m", "run-a") == 1
    assert reserved(backend.store) == [2, 3], "no number was skipped or taken twice"


def test_a_throttled_read_of_the_reservation_reserves_nothing(backend):
    backend.fail("reservation read")
    with pytest.raises(RetryableError):
        backend.store.version_for_run("m", "run-a")
    assert backend.store.version_for_run("m", "run-a") == 1 and reserved(backend.store) == [2, 3]


def test_a_registration_is_idempotent_for_its_run_and_refused_to_another(backend):
    store = backend.store
    first = version(1, metrics={"rmse": 1.5})
    store.put_version(first)
    store.put_version(version(1, metrics={"rmse": 9.9}))  # the same run again: a no-op, the first record stays
    assert store.get_version("m", 1).metrics == {"rmse": 1.5}
    with pytest.raises(Conflict, match="version 1 of model 'm' is already registered by another run"):
        store.put_version(version(1, run_id="r2"))
    assert [v.run_id for v in store.list_versions("m")] == ["r1"]


@pytest.mark.parametrize("reply_lost", [False, True], ids=["throttled", "reply lost"])
def test_a_failed_registration_is_retried_to_one_version(backend, reply_lost):
    backend.fail("registration", reply_lost=reply_lost)
    with pytest.raises(RetryableError):
        backend.store.put_version(version(1))
    assert [v.run_id for v in backend.store.list_versions("m")] == (["r1"] if reply_lost else [])
    backend.store.put_version(version(1))  # the step's retry: never "version 1 already exists"
    assert [v.version for v in backend.store.list_versions("m")] == [1]


def test_a_failed_run_gives_back_the_number_it_never_registered(backend):
    store = backend.store
    assert store.version_for_run("m", "run-a") == 1
    assert store.release_version("m", "run-a") is True
    assert store.release_version("m", "run-a") is False, "a retried release changes nothing"
    assert store.release_version("m", "never-reserved") is False
    assert reserved(store) == [1, 2], "the next run takes the number back: no gap"


def test_a_registered_number_or_one_followed_by_a_later_reservation_is_kept(backend):
    store = backend.store
    assert [store.version_for_run("m", r) for r in ("r1", "r2", "r3")] == [1, 2, 3]
    store.put_version(version(3))
    assert store.release_version("m", "r3") is False  # registered
    assert store.release_version("m", "r1") is False  # r2 and r3 reserved after it: giving it back leaves a gap
    assert store.version_for_run("m", "r1") == 1 and store.version_for_run("m", "r4") == 4


@pytest.mark.parametrize("reply_lost", [False, True], ids=["throttled", "reply lost"])
def test_a_failed_release_is_retried_to_one_outcome(backend, reply_lost):
    backend.store.version_for_run("m", "run-a")
    backend.fail("release", reply_lost=reply_lost)
    with pytest.raises(RetryableError):
        backend.store.release_version("m", "run-a")
    assert backend.store.release_version("m", "run-a") is not reply_lost  # done now, or done by the lost call
    assert reserved(backend.store) == [1, 2]


# --- other faults: both backends fail the same way ------------------------------------------------


@pytest.mark.parametrize("reply_lost", [False, True])
def test_a_failed_run_update_is_retried_to_the_same_record(backend, reply_lost):
    backend.store.start_run(run("r1"))
    backend.fail("run", reply_lost=reply_lost)
    with pytest.raises(RetryableError):
        backend.store.update_run("m", "r1", status="FAILED", failure_reason="bad file")
    assert backend.store.get_run("m", "r1").status == ("FAILED" if reply_lost else "RUNNING")
    backend.store.update_run("m", "r1", status="FAILED", failure_reason="bad file")
    assert backend.store.get_run("m", "r1").failure_reason == "bad file"


def test_a_throttled_alias_move_moves_nothing(backend):
    backend.fail("alias")
    with pytest.raises(RetryableError):
        backend.store.set_alias("m", "champion", 1, expected=None, reason="first")
    assert backend.store.get_alias("m") is None and backend.store.audit_trail("m") == []


def test_an_alias_move_whose_reply_is_lost_is_done_once_and_a_blind_retry_conflicts(backend):
    backend.fail("alias", reply_lost=True)
    with pytest.raises(RetryableError):
        backend.store.set_alias("m", "champion", 1, expected=None, reason="first")
    with pytest.raises(Conflict):  # the caller must read the alias again (promotion does)
        backend.store.set_alias("m", "champion", 1, expected=None, reason="first")
    assert backend.store.get_alias("m") == 1 and len(backend.store.audit_trail("m")) == 1


# --- the DynamoDB adapter only: its items and AWS's errors ---------------------------------------


@pytest.fixture
def dynamo(registry_table):
    from functions.registry.dynamo import DynamoRegistryStore

    return DynamoRegistryStore(registry_table)


def test_a_spec_item_keeps_its_creation_time(dynamo, churn_spec):
    dynamo.put_spec(churn_spec)
    first = dynamo.table.get_item(Key={"pk": "MODEL#churn", "sk": "SPEC"})["Item"]
    dynamo.put_spec(churn_spec.model_copy(update={"metric": "f1"}))
    item = dynamo.table.get_item(Key={"pk": "MODEL#churn", "sk": "SPEC"})["Item"]
    assert item["created_at"] == first["created_at"] and item["updated_at"] >= first["updated_at"]


def test_a_corrupt_stored_spec_is_a_clear_error(dynamo):
    dynamo.table.put_item(Item={"pk": "MODEL#broken", "sk": "SPEC", "spec": "{not json"})
    with pytest.raises(MlopsError, match="stored spec of model 'broken' is unreadable"):
        dynamo.get_spec("broken")


def test_a_reservation_is_one_item_beside_the_counter(dynamo):
    assert dynamo.version_for_run("m", "run-a") == 1
    counter = dynamo.table.get_item(Key={"pk": "MODEL#m", "sk": "COUNTER"})["Item"]
    reservation = dynamo.table.get_item(Key={"pk": "MODEL#m", "sk": "RUNVERSION#run-a"})["Item"]
    assert counter["next_version"] == 1 and reservation["version"] == 1 and reservation["run_id"] == "run-a"


def test_a_run_that_loses_the_race_for_a_number_takes_the_next_one(dynamo, monkeypatch):
    from functions.registry.dynamo import DynamoRegistryStore

    other = DynamoRegistryStore(dynamo.table)
    real_transact = dynamo.table.meta.client.transact_write_items
    races: list[int] = []

    def transact(**kwargs):  # another run reserves between this run's read of the counter and its write
        if not races:
            races.append(0)
            races[0] = other.version_for_run("m", "run-b")
        return real_transact(**kwargs)

    monkeypatch.setattr(dynamo.table.meta.client, "transact_write_items", transact)
    assert dynamo.version_for_run("m", "run-a") == 2 and races == [1]
    assert [dynamo.version_for_run("m", r) for r in ("run-a", "run-b", "run-c")] == [2, 1, 3]


def test_a_number_that_keeps_being_taken_is_a_retryable_error(dynamo, monkeypatch):
    def cancelled(**kwargs):
        raise client_error("TransactionCanceledException", "TransactWriteItems",
                           CancellationReasons=[{"Code": "ConditionalCheckFailed"}, {"Code": "None"}])

    monkeypatch.setattr(dynamo.table.meta.client, "transact_write_items", cancelled)
    with pytest.raises(RetryableError, match="other runs kept taking the next number"):
        dynamo.version_for_run("m", "run-a")


def test_version_items_sort_numerically(dynamo):
    dynamo.put_version(version(2))
    assert dynamo.table.get_item(Key={"pk": "MODEL#m", "sk": "VERSION#000002"})["Item"]["version"] == 2


def test_a_busy_transaction_is_retryable_and_moves_nothing(dynamo, monkeypatch):
    def cancelled(**kwargs):
        raise client_error("TransactionCanceledException", "TransactWriteItems",
                           CancellationReasons=[{"Code": "None"}, {"Code": "TransactionConflict"}])

    monkeypatch.setattr(dynamo.table.meta.client, "transact_write_items", cancelled)
    with pytest.raises(RetryableError):
        dynamo.set_alias("m", "champion", 1, expected=None, reason="x")
    assert dynamo.audit_trail("m") == []


@pytest.mark.parametrize("code, error", [("ProvisionedThroughputExceededException", RetryableError),
                                         ("AccessDeniedException", MlopsError),
                                         ("ConditionalCheckFailedException", Conflict),
                                         ("ResourceNotFoundException", NotFound)])
def test_storage_errors_become_domain_errors(dynamo, monkeypatch, code, error, churn_spec):
    def failing(**kwargs):
        raise client_error(code, "UpdateItem")

    monkeypatch.setattr(dynamo.table, "update_item", failing)
    with pytest.raises(error) as caught:
        dynamo.put_spec(churn_spec)
    assert type(caught.value) is error  # AccessDenied is not retryable, nor a conflict
    assert "injected" not in caught.value.message  # never AWS's own text


def test_the_store_of_a_function_is_built_once_from_its_settings(pipeline_aws, monkeypatch):
    from functions.registry.dynamo import registry_store

    assert registry_store().table.name == "registry" and registry_store() is registry_store()
    monkeypatch.setenv("REGISTRY_TABLE", "other")
    assert registry_store().table.name == "registry"  # parsed once per execution environment, as on Lambda
    reset_execution_environment()
    assert registry_store().table.name == "other"
