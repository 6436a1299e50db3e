"""moto's server as the local cloud runs it: a port in use is an error at once, and a stop frees the port."""

import socket

import pytest
import requests

from local.cloud import MotoServer


def test_a_port_in_use_is_an_os_error_at_once_not_a_hang() -> None:
    """moto's ThreadedMotoServer binds on its thread, whose failure leaves its start() waiting forever."""
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(OSError):
        MotoServer("127.0.0.1", taken.getsockname()[1]).start()


def test_it_answers_until_stopped_and_then_frees_its_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    server = MotoServer("127.0.0.1", port)
    server.start()
    try:
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200  # S3's ListBuckets
    finally:
        server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=10)
    socket.create_server(("127.0.0.1", port)).close()  # the port is free again
