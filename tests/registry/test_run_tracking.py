"""What experiment tracking keeps on a run, on both backends (the fake and DynamoDB under moto): its source, tags,
packages and artifacts (name -> key, sha256, size) read back as they were written."""

import pytest

from functions.records import Run, RunArtifact


def run(run_id: str, **fields) -> Run:
    return Run(model="m", run_id=run_id, bucket="b", key=f"runs/m/{run_id}/", code_version="c", **fields)


def test_a_tracked_run_reads_back_as_it_was_written(backend):
    store = backend.store
    store.start_run(run("r1", source="client", tags={"owner": "ana", "team": "risk"},
                        packages={"python": "3.11.7", "scikit-learn": "1.9.1"}))
    model = RunArtifact(key="runs/m/r1/model.skops", sha256="a" * 64, bytes=1234)
    store.update_run("m", "r1", artifacts={"model": model, "report": RunArtifact(key="runs/m/r1/validation.json")})
    recorded = store.get_run("m", "r1")
    assert recorded.source == "client" and recorded.tags == {"owner": "ana", "team": "risk"}
    assert recorded.packages == {"python": "3.11.7", "scikit-learn": "1.9.1"}
    assert recorded.artifacts == {"model": model, "report": RunArtifact(key="runs/m/r1/validation.json")}
    assert isinstance(recorded.artifacts["model"].bytes, int)


def test_a_run_recorded_before_tracking_reads_with_its_defaults(backend):
    backend.store.start_run(run("old"))
    recorded = backend.store.get_run("m", "old")
    assert (recorded.source, recorded.tags, recorded.packages, recorded.artifacts) == ("pipeline", {}, {}, {})


def test_an_artifact_that_is_not_one_is_refused_and_nothing_written(backend):
    backend.store.start_run(run("r1"))
    with pytest.raises(ValueError):
        backend.store.update_run("m", "r1", artifacts={"model": {"sha256": "a" * 64}})  # no key
    assert backend.store.get_run("m", "r1").artifacts == {}
