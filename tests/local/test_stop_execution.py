"""StopExecution right after StartExecution: moto's worker reads the definition before it has an environment to
stop; the local cloud's stop waits for it instead of failing with a 500."""

import threading
import time
from datetime import UTC, datetime
from unittest import mock

from local import patches


def test_a_stop_before_the_interpreter_runs_waits_for_it():
    worker = mock.Mock(env=None)
    stopped = threading.Event()
    with mock.patch.object(patches, "_moto_worker_stop", side_effect=lambda *a, **k: stopped.set()) as moto_stop:
        stopping = threading.Thread(target=patches._stop_when_running,
                                    args=(worker, datetime.now(UTC), "Stopped", "by a test"))
        stopping.start()
        time.sleep(0.05)
        assert not stopped.is_set()  # no environment yet: nothing to stop
        worker.env = mock.Mock()  # the interpreter has parsed the definition
        stopping.join(timeout=5)
    assert stopped.is_set()
    assert moto_stop.call_args.kwargs == {"stop_date": mock.ANY, "error": "Stopped", "cause": "by a test"}
