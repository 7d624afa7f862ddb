"""Reads of shards that may be damaged, run in a child process: a damaged file that sends HDF5 into an endless
loop, or crashes it, costs that shard, not the command.

A zeroed block inside a global heap collection (where a shard keeps its variable-length strings: settings,
sources, digests) makes HDF5 loop for ever in ``H5HG__cache_heap_deserialize``. The loop holds the GIL, so
neither a thread nor a Python signal handler can end it: ``flowprep verify`` on such a shard had run for ever and
ignored Ctrl-C and SIGTERM (only SIGKILL ended it), when it is the command meant to find that damage.

Here a worker process does the reads, and its work beats (``beat``: each video checked, each piece of about
2 MB read); a thread could not tell, since some of those endless loops let go of the GIL. A worker silent for
``stall_s`` while it spins (its CPU time: one waiting for storage or stopped with its job is waited for) is stuck in
one call, where a piece takes milliseconds: it is killed, and the call raises ``Stalled``. So does a worker that
crashes twice on the call (a crash inside HDF5). The parent waits in ``Connection.poll``, where Ctrl-C and SIGTERM
still stop it.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from flowprep.errors import FlowprepError, ShardError

STALL_S = 60.0  # seconds one HDF5 call may hold the worker before its shard is called damaged
START_S = 300.0  # seconds a worker may take to start (imports on a loaded machine or a slow file system)
_BEATS_PER_STALL = 6
_BEAT, _READY = "beat", "ready"


class Stalled(Exception):
    """The worker spun without progress for ``stall_s`` (one HDF5 call that never returns) or crashed
    (``crashed``); ``reason`` says which, in words for a shard's damage."""

    def __init__(self, reason: str, crashed: bool = False):
        super().__init__(reason)
        self.reason, self.crashed = reason, crashed


_beat: list = []  # in a worker: the function that sends its beats (rate-limited)


def beat() -> None:
    """Progress, from reads that may take long (a piece of a long video's JPEGs, a video): a worker that beats is
    not stalled. A no-op outside a worker."""
    if _beat:
        _beat[0]()


def _die_with_parent(parent: int) -> None:
    # a worker stuck in HDF5 cannot notice its parent's death (a `kill -9` of verify): on Linux the kernel ends it
    # when its parent does, instead of leaving it to spin at 100% for ever
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before the line above (not `== 1`: in a container it may be 1)
            os._exit(1)


_PR_SET_PDEATHSIG = 1


