"""Shared test setup: a fake AWS environment (never a real account) and one CDK synth per session."""

import json
import os
from pathlib import Path

import pytest

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "Mlops",
    "POWERTOOLS_SERVICE_NAME": "tests",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cloud_assembly(tmp_path_factory):
    """The app synthesized once per session (jsii starts Node.js: seconds, not milliseconds)."""
    from app import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = build_app(outdir=str(outdir))
    assembly = app.synth()
    return assembly, stack


@pytest.fixture(scope="session")
def template_dict(cloud_assembly) -> dict:
    assembly, stack = cloud_assembly
    return json.loads(Path(assembly.directory, stack.template_file).read_text())
