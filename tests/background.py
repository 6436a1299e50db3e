"""The slow processes some tests need, started as soon as the tests are collected.

The CDK CLI's synth (`npx cdk synth` from cdk.json: the template the infrastructure, CLI and
end-to-end tests read), cfn-lint and cdk-nag's control on its output, and the local cloud
(`mlops up` on that template, in its own process, as a user starts it). The tests that need
them run last (see tests/conftest.py), so they boot on the second core while the unit tests
run on the first.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK = "MlopsPlatform"
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Command:
    """A command run in the background, its output in a log file; started once `after` has succeeded."""

    def __init__(self, args: list[str], log: Path, *, cwd: Path = ROOT, env: dict[str, str] | None = None,
                 after: "Command | None" = None):
        self.args, self.log, self.cwd, self.after = args, log, cwd, after
        self.env = env if env is not None else dict(os.environ)
        self.process: subprocess.Popen[bytes] | None = None
        self.failure: str | None = None
        self._launched = threading.Event()
        self._lock = threading.Lock()  # a stop and a launch never cross: a stopped command starts nothing
        threading.Thread(target=self._launch, daemon=True, name=f"background-{log.stem}").start()

    def _launch(self) -> None:
        try:
            if self.after is not None and self.after.wait() != 0:
                self.failure = f"{' '.join(self.after.args[:3])} failed: {self.after.output()[-3000:]}"
                return
            # A file, not a pipe: a pipe nobody reads fills up and blocks the process.
            with self._lock, self.log.open("wb") as out:
                if self.failure is None:
                    # A session of its own: a stop reaches the children it starts (npx starts node, node python).
                    self.process = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=out,
                                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            self._launched.set()

    def wait(self) -> int:
        """The exit status (-1 when it could not start because what it runs after failed)."""
        self._launched.wait(TIMEOUT_S)
        if self.process is None:
            return -1
        return self.process.wait(timeout=TIMEOUT_S)

    def output(self) -> str:
        return self.failure or (self.log.read_text(errors="replace") if self.log.exists() else "")

    def stop(self) -> None:
        with self._lock:
            if self.process is None:
                self.failure = self.failure or "stopped before it started"
                return
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


class Background:
    """What the collected tests need, started once per session."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mlops-tests-"))
        self.synth: Command | None = None
        self.lint: Command | None = None
        self.nag_control: Command | None = None
        self.cloud: Command | None = None

    @property
    def template(self) -> Path:
        return self.root / "cdk.out" / f"{STACK}.template.json"

    @property
    def cloud_dir(self) -> Path:
        return self.root / "mlops-up"

    @property
    def cloud_home(self) -> Path:
        """The cloud's MLOPS_HOME, where `mlops` run from any directory finds it."""
        return self.root / "mlops-home"

    def start(self, *, synth: bool = False, cloud: bool = False) -> None:
        if (synth or cloud) and self.synth is None:
            npx = shutil.which("npx")
            assert npx, "Node.js/npm are required (make install runs npm ci)"
            env = {**os.environ, "CDK_DISABLE_VERSION_CHECK": "1", "CI": "true"}
            self.synth = Command([npx, "--no-install", "cdk", "synth", "--quiet", "--no-notices",
                                  "-o", str(self.root / "cdk.out")], self.root / "cdk-synth.log", env=env)
            cfn_lint = Path(sys.executable).with_name("cfn-lint")
            self.lint = Command([str(cfn_lint), "--format", "json", str(self.template)], self.root / "cfn-lint.log",
                                after=self.synth)
            self.nag_control = Command([sys.executable, "-m", "tests.infra.nag_control", str(self.root / "control")],
                                       self.root / "nag-control.log")
        if cloud and self.cloud is None:
            self.cloud_dir.mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env["MLOPS_HOME"] = str(self.cloud_home)  # its state directory: not the user's ~/.mlops
            mlops = Path(sys.executable).with_name("mlops")
            self.cloud = Command([str(mlops), "up", "--warm", "--template", str(self.template),
                                  "--aws-port", str(_free_port()),
                                  "--api-port", str(_free_port())], self.cloud_dir / "mlops-up.log",
                                 cwd=self.cloud_dir, env=env, after=self.synth)

    def wait_for_cloud(self) -> Path:
        """The local cloud's outputs file, once it is up (RuntimeError with its log when it does not come up)."""
        assert self.cloud is not None
        outputs = self.cloud_dir / ".mlops" / "outputs.json"
        deadline = time.monotonic() + TIMEOUT_S
        while not outputs.exists():
            process = self.cloud.process
            exited = process is not None and process.poll() is not None
            if self.cloud.failure or exited or time.monotonic() > deadline:
                raise RuntimeError(f"`mlops up` did not start: {self.cloud.output()[-3000:]}")
            time.sleep(0.1)
        return outputs

    def stop(self) -> None:
        for command in (self.cloud, self.synth, self.lint, self.nag_control):
            if command is not None:
                command.stop()
        shutil.rmtree(self.root, ignore_errors=True)


background = Background()
