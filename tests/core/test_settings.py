"""Settings: one list of variable names for infra and functions, parsed once, failing fast and by name."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from functions.settings import Settings, StarterSettings, settings
from tests.conftest import reset_execution_environment

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {"DATA_BUCKET", "DATASETS_TABLE", "REGISTRY_TABLE", "FEATURES_TABLE", "CODE_VERSION"}


def test_infra_builds_an_environment_from_field_names_and_refuses_unknown_ones():
    assert Settings.environment(data_bucket="b", max_instances=5) == {"DATA_BUCKET": "b", "MAX_INSTANCES": "5"}
    with pytest.raises(KeyError, match="no setting named data_buckt"):
        Settings.environment(data_buckt="b")


def test_resource_names_have_no_defaults():
    required = {field.alias for field in Settings.model_fields.values() if field.is_required()}
    assert required == REQUIRED
    starter = {f.alias for f in StarterSettings.model_fields.values() if f.is_required()}
    assert starter == REQUIRED | {"STATE_MACHINE_ARN"}


def test_a_missing_or_invalid_variable_is_named():
    environ = {name: "value" for name in REQUIRED} | {"MAX_INSTANCES": "many"}
    del environ["REGISTRY_TABLE"]
    with pytest.raises(RuntimeError) as raised:
        Settings.from_environment(environ)
    assert "REGISTRY_TABLE: Field required" in str(raised.value)
    assert "MAX_INSTANCES" in str(raised.value)


def test_settings_are_parsed_once_per_execution_environment(monkeypatch):
    reset_execution_environment()
    first = settings()
    monkeypatch.setenv("DATA_BUCKET", "another-bucket")
    assert settings() is first and first.data_bucket != "another-bucket", "read once, as on Lambda"
    reset_execution_environment()
    assert settings().data_bucket == "another-bucket"
    monkeypatch.undo()
    reset_execution_environment()


def test_a_function_without_its_settings_fails_its_cold_start_naming_them():
    """A fresh interpreter, as a new execution environment: the first invocation says what is missing."""
    environ = {k: v for k, v in os.environ.items() if k not in {"DATA_BUCKET", "FEATURES_TABLE"}}
    code = ("from types import SimpleNamespace\n"
            "from functions.data.handler import register_dataset\n"
            "context = SimpleNamespace(function_name='f', memory_limit_in_mb=128, aws_request_id='r',\n"
            "                          invoked_function_arn='arn:aws:lambda:us-east-1:1:function:f')\n"
            "register_dataset({'run_id': 'r', 'model': 'm', 'bucket': 'bbb', 'key': 'k'}, context)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "DATA_BUCKET: Field required" in result.stderr and "FEATURES_TABLE: Field required" in result.stderr
