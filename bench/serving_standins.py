"""The predict function's surroundings for the serving bench, importing nothing heavy (the cold-start
runs import this module in a fresh process): its environment, a Lambda context, and in-memory
stand-ins of the registry's reads and the bucket's writes and verified reads."""

import hashlib
from types import SimpleNamespace
from typing import Any

# The environment the template gives the predict function (names only: the stores here are in memory).
ENVIRONMENT = {"DATA_BUCKET": "bench-data", "DATASETS_TABLE": "bench-datasets", "REGISTRY_TABLE": "bench-registry",
               "FEATURES_TABLE": "bench-features", "CODE_VERSION": "bench", "POWERTOOLS_TRACE_DISABLED": "true",
               "POWERTOOLS_SERVICE_NAME": "predict", "POWERTOOLS_METRICS_NAMESPACE": "Mlops",
               "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
CONTEXT = SimpleNamespace(function_name="predict", function_version="$LATEST", memory_limit_in_mb=2048,
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:predict",
                          aws_request_id="bench", get_remaining_time_in_millis=lambda: 30_000)


class Registry:
    """The registry's reads the model cache makes, for one registered version."""

    def __init__(self, record: Any, spec: Any):
        self.record, self.spec = record, spec

    def get_alias(self, model: str, alias: str) -> int | None:
        return self.record.version if alias == "champion" else None

    def get_version(self, model: str, version: int) -> Any:
        return self.record

    def get_spec(self, model: str) -> Any:
        return self.spec

    def get_rollout(self, model: str) -> None:
        return None  # no roll-out running: the champion answers


class Objects:
    """The bucket's writes and verified reads, in memory."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        self.files[key] = data
        return hashlib.sha256(data).hexdigest()

    def get_verified(self, key: str, sha256: str | None) -> bytes:
        data = self.files[key]
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"{key} does not match its sha256")
        return data
