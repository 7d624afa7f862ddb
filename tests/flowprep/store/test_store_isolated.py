"""The worker process that reads shards which may hang or crash HDF5 (flowprep.store.isolated): a call that hangs
or kills its worker raises Stalled and the next call gets a new worker; one that beats may take as long as it
needs; results and flowprep's errors come back whole."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flowprep
from flowprep.errors import FlowprepError, ShardError, VideoDecodeError
from flowprep.store.isolated import Isolated, Stalled, beat


def _pid() -> int:
    return os.getpid()


def _hang() -> None:
    time.sleep(600)


def _crash(sig: int = signal.SIGSEGV) -> None:
    os.kill(os.getpid(), sig)


def _slow_but_beating(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
        beat()
    return "done"


def _raise(e: Exception) -> None:
    raise e


def test_a_call_that_hangs_is_stopped_and_the_next_call_gets_a_new_worker():
    with Isolated(stall_s=1.5) as iso:
        first = iso.call(_pid)
        assert first != os.getpid()
        start = time.monotonic()
        with pytest.raises(Stalled, match="hang"):
            iso.call(_hang)
        assert time.monotonic() - start < 30
        second = iso.call(_pid)
    assert second not in (first, os.getpid())
    with pytest.raises(ProcessLookupError):  # the hung worker is gone, not left to spin
        os.kill(first, 0)


def test_a_worker_that_crashes_is_named_and_one_killed_is_no_shards_fault():
    with Isolated(stall_s=30) as iso:
        with pytest.raises(Stalled, match=r"crashed HDF5 \(SIGSEGV"):
            iso.call(_crash)
        assert iso.call(_slow_but_beating, 0) == "done"
        with pytest.raises(FlowprepError, match="ended unexpectedly .*run the same command again") as e:
            iso.call(_crash, signal.SIGKILL)  # the OOM killer, say: a shard called damaged would be moved aside
        assert not isinstance(e.value, Stalled)


def test_work_that_beats_may_take_longer_than_the_stall_limit():
    with Isolated(stall_s=1.0) as iso:
        assert iso.call(_slow_but_beating, 3.0) == "done"


def test_flowprep_errors_come_back_whole():
    with Isolated() as iso:
        with pytest.raises(ShardError) as e:
            iso.call(_raise, ShardError("/x/shard-00000.h5", "cannot be read", video="a/b"))
        assert (e.value.path, e.value.reason, e.value.video) == ("/x/shard-00000.h5", "cannot be read", "a/b")
        with pytest.raises(VideoDecodeError) as d:
            iso.call(_raise, VideoDecodeError("/v.avi", "no frames"))
        assert (d.value.path, d.value.reason) == ("/v.avi", "no frames")


def test_a_script_without_a_main_guard_can_use_it(tmp_path):
    """multiprocessing's spawn imported the caller's main module in the worker: a script without
    ``if __name__ == "__main__"`` started workers without end, and verify said it could not start one."""
    script = tmp_path / "script.py"
    script.write_text("import os\nfrom flowprep.store.isolated import Isolated\n"
                      "with Isolated() as iso:\n    print(iso.call(os.getpid) != os.getpid())\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(flowprep.__file__).parents[1])})
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr
