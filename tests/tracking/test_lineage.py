"""Runs and lineage after the pipeline, on the in-memory stores: each run records what it ran with and stored, and
every registered version is reachable from its dataset and back (the pipeline's and the client's alike)."""

import pytest

import mlops
from functions.errors import InvalidInput, NotFound
from functions.records import Run
from functions.storage.objects import sha256
from mlops.lineage import dataset_lineage, find_dataset, problems, version_lineage
from tests.tracking.conftest import notebook_pipeline
from tests.training.helpers import run_in_memory


@pytest.fixture(scope="module")
def _built(frames):
    """Two uploads (v1, v2), an identical upload (it trains nothing), and a notebook run (v3) on other data:
    run once, each test getting its own copy of the stores."""
    from cli.demo_data import churn_frame
    from functions.spec import ModelSpec
    from mlops.tracking import Tracking
    from tests.conftest import CHURN_SPEC, Stores

    stores, churn_rows = Stores(), churn_frame(rows=200, seed=11)
    stores.registry.put_spec(ModelSpec.model_validate(CHURN_SPEC))
    tracking = Tracking(stores.registry, stores.objects, stores.datasets)
    first, error = run_in_memory(stores, "churn", "a.csv", churn_rows.to_csv(index=False).encode())
    assert error is None, error
    second, error = run_in_memory(stores, "churn", "b.csv", churn_rows.head(150).to_csv(index=False).encode())
    assert error is None, error
    again, error = run_in_memory(stores, "churn", "a-again.csv", churn_rows.to_csv(index=False).encode())
    assert error is None and again.dataset.duplicate_of == first.run_id
    train, holdout = frames
    with mlops.start_run("churn", tracking=tracking, code_version="nb-1") as notebook:
        pipeline = notebook_pipeline().fit(notebook.features(train), train["churned"])
        notebook.register(pipeline, holdout=holdout, data=train)
    return stores, (first, second, again, notebook)


@pytest.fixture
def pipeline_runs(_built, stores):
    built, runs = _built
    vars(stores).update(vars(built.copy()))
    return runs


def test_a_pipeline_run_records_its_packages_artifacts_data_and_code(stores, pipeline_runs):
    first, *_ = pipeline_runs
    run = stores.registry.get_run("churn", first.run_id)
    assert run.status == "SUCCEEDED" and run.source == "pipeline" and run.code_version == "test-1"
    assert run.dataset_id == first.dataset.dataset_id and run.model_version == 1
    assert run.params["max_iter"] == 300 and run.metrics["roc_auc"] > 0.5
    assert run.packages["scikit-learn"] and run.packages["skops"] and run.packages["python"]
    assert set(run.artifacts) == {"validation", "features", "train", "holdout", "model", "onnx", "reference"}
    for artifact in run.artifacts.values():
        data = stores.objects.get_bytes(artifact.key)  # every key names a stored object
        assert artifact.sha256 is None or artifact.sha256 == sha256(data)
    assert run.artifacts["model"].sha256 and run.artifacts["features"].sha256
    assert stores.registry.get_version("churn", 1).holdout_key == run.artifacts["holdout"].key


def test_a_failed_pipeline_run_records_what_it_stored_before_it_failed(stores, churn_spec, churn_rows):
    stores.registry.put_spec(churn_spec)
    state, error = run_in_memory(stores, "churn", "short.csv", churn_rows.head(10).to_csv(index=False).encode())
    run = stores.registry.get_run("churn", state.run_id)
    assert error is not None and run.status == "FAILED" and run.failed_step == "ValidateDataset"
    assert run.packages["scikit-learn"] and run.artifacts == {}, "validation stored its report, but did not return"