def _serve(conn, parent: int) -> None:
    # the worker: runs each (function, args, beat_s) it receives and sends back ("ok", result) or ("raised", error),
    # beating at most every beat_s while it runs
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a job's stop is the parent's to handle (Slurm
        signal.signal(sig, signal.SIG_IGN)                     # signals every process): it kills this one then
    _die_with_parent(parent)
    last, pace = [time.monotonic()], [STALL_S / _BEATS_PER_STALL]

    def send_beat() -> None:
        if time.monotonic() - last[0] >= pace[0]:
            conn.send(_BEAT)
            last[0] = time.monotonic()

    _beat[:] = [send_beat]
    conn.send(_READY)
    while True:
        try:
            raw = conn.recv_bytes()
        except EOFError:  # the parent is gone
            return
        last[0] = time.monotonic()
        try:
            job = pickle.loads(raw)
            if job is None:
                return
            pace[0] = job[2]
            out = ("ok", job[0](*job[1]))
        except Exception as e:  # noqa: BLE001 - sent back, raised again in the parent
            out = ("raised", e)
        data = pickle.dumps(out)
        if out[0] == "raised":
            try:  # an error that pickles but will not unpickle (a custom __init__) broke the parent
                pickle.loads(data)
            except Exception as e:  # noqa: BLE001 - said in words instead
                data = pickle.dumps(("raised", RuntimeError(f"{type(out[1]).__name__}: {out[1]} ({e})")))
        conn.send_bytes(data)


class Isolated:
    """A worker process for calls that may hang in HDF5: ``with Isolated() as iso: iso.call(fn, *args)``.
    ``fn`` must be a module-level function (it is pickled). The worker starts at the first call (its module
    imported before the clock runs), and again after one stalled or died; it belongs to the thread that started it
    (PR_SET_PDEATHSIG follows that thread). Off POSIX the calls run in this process, unguarded."""

    def __init__(self, stall_s: float | None = None):
        stall_s = STALL_S if stall_s is None else stall_s
        if not (stall_s == 0 or 0 < stall_s < float("inf")):  # -1 called every shard damaged; inf overflowed
            raise ValueError(f"a stall timeout of {stall_s} seconds: give 0 (wait for ever) or a finite time above 0")
        self.stall_s = stall_s
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None

    def __enter__(self) -> "Isolated":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` in the worker: its result, or its exception raised here.

        Raises:
            Stalled: the worker spun without progress for ``stall_s`` seconds (an endless loop in HDF5), or crashed
                twice on it (it is stopped; the next call starts another).
            FlowprepError: no worker could start, or one was killed by a signal that no damage sends.
        """
        if os.name != "posix":
            return fn(*args)
        for attempt in (1, 2):
            try:
                kind, value = self._round_trip(fn, args)
            except Stalled as e:
                if attempt == 2 or not e.crashed:
                    raise
                continue  # a crash once may be the machine's (memory): the shard is damaged if it crashes again
            if kind == "raised":
                raise value  # the worker's own error: it stays, healthy
            return value

    def shard_call(self, path: str | os.PathLike, fn: Callable, *args: Any) -> Any:
        """``call(fn, *args)`` reading shard ``path``: its result, or a ShardError of ``path`` when the reads hung
        HDF5 or crashed it (returned, not raised, like the ShardError ``fn`` may return of its own)."""
        try:
            return self.call(fn, *args)
        except Stalled as e:
            return ShardError(str(path), e.reason)

    def _round_trip(self, fn: Callable, args: tuple) -> tuple[str, Any]:
        try:
            if self._proc is not None and self._proc.poll() is not None:
                self.close(kill=True)  # it died while idle (killed; its thread ended): another one
            if self._proc is None:
                self._proc, self._conn = _take_idle() or self._start(fn.__module__)
            self._conn.send((fn, args, (self.stall_s or STALL_S) / _BEATS_PER_STALL))
            return self._result()
        except BaseException:  # Ctrl-C, SIGTERM, a stall, a lost pipe: no worker left behind mid-call
            self.close(kill=True)
            raise

    def _result(self) -> tuple[str, Any]:
        cpu = _cpu_seconds(self._proc.pid)
        while True:
            if not self._conn.poll(self.stall_s or None):  # 0: wait for ever (still stopped by Ctrl-C)
                now = _cpu_seconds(self._proc.pid)
                if now is None or cpu is None or now - cpu >= _SPIN_SHARE * self.stall_s:
                    raise Stalled(f"reading it made HDF5 hang (no progress for {self.stall_s:g} s: a damaged "
                                  "structure in the file)")
                cpu = now  # silent but idle: waiting for storage, or the job was suspended, not an endless loop
                continue
            try:
                msg = self._conn.recv()
            except EOFError:
                raise self._died() from None
            if msg != _BEAT:
                return msg
            cpu = _cpu_seconds(self._proc.pid)

    def _died(self) -> Exception:
        # why the worker ended mid-call: a crash is the file's doing, a kill (the OOM killer, a user) is not
        try:
            code = self._proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and -code in _CRASHES:
            return Stalled(f"reading it crashed HDF5 ({signal.Signals(-code).name}: a damaged structure in the "
                           "file)", crashed=True)
        return FlowprepError(f"the process reading shards ended unexpectedly (exit code {code}; killed?): run "
                             "the same command again")

    def _start(self, module: str) -> tuple[subprocess.Popen, Connection]:
        # a Python of its own with a socket of a pair, not multiprocessing: no import of the caller's main module (a
        # script without ``if __name__ == "__main__"`` started workers without end); this flowprep first, then the
        # caller's path made absolute (-P: not the worker's cwd, where another checkout may lie)
        mine, theirs = socket.socketpair()
        path = [str(Path(__file__).resolve().parents[2]), *(os.path.abspath(p or os.curdir) for p in sys.path)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(path))}
        try:
            with mine, theirs:
                self._proc = subprocess.Popen(
                    [sys.executable, "-P", "-c", _WORKER, str(theirs.fileno()), str(os.getpid()), module],
                    pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, start_new_session=True)  # Ctrl-C is the parent's to handle
                self._conn = Connection(os.dup(mine.fileno()))
            if not self._conn.poll(START_S):
                raise OSError(f"it did not start within {START_S:g} s")
            self._conn.recv()
            return self._proc, self._conn
        except (OSError, EOFError) as e:  # not the shard's fault: no shard may be called damaged for it
            self.close(kill=True)
            why = "it ended at its start: see its error above" if isinstance(e, EOFError) else str(e)
            raise FlowprepError(f"cannot start a process to read shards in ({why}); run the same command again") from e

    def close(self, kill: bool = False) -> None:
        """Stop the worker: at once with ``kill``; else it is kept for this process's next ``Isolated`` (a Python
        started for each verify, info and resume cost the test suite minutes), or stopped when one is kept."""
        proc, conn, self._proc, self._conn = self._proc, self._conn, None, None
        if proc is None or (not kill and proc.poll() is None and _park(proc, conn)):
            return
        if not kill and conn is not None:
            with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
                conn.send(None)
                proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if conn is not None:
            conn.close()


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds process ``pid`` has used (Linux's /proc; None elsewhere): an endless loop spins, a process
    waiting for a hung mount or stopped with its job (SIGSTOP, a suspended Slurm job) does not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, ValueError, IndexError):
        return None


_SPIN_SHARE = 0.25  # of the silent time spent on a CPU: a worker that used less is waiting, not looping
_CRASHES = {getattr(signal, n) for n in ("SIGSEGV", "SIGBUS", "SIGABRT", "SIGFPE", "SIGILL") if hasattr(signal, n)}

_WORKER = ("import importlib, sys; from multiprocessing.connection import Connection; "
           "from flowprep.store.isolated import _serve; importlib.import_module(sys.argv[3]); "
           "_serve(Connection(int(sys.argv[1])), int(sys.argv[2]))")
_IDLE: list[tuple[int, subprocess.Popen, Connection]] = []  # (owner pid, worker, pipe): one kept between uses
_IDLE_LOCK = threading.Lock()


def _take_idle() -> tuple[subprocess.Popen, Connection] | None:
    """The worker kept by this process, alive (not one a fork inherited from its parent: the pipe is the parent's)."""
    with _IDLE_LOCK:
        while _IDLE:
            pid, proc, conn = _IDLE.pop()
            if pid == os.getpid() and proc.poll() is None:
                return proc, conn
            if pid == os.getpid():
                conn.close()
    return None


def _park(proc: subprocess.Popen, conn: Connection) -> bool:
    """Keep an idle worker for the next use; False when one is kept already."""
    with _IDLE_LOCK:
        if any(pid == os.getpid() for pid, _, _ in _IDLE):
            return False
        _IDLE.append((os.getpid(), proc, conn))
        return True


@atexit.register
def _stop_idle() -> None:
    # at exit, the worker kept: its own EOF would end it too, this is at once
    with _IDLE_LOCK:
        for pid, proc, conn in _IDLE:
            if pid == os.getpid():
                with contextlib.suppress(OSError):
                    proc.kill()
                    proc.wait()
                    conn.close()
        _IDLE.clear()
