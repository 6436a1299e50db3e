"""`mlops up` stops soon after SIGTERM or Ctrl-C (SIGINT), training runs in flight or not, and leaves
nothing behind: no process (the fork server, its workers) and no outputs file claiming a running cloud."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from tests.e2e.conftest import csv_bytes

pytestmark = pytest.mark.e2e
STOPS_WITHIN_S = 10  # a bound for a behaviour, not a benchmark: it stops in one or two seconds
START_WITHIN_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _descendants(pid: int) -> list[int]:
    children = _children(pid)
    return children + [d for child in children for d in _descendants(child)]


def _gone(pid: int) -> bool:
    """Ended (a zombie waiting for its reaper counts: it runs nothing), within a short wait."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in {"Z", "X"}:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum, busy", [(signal.SIGTERM, True), (signal.SIGINT, False)],
                         ids=["SIGTERM, runs in flight", "SIGINT (Ctrl-C)"])
def test_mlops_up_stops_soon_after_a_signal_and_leaves_nothing_behind(synthesized_template, tmp_path,
                                                                      signum: int, busy: bool) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"MLOPS_HOME": str(home)}
    log = tmp_path / "mlops-up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlops")), "up", "--template", str(synthesized_template),
             "--aws-port", str(_free_port()), "--api-port", str(_free_port())],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        written = [tmp_path / ".mlops" / "outputs.json", home / "outputs.json"]
        deadline = time.monotonic() + START_WITHIN_S
        while not all(path.exists() for path in written):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        outputs = json.loads(written[1].read_text())
        if busy:  # two uploads for a model with no spec: their pipelines run while it is told to stop
            session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=outputs["Region"])
            s3 = session.client("s3", endpoint_url=outputs["Endpoint"])
            for name in ("a", "b"):
                s3.put_object(Bucket=outputs["DataBucketName"], Key=f"datasets/nospec/{name}.csv", Body=csv_bytes(20))
            deadline = time.monotonic() + 30
            while len(_descendants(process.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)  # the fork server and a worker at least
        processes = _descendants(process.pid)
        assert processes, "the fork server runs"

        signalled = time.monotonic()
        process.send_signal(signum)
        process.wait(timeout=STOPS_WITHIN_S)
        stopped_in = time.monotonic() - signalled
        print(f"mlops up stopped {stopped_in:.2f} s after {signal.Signals(signum).name}")
        assert process.returncode == 0, log.read_text(errors="replace")[-3000:]
        assert [pid for pid in processes if not _gone(pid)] == [], "every process it started has ended"
        assert [path for path in written if path.exists()] == [], "no outputs file claims a running cloud"
        assert "Local cloud stopped." in log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