def test_every_registered_version_is_reachable_from_its_dataset_and_back(stores, pipeline_runs):
    first, second, again, notebook = pipeline_runs
    assert [v.version for v in stores.registry.list_versions("churn")] == [1, 2, 3]
    assert problems(stores.registry, stores.datasets, "churn") == []
    for version in stores.registry.list_versions("churn"):
        back = version_lineage(stores.registry, stores.datasets, "churn", version.version)
        assert back.run is not None and back.run.run_id == version.run_id and back.missing == []
        assert back.dataset is not None and back.dataset.dataset_id == version.dataset_id
        forth = dataset_lineage(stores.registry, stores.datasets, "churn", version.dataset_id)
        assert version.version in [v.version for v in forth.versions]
        assert version.run_id in [r.run_id for r in forth.runs]

    used = dataset_lineage(stores.registry, stores.datasets, "churn", first.dataset.dataset_id[:8])
    assert [r.run_id for r in used.runs] == [first.run_id, again.run_id], "the identical upload used it too"
    assert [v.version for v in used.versions] == [1]
    notebook_data = dataset_lineage(stores.registry, stores.datasets, "churn", notebook.dataset.dataset_id)
    assert [r.run_id for r in notebook_data.runs] == [notebook.run_id]
    assert notebook_data.versions[0].version == 3 and notebook_data.runs[0].source == "client"
    champion = stores.registry.get_alias("churn", "champion")
    assert version_lineage(stores.registry, stores.datasets, "churn", champion).aliases == ["champion"]


def test_a_broken_link_is_reported_not_hidden(stores, pipeline_runs):
    first, second, *_ = pipeline_runs
    del stores.datasets.datasets[("churn", second.dataset.dataset_id)]
    del stores.registry.runs[("churn", first.run_id)]
    found = problems(stores.registry, stores.datasets, "churn")
    assert found == [f"v1: its run {first.run_id} is not recorded",
                     f"v2: its dataset {second.dataset.dataset_id[:12]} is not recorded"]
    lineage = version_lineage(stores.registry, stores.datasets, "churn", 1)
    assert lineage.run is None and lineage.missing == [f"run {first.run_id} (the record of the run that "
                                                       "registered v1)"]
    data = dataset_lineage(stores.registry, stores.datasets, "churn", first.dataset.dataset_id)
    assert data.missing == [f"run {first.run_id} (listed by the dataset)"]


def test_a_searchs_trials_are_in_the_lineage_of_its_version_and_its_data(stores, pipeline_runs):
    first, *_ = pipeline_runs
    for trial in (2, 1):
        stores.registry.start_run(Run(model="churn", run_id=f"{first.run_id}-t{trial}", bucket="b", key="k",
                                      code_version="test-1", parent_run_id=first.run_id, trial=trial,
                                      estimator="random_forest", status="SUCCEEDED",
                                      fold_metrics=[{"roc_auc": 0.7}, {"roc_auc": 0.8}]))
    lineage = version_lineage(stores.registry, stores.datasets, "churn", 1)
    assert [t.trial for t in lineage.trials] == [1, 2] and lineage.parent is None
    data = dataset_lineage(stores.registry, stores.datasets, "churn", first.dataset.dataset_id)
    assert {f"{first.run_id}-t1", f"{first.run_id}-t2"} <= {r.run_id for r in data.runs}
    stores.registry.update_run("churn", first.run_id, parent_run_id=f"{first.run_id}-t1")  # a trial's own lineage
    assert version_lineage(stores.registry, stores.datasets, "churn", 1).parent.trial == 1


def test_a_dataset_is_found_by_its_id_or_a_prefix_of_it(stores, pipeline_runs):
    first, *_ = pipeline_runs
    dataset_id = first.dataset.dataset_id
    assert find_dataset(stores.datasets, "churn", dataset_id).dataset_id == dataset_id
    assert find_dataset(stores.datasets, "churn", dataset_id[:6].upper()).dataset_id == dataset_id
    with pytest.raises(InvalidInput, match="first 6 characters at least"):
        find_dataset(stores.datasets, "churn", dataset_id[:5])
    with pytest.raises(InvalidInput, match="hexadecimal"):
        find_dataset(stores.datasets, "churn", "not-an-id")
    with pytest.raises(NotFound, match="model 'churn' has no dataset 000000"):
        find_dataset(stores.datasets, "churn", "000000")
    with pytest.raises(NotFound):
        version_lineage(stores.registry, stores.datasets, "churn", 9)


def test_an_ambiguous_prefix_names_the_candidates(stores, pipeline_runs):
    first, *_ = pipeline_runs
    known = stores.datasets.get_dataset("churn", first.dataset.dataset_id)
    twin = known.model_copy(update={"dataset_id": known.dataset_id[:6] + "f" * 58})
    stores.datasets.put_dataset(twin)
    with pytest.raises(InvalidInput, match="is ambiguous"):
        find_dataset(stores.datasets, "churn", known.dataset_id[:6])
