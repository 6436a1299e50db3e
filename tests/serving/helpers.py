"""What the predict API's tests share: a valid instance, a clock the test moves, the API as a client sees it."""

import json

from functions.serving import handler
from functions.storage.objects import sha256
from tests.conftest import Champion, Stores
from tests.serving.events import api_event, call

PREDICT = "/v1/models/churn/predict"
# One customer, exactly the churn signature.
INSTANCE = {"tenure_months": 3.0, "monthly_charges": 80.5, "support_calls": 2, "plan": "basic"}


class Clock:
    """A monotonic clock that moves only when told to (ModelCache's `clock`)."""

    def __init__(self, start: float = 1_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """The predict handler called with API Gateway events, as a client sees its answers."""

    def __init__(self, context):
        self.context = context

    def call(self, method: str, path: str, body=None, **kwargs) -> tuple[int, dict, dict]:
        """(status, parsed JSON body, headers)."""
        return call(handler.handler, self.context, method, path, body, **kwargs)

    def respond(self, method: str, path: str, body=None, **kwargs) -> tuple[int, str]:
        """The status, and the body exactly as the client receives it."""
        response = handler.handler(api_event(method, path, body, **kwargs), self.context)
        assert not response.get("isBase64Encoded")
        return response["statusCode"], response.get("body") or ""

    def served_version(self) -> int:
        status, body, _ = self.call("POST", PREDICT, {"instances": [INSTANCE]})
        assert status == 200, body
        return body["version"]


def strict_json(text: str):
    """`text` parsed as JSON as a strict client parses it: NaN and Infinity are not JSON."""
    def refuse(constant: str):
        raise AssertionError(f"{constant} in a response body: not JSON")

    return json.loads(text, parse_constant=refuse)


def assert_clean(text: str, *secrets: str) -> None:
    """An error body says what went wrong for the client, never how it failed inside."""
    assert "Traceback" not in text and 'File "' not in text
    for secret in secrets:
        assert secret not in text


def error_of(text: str) -> dict:
    return json.loads(text)["error"]


def promote_new_version(stores: Stores, champion: Champion, onnx: bytes | None = None) -> int:
    """Register the next version of the champion's model and make it champion, as a promoted run does.

    It reuses the champion's artifacts: the cache tells versions apart by number, and training
    another model would cost a second for nothing the tests look at. With `onnx`, the version's
    model.onnx is those bytes, under a key of its own and recorded with their sha256.
    """
    current = stores.registry.get_alias(champion.name, "champion")
    assert current is not None
    number = current + 1
    artifacts = champion.artifacts
    if onnx is not None:
        key = artifacts.onnx_key.replace("/v1/", f"/v{number}/")
        stores.objects.put(key, onnx)
        artifacts = artifacts.model_copy(update={"onnx_key": key, "onnx_sha256": sha256(onnx)})
    record = champion.record.model_copy(update={"version": number, "run_id": f"{champion.run_id}-{number}",
                                                "artifacts": artifacts})
    stores.registry.put_version(record)
    stores.registry.set_alias(champion.name, "champion", number, expected=current, reason="a better model")
    return number
