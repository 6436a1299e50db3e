"""StopExecution right after StartExecution: moto's worker reads the definition before it has an environment, and
its program has no state before its first one; a stop then is lost (a 500, or ignored). The local cloud's stop waits
for the program to run."""

import threading
import time
from datetime import UTC, datetime
from unittest import mock

from local import patches


def test_a_stop_before_the_program_runs_waits_for_it():
    worker = mock.Mock(env=None)
    stopped = threading.Event()
    with mock.patch.object(patches, "_moto_worker_stop", side_effect=lambda *a, **k: stopped.set()) as moto_stop:
        stopping = threading.Thread(target=patches._stop_when_running,
                                    args=(worker, datetime.now(UTC), "Stopped", "by a test"))
        stopping.start()
        time.sleep(0.05)
        assert not stopped.is_set()  # no environment yet: nothing to stop
        worker.env = mock.Mock(**{"program_state.return_value": None})  # parsed, not yet in its first state
        time.sleep(0.05)
        assert not stopped.is_set()
        worker.env.program_state.return_value = object()  # running
        stopping.join(timeout=5)
    assert stopped.is_set()
    assert moto_stop.call_args.kwargs == {"stop_date": mock.ANY, "error": "Stopped", "cause": "by a test"}
