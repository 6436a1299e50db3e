"""The predict handler's X-Ray subsegment: built where tracing is on (on Lambda), nothing where it is off.

Where it is off no Tracer is built, so aws_xray_sdk is never imported (test_imports checks sys.modules in a
fresh interpreter). Where it is on, the handler runs in Powertools' Tracer.capture_lambda_handler; a fake
Tracer stands in here, so the X-Ray SDK does not patch botocore for the rest of the session.
"""

import os
import subprocess
import sys
from pathlib import Path

import aws_lambda_powertools
import pytest

from functions.serving.handler import _traced

ROOT = Path(__file__).resolve().parents[2]


def answer(event, context):
    return {"statusCode": 200}


@pytest.fixture
def tracers(monkeypatch) -> list[str]:
    built: list[str] = []

    class FakeTracer:
        def __init__(self) -> None:
            built.append("tracer")

        def capture_lambda_handler(self, function):
            def traced(event, context):
                built.append("subsegment")
                return function(event, context)

            return traced

    monkeypatch.setattr(aws_lambda_powertools, "Tracer", FakeTracer)
    for name in ("POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE"):
        monkeypatch.delenv(name, raising=False)
    return built


def test_on_lambda_the_handler_runs_in_a_subsegment(tracers, monkeypatch):
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    traced = _traced(answer)
    assert traced is not answer and traced({}, None) == {"statusCode": 200}
    assert tracers == ["tracer", "subsegment"]


@pytest.mark.parametrize("environment", [
    {},  # not on Lambda: no X-Ray daemon listens
    {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"},
    {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"},
    {"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"},
], ids=["not-lambda", "disabled", "disabled-1", "sam-local"])
def test_where_tracing_is_off_no_tracer_is_built(tracers, monkeypatch, environment):
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert _traced(answer) is answer
    assert tracers == []


@pytest.mark.parametrize("value", ["false", "0", "no"])
def test_tracing_disabled_only_by_a_truthy_value(tracers, monkeypatch, value):
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", value)
    assert _traced(answer) is not answer


def test_where_tracing_is_off_the_xray_sdk_is_not_imported():
    """In a fresh interpreter, as a cold environment is (its import alone is 100-250 ms of a cold start)."""
    environment = {name: value for name, value in os.environ.items() if name != "LAMBDA_TASK_ROOT"}
    script = "import sys; import functions.serving.handler; print(sorted(n for n in sys.modules if 'xray' in n))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**environment, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
