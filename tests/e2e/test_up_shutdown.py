"""`mlops up` stops soon after SIGTERM or Ctrl-C (SIGINT), training runs in flight or not, and leaves
nothing behind: no process (the fork server, its workers) and no outputs file claiming a running cloud.

SIGTERM stops the session's own local cloud, as the end-to-end tests' last (pytest.mark.last); Ctrl-C
stops one of its own."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.background import background
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


def test_mlops_up_stops_soon_after_ctrl_c_and_leaves_nothing_behind(synthesized_template, tmp_path) -> None:
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
        _stop_and_check(process, signal.SIGINT, written, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.last  # it stops the session's local cloud: the end-to-end tests' last
def test_the_local_cloud_stops_soon_after_sigterm_with_runs_in_flight(local_cloud, aws) -> None:
    assert background.cloud is not None and background.cloud.process is not None
    process = background.cloud.process
    for name in ("a", "b"):  # uploads for a model with no spec: their pipelines run while it is told to stop
        aws("s3").put_object(Bucket=local_cloud["DataBucketName"], Key=f"datasets/nospec/{name}.csv",
                             Body=csv_bytes(20))
    written = [background.cloud_dir / ".mlops" / "outputs.json", background.cloud_home / "outputs.json"]
    _stop_and_check(process, signal.SIGTERM, written, background.cloud.log)


def _stop_and_check(process: subprocess.Popen[bytes], signum: int, written: list[Path], log: Path) -> None:
    """Signal `mlops up`: it exits cleanly soon, every process it started has ended, no outputs file is left."""
    processes = _descendants(process.pid)
    assert processes, "the fork server runs"
    signalled = time.monotonic()
    process.send_signal(signum)
    try:
        process.wait(timeout=STOPS_WITHIN_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)  # it prints every thread's stack to its log
        time.sleep(1)
        pytest.fail(f"still running {STOPS_WITHIN_S} s after {signal.Signals(signum).name}: "
                    f"{log.read_text(errors='replace')[-12000:]}")
    print(f"mlops up stopped {time.monotonic() - signalled:.2f} s after {signal.Signals(signum).name}")
    assert process.returncode == 0, log.read_text(errors="replace")[-3000:]
    assert [pid for pid in processes if not _gone(pid)] == [], "every process it started has ended"
    assert [path for path in written if path.exists()] == [], "no outputs file claims a running cloud"
    assert "Local cloud stopped." in log.read_text(errors="replace")
