"""Tiny handlers for testing the local Lambda runtime; they run in its worker processes."""

import json
import os
import socket
import sys
import time
from typing import Any

IMPORTED_WITH = os.environ.get("WHO")  # read at import, as production handlers parse their settings


def echo_env(event: Any, context: Any) -> dict:
    return {"environment": dict(os.environ), "imported_with": IMPORTED_WITH, "pid": os.getpid(),
            "ppid": os.getppid(), "stream": context.log_stream_name}


def boom(event: Any, context: Any) -> dict:
    raise ValueError(f"bad input {event['x']}")


def report(event: Any, context: Any) -> dict:
    """Tell the test (listening on REPORT_PORT) that it runs; with "wait", return only at its word."""
    with socket.create_connection(("127.0.0.1", int(os.environ["REPORT_PORT"])), timeout=30) as conn:
        conn.sendall(json.dumps({"event": event, "pid": os.getpid()}).encode() + b"\n")
        if event.get("wait"):
            conn.makefile().readline()
    return {"pid": os.getpid()}


def nap(event: Any, context: Any) -> dict:
    time.sleep(event["seconds"])
    return {"pid": os.getpid()}


def crash(event: Any, context: Any) -> dict:
    if "code" in event:
        os._exit(event["code"])
    return {"pid": os.getpid()}


def chatty(event: Any, context: Any) -> dict:
    print('{"level": "INFO", "message": "hello"}')
    print("a warning", file=sys.stderr)
    if "metrics" in event:
        print(json.dumps(event["metrics"]))
    return {"ok": True}
