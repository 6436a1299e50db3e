"""On the ONNX path the serving function never imports scikit-learn, scipy, pandas, pyarrow or skops.

Checked where it counts, in a fresh interpreter (as a cold Lambda environment is): import the
handler, load a champion through the model cache and answer a predict request (an API Gateway
event), then read sys.modules. The registry and the bucket are small in-memory stand-ins written
in the script itself (the tests' fakes import pandas). The scikit-learn fallback imports them when
it is used, and only then.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from functions.registry.artifacts import save_model
from functions.training.train import fit
from tests.fakes import MemoryObjectStore
from tests.serving.events import api_event
from tests.serving.helpers import INSTANCE, PREDICT

HEAVY = ["sklearn", "scipy", "pandas", "pyarrow", "skops", "skl2onnx", "onnx"]
ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from types import SimpleNamespace

from functions.serving import handler
from functions.records import ModelVersion
from functions.spec import ModelSpec

given = json.load(open(sys.argv[1]))
record = ModelVersion.model_validate(given["record"])
spec = ModelSpec.model_validate(given["spec"])
files = {key: bytes.fromhex(data) for key, data in given["files"].items()}


class Registry:
    def get_alias(self, model, alias):
        return 1

    def get_version(self, model, version):
        return record

    def get_spec(self, model):
        return spec

    def get_rollout(self, model):
        return None


class Objects:
    def get_verified(self, key, sha256):
        return files[key]


handler.registry_store = lambda: Registry()
handler.data_objects = lambda: Objects()
context = SimpleNamespace(function_name="f", function_version="$LATEST", memory_limit_in_mb=2048,
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
                          aws_request_id="r", get_remaining_time_in_millis=lambda: 60_000)
response = handler.handler(given["event"], context)
heavy = [name for name in given["heavy"] if name in sys.modules]
print(json.dumps({"status": response["statusCode"], "body": json.loads(response["body"]), "heavy": heavy,
                  "format": handler.models.champion(Registry(), Objects(), spec.name, 60).predictor.format}))
"""


def answer_in_a_fresh_interpreter(tmp_path, spec, record, objects) -> dict:
    given = {"record": record.model_dump(mode="json"), "spec": spec.model_dump(mode="json"), "heavy": HEAVY,
             "files": {key: objects.get_bytes(key).hex() for key in objects.keys("models/")},
             "event": api_event("POST", PREDICT, {"instances": [INSTANCE, {**INSTANCE, "plan": "never seen"}]})}
    path = tmp_path / "given.json"
    path.write_text(json.dumps(given))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("onnx", [True, False], ids=["onnx", "skops-fallback"])
def test_the_onnx_path_imports_no_scikit_learn_scipy_pandas_pyarrow_or_skops(tmp_path, churn_champion, onnx):
    from tests.registry.test_artifacts import as_version

    spec = churn_champion.record.trained_spec(churn_champion.spec)
    result = fit(churn_champion.rows, spec, "d" * 64)
    objects = MemoryObjectStore("b")
    artifacts = save_model(objects, "models/churn/v1", result.pipeline, spec, result.holdout)
    assert artifacts.format == "onnx"
    if not onnx:  # a version whose ONNX did not pass parity: served by scikit-learn
        artifacts = artifacts.model_copy(update={"onnx_key": None, "onnx_sha256": None, "onnx_skipped": "disagreed"})

    answer = answer_in_a_fresh_interpreter(tmp_path, spec, as_version(artifacts, spec, result), objects)

    assert answer["status"] == 200 and len(answer["body"]["predictions"]) == 2, answer
    if onnx:
        assert answer["format"] == "onnx" and answer["heavy"] == []
    else:  # the fallback imports what it needs, when it is used
        assert answer["format"] == "skops" and {"sklearn", "pandas", "skops"} <= set(answer["heavy"])
