"""The predict API under hostile bodies: every request gets a 2xx or 4xx answer in strict JSON,
with nothing of the server's insides, and every answered request is captured.

Deterministic and fast: a fixed list of known-hostile bodies, then bodies built by a seeded
generator from hostile parts (deep nesting, numbers JSON cannot or float32 cannot hold, NaN
tokens, lone surrogates, control and bidi characters, unicode keys, wrong shapes), spliced
into an otherwise valid request. Each goes through the Lambda handler over in-memory stores.
"""

import json
import random

import pytest

from tests.serving.helpers import INSTANCE, PREDICT, strict_json

SEED = 6
GENERATED = 300
# What no answer may show: stack traces, exception and library names, storage names.
INTERNAL = ["Traceback", 'File "', "Exception", "Error:", "ValueError", "TypeError", "KeyError", "RecursionError",
            "UnicodeEncodeError", "pydantic", "numpy", "pandas", "onnx", "pyarrow", "sha256", "models/", "captures/",
            "object at 0x", "errors.pydantic.dev"]

FIXED: list[tuple[str, str | bytes]] = [
    ("deep list value", json.dumps({"instances": [{**INSTANCE, "plan": "X"}]}).replace('"X"', "[" * 200 + "]" * 200)),
    ("nesting past the parser", '{"instances": [' + "[" * 100_000 + "]" * 100_000 + "]}"),
    ("deep object instance", '{"instances": [' + '{"a":' * 150 + "1" + "}" * 150 + "]}"),
    ("int of 4000 digits", json.dumps({"instances": [INSTANCE]}).replace("3.0", "9" * 4000)),
    ("int of 5000 digits", json.dumps({"instances": [INSTANCE]}).replace("3.0", "9" * 5000)),
    ("float overflowing double", json.dumps({"instances": [INSTANCE]}).replace("3.0", "1e400")),
    ("NaN token", json.dumps({"instances": [INSTANCE]}).replace("3.0", "NaN")),
    ("lone surrogate value", json.dumps({"instances": [INSTANCE]}).replace('"basic"', '"\\ud800"')),
    ("beyond float32 (NaN in float32)", json.dumps({"instances": [INSTANCE]}).replace("3.0", "1e308")
     .replace("80.5", "1e308").replace('"support_calls": 2', '"support_calls": -1e308')),
    ("-Infinity in an unknown field", '{"instances": [{"x": -Infinity}]}'),
    ("NaN as instances", '{"instances": NaN}'),
    ("Infinity as the body", "Infinity"),
    ("lone surrogate key", '{"instances": [{"\\ud800": 1}]}'),
    ("lone surrogate top-level key", '{"instances": [{}], "\\udbff": 1}'),
    ("lone surrogate as the body", '"\\ud800"'),
    ("surrogate in an unknown field", '{"instances": [{"plan": 1, "n\\udc00": "\\ud800"}]}'),
    ("unicode keys", json.dumps({"instances": [{"tenure_mönths": 1, "月": 2, "\u202e": 3, "\U0001f600": 4}]})),
    ("NUL key", json.dumps({"instances": [{**INSTANCE, "\u0000": 1}]})),
    ("zero-width twin of a feature", json.dumps({"instances": [{**INSTANCE, "plan\u200b": "basic"}]})),
    ("duplicate keys", '{"instances": [{"plan": "basic"}], "instances": [1]}'),
    ("instances as an object", '{"instances": {"0": {}}}'),
    ("instances as a string", '{"instances": "[]"}'),
    ("null instance", '{"instances": [null]}'),
    ("list instance", '{"instances": [[3, 80, 2, "basic"]]}'),
    ("UTF-8 BOM", "\ufeff" + json.dumps({"instances": [INSTANCE]})),
    ("UTF-16 body", json.dumps({"instances": [INSTANCE]}).encode("utf-16")),
    ("invalid UTF-8", b'{"instances": [{"plan": "\xc3\x28"}]}'),
    ("CESU-8 surrogate", b'{"instances": [{"plan": "\xed\xa0\x80"}]}'),
    ("trailing garbage", json.dumps({"instances": [INSTANCE]}) + " x"),
    ("many problems", json.dumps({"instances": [{"k" * 100 + str(i): None} for i in range(300)]})),
    ("too many instances", json.dumps({"instances": [INSTANCE] * 1_001})),
    ("body over the limit", json.dumps({"instances": [{**INSTANCE, "plan": "x" * 300_000}]})),
]

HOSTILE_VALUES = [None, True, False, 0, -0.0, 1e-320, 2**63, -(2**64), 10**39, 3.4e38, 1e308, "NaN!", "", "x" * 257,
                  "\u0000", "\x1b[2J", "\u202eevil", "\ufffe", "\U0001f600", "é" * 256, [], {}, [[[]]],
                  {"$ne": 1}, "12", "1e999", "<script>", "%s%n", "../../etc/passwd"]
HOSTILE_TOKENS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 400, '"\\ud800"', '"a\\udfffb"',
                  '"\\udc00\\ud83d"', "1.0e+38", "-0", "0.0000", "[" * 30 + "]" * 30]
HOSTILE_KEYS = ["", " ", "plan ", "PLAN", "tenure_months\u0000", "\u0130", "monthly\u00adcharges", "\U0001f4a5",
                "k" * 5_000, "__proto__", "constructor", "instances"]


def generated_bodies(count: int, seed: int) -> list[tuple[str, str]]:
    """Valid requests with one to three hostile parts spliced in, the same on every run."""
    rng = random.Random(seed)
    names = list(INSTANCE)
    bodies = []
    for number in range(count):
        instances = [dict(INSTANCE) for _ in range(rng.randint(1, 3))]
        tokens: dict[str, str] = {}
        for _ in range(rng.randint(1, 3)):
            instance = rng.choice(instances)
            kind = rng.random()
            if kind < 0.45:
                instance[rng.choice(names)] = rng.choice(HOSTILE_VALUES)
            elif kind < 0.8:  # a raw JSON token that json.dumps would not write
                marker = f"@@{len(tokens)}@@"
                tokens[marker] = rng.choice(HOSTILE_TOKENS)
                instance[rng.choice(names)] = marker
            elif kind < 0.9:
                instance[rng.choice(HOSTILE_KEYS)] = rng.choice(HOSTILE_VALUES)
            elif instance:
                del instance[rng.choice(list(instance))]
        text = json.dumps({"instances": instances})
        for marker, token in tokens.items():
            text = text.replace(f'"{marker}"', token)
        bodies.append((f"generated {number}", text))
    return bodies


def test_the_generator_is_deterministic():
    assert generated_bodies(20, SEED) == generated_bodies(20, SEED)


@pytest.mark.parametrize("encoded", [False, True], ids=["text", "base64"])
def test_hostile_bodies_get_a_clean_json_answer_and_no_5xx(churn_champion, stores, api, captures, encoded):
    answered = 0
    cases = FIXED + generated_bodies(GENERATED, SEED)
    for case, body in cases:
        if isinstance(body, bytes) and not encoded:
            continue  # API Gateway sends a body that is not UTF-8 text base64-encoded
        status, text = api.respond("POST", PREDICT, body, encoded=encoded)
        assert 200 <= status < 500, (case, status, text[:300])
        document = strict_json(text)  # no NaN, no Infinity
        text.encode("ascii")  # every character escaped: valid UTF-8, and no lone surrogate as raw text
        for marker in INTERNAL:
            assert marker not in text, (case, marker, text[:300])
        if status == 200:
            answered += 1
            assert len(document["predictions"]) == len(document["probabilities"]), case
        else:
            assert set(document) == {"error"} and set(document["error"]) == {"code", "message"}, case
            assert len(document["error"]["message"]) < 2_000, case
    # Every answered request is captured (a capture that cannot be written would be counted, not lost).
    assert answered > 10 and len({record["request_id"] for record in captures}) == answered
