"""What the local runtime's tests control: a socket handlers report to, and a log sink to wait on."""

import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

WAIT_S = 10  # how long a test waits for something that must happen (a bound, not a measurement)


class Listener:
    """Where tests.local.handlers.report says that it runs, and waits for the word to return."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(WAIT_S)
        self.port = self.server.getsockname()[1]

    def next(self) -> tuple[socket.socket, dict]:
        """The next running handler's connection (send b"go\\n" to let it return) and its message."""
        conn, _ = self.server.accept()
        conn.settimeout(WAIT_S)
        return conn, json.loads(conn.makefile().readline())

    def quiet(self) -> bool:
        """No handler has reported since the last `next()`."""
        return not select.select([self.server], [], [], 0)[0]


class Sink:
    """A log sink that keeps what it is given: (log group, log stream, text)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str]] = []
        self._changed = threading.Condition()

    def __call__(self, group: str, stream: str, text: str) -> None:
        with self._changed:
            self.entries.append((group, stream, text))
            self._changed.notify_all()

    def wait_for(self, text: str) -> tuple[str, str]:
        """The (log group, log stream) where `text` was printed, once it has been."""
        with self._changed:
            assert self._changed.wait_for(lambda: any(text in t for _, _, t in self.entries), WAIT_S), text
            return next((group, stream) for group, stream, t in self.entries if text in t)

    def lines(self, stream: str) -> list[str]:
        return [line for _, s, text in self.entries if s == stream for line in text.splitlines()]


def gone(pid: int) -> bool:
    """The process has ended and been reaped (waits for it a little: ending is asynchronous)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    listening = Listener()
    yield listening
    listening.server.close()
