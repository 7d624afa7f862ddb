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
from flowprep.codecs.video import TruncatedStream
from flowprep.errors import FlowprepError, ShardError, VideoDecodeError
from flowprep.store.isolated import Isolated, Stalled, beat


def _pid() -> int:
    return os.getpid()


def _hang() -> None:
    while True:  # spins, as HDF5's endless loop does
        pass


def _wait(seconds: float) -> str:
    time.sleep(seconds)  # silent and idle: a hung mount, a suspended job
    return "waited"


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


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to tell a spinning worker")
def test_a_worker_silent_but_idle_is_waited_for():
    """Waiting for a hung mount, or stopped with a suspended job, is not HDF5's endless loop, which spins: a healthy
    shard was called damaged."""
    with Isolated(stall_s=1.0) as iso:
        assert iso.call(_wait, 3.0) == "waited"


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan")])
def test_a_stall_limit_below_0_or_not_finite_is_refused(bad):
    with pytest.raises(ValueError, match="give 0 .* or a finite time above 0"):
        Isolated(stall_s=bad)


def test_flowprep_errors_come_back_whole():
    with Isolated() as iso:
        with pytest.raises(ShardError) as e:
            iso.call(_raise, ShardError("/x/shard-00000.h5", "cannot be read", video="a/b"))
        assert (e.value.path, e.value.reason, e.value.video) == ("/x/shard-00000.h5", "cannot be read", "a/b")
        with pytest.raises(VideoDecodeError) as d:
            iso.call(_raise, VideoDecodeError("/v.avi", "no frames"))
        assert (d.value.path, d.value.reason) == ("/v.avi", "no frames")
        with pytest.raises(TruncatedStream) as t:
            iso.call(_raise, TruncatedStream("/v.avi", 3, 10))
        assert (t.value.path, t.value.decoded, t.value.announced) == ("/v.avi", 3, 10)
        first = iso.call(os.getpid)
        with pytest.raises(RuntimeError, match="_TwoArgs: a b"):  # it pickles, and would not unpickle here
            iso.call(_raise_two_args)
        assert iso.call(os.getpid) == first  # an error raised by the work leaves the worker as it was


class _TwoArgs(Exception):
    def __init__(self, a: str, b: str):
        super().__init__(f"{a} {b}")


def _raise_two_args() -> None:
    raise _TwoArgs("a", "b")


def test_a_script_without_a_main_guard_can_use_it(tmp_path):
    """multiprocessing's spawn imported the caller's main module in the worker: a script without
    ``if __name__ == "__main__"`` started workers without end, and verify said it could not start one."""
    script = tmp_path / "script.py"
    script.write_text("import os\nfrom flowprep.store.isolated import Isolated\n"
                      "with Isolated() as iso:\n    print(iso.call(os.getpid) != os.getpid())\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(flowprep.__file__).parents[1])})
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr


def test_a_worker_is_kept_for_the_next_use_in_this_process_only():
    """A Python started for each verify, info and resume cost the suite minutes; a fork (a DataLoader worker) must
    not take its parent's, whose pipe the parent still reads."""
    with Isolated() as a:
        first = a.call(os.getpid)
    with Isolated() as b:
        assert b.call(os.getpid) == first
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            with Isolated() as c:
                os.write(w, str(c.call(os.getpid)).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    assert int(os.read(r, 64)) not in (first, 0)
    os.close(r)
    with Isolated() as d:
        assert d.call(os.getpid) == first  # still the parent's, untouched


def test_a_signal_to_every_process_of_a_job_is_left_to_the_parent():
    """Slurm's scancel signals every process of the job: the worker died first, and the parent reported a worker
    that 'ended unexpectedly' instead of stopping as the signal asked. The parent stops the worker itself."""
    with Isolated(stall_s=30) as iso:
        pid = iso.call(os.getpid)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            os.kill(pid, sig)
        assert iso.call(os.getpid) == pid
