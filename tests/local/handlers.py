"""Tiny handlers for testing the local Lambda runtime itself."""

import os
import threading


def echo_env(event, context):
    return dict(os.environ)


def boom(event, context):
    raise ValueError(f"bad input {event['x']}")


received: list = []
delivered = threading.Event()


def record(event, context):
    received.append(event)
    delivered.set()
    return {"ok": True}


def chatty(event, context):
    print('{"level": "INFO", "message": "hello"}')
    print("a warning", file=__import__("sys").stderr)
    return {"ok": True}
