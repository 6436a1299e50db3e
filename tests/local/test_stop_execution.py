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


def test_a_stopped_program_takes_no_next_state_and_ends_aborted():
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramRunning, ProgramStopped

    env = Environment.__new__(Environment)  # only its program state matters here
    env._state_mutex = threading.RLock()
    env._frames = []
    env.program_state_event = threading.Event()
    env._program_state = ProgramRunning()
    patches._next_state_unless_stopped(env, "RegisterDataset")
    assert env.next_state_name == "RegisterDataset"
    env.set_stop(stop_date=datetime.now(UTC), cause="by a test", error="Stopped")
    patches._next_state_unless_stopped(env, "RecordFailure")  # a Catch after the stop: moto raised RuntimeError
    assert isinstance(env.program_state(), ProgramStopped)


def test_an_error_after_the_stop_leaves_the_execution_stopped():
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramError, ProgramRunning, ProgramStopped

    env = Environment.__new__(Environment)
    env._state_mutex = threading.RLock()
    env._frames = []
    env.program_state_event = threading.Event()
    env._program_state = ProgramRunning()
    patches._error_unless_stopped(env, {"error": "States.Runtime", "cause": "before the stop"})
    assert isinstance(env.program_state(), ProgramError)
    env._program_state = ProgramRunning()
    env.set_stop(stop_date=datetime.now(UTC), cause="by a test", error="Stopped")
    patches._error_unless_stopped(env, {"error": "States.Runtime", "cause": "IndexError: the Task's output"})
    assert isinstance(env.program_state(), ProgramStopped)
