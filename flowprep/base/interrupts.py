"""Ctrl-C, a scheduler's SIGTERM (Slurm's warning before a kill), SIGHUP (an ssh session that dropped) and
SIGUSR1 (Slurm's ``--signal=USR1@90`` before a preemption) stop a command the same way: as a KeyboardInterrupt,
remembered, and the command ends with the shell's status for the signal (``exit_status``: 130 for Ctrl-C, 143 for
SIGTERM), so that a requeue script tells a stop from a failure. SIGHUP and SIGUSR1 had ended a run at once, with
no report and its staging left behind. A KeyboardInterrupt that lands inside a ``__del__`` or a weakref callback (a
DataLoader's worker bookkeeping) is printed by Python and dropped, and the run went on for another hundred epochs;
long loops call ``check`` where stopping is safe, which raises it again."""
from __future__ import annotations

import signal
import sys
import threading
import time

_pending = threading.Event()
_first: list[int] = []  # the signal that came first since ``install``
_at: list[float] = [0.0]  # when (time.monotonic)
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)


def _raise(signum, frame) -> None:
    # the same signal again within REPEAT_S is one stop delivered twice (Slurm signals every process of a step,
    # and run_pipeline.sh passes its own on): raised again, it broke the clean stop the first one began
    again = _pending.is_set() and _first == [signum] and time.monotonic() - _at[0] < REPEAT_S
    _remember(signum, frame)
    if not again:
        raise KeyboardInterrupt


REPEAT_S = 2.0  # seconds within which a second identical signal is the first one again


def _unraisable(u, default=sys.unraisablehook) -> None:
    # a dropped interrupt is remembered: no "Exception ignored ... Traceback" on the terminal for it, nor, once a
    # signal came, for the DataLoader workers that the same signal (sent to the job's process group) ended
    if isinstance(u.exc_value, KeyboardInterrupt):
        return
    if pending() and isinstance(u.exc_value, RuntimeError) and "DataLoader worker" in str(u.exc_value):
        return
    default(u)


def _remember(signum, frame) -> None:
    if not _pending.is_set():
        _first[:], _at[:] = [signum], [time.monotonic()]
    _pending.set()


def exit_status() -> int:
    """The exit status of a command a signal stopped: 128 + its number (130 for Ctrl-C or a KeyboardInterrupt
    that no handler of ours saw, 143 SIGTERM, 129 SIGHUP, 138 SIGUSR1), as a shell reports a process it killed."""
    return 128 + int(_first[0] if _first else signal.SIGINT)


def stopped_by() -> str:
    """The signal that stopped the command, as a run's report says it: "SIGTERM (exit status 143)"."""
    status = exit_status()
    return f"{signal.Signals(status - 128).name} (exit status {status})"


def install(defer: bool = False) -> dict | None:
    """SIGNALS raise KeyboardInterrupt, remembered for ``check`` (``defer``: only remembered, for while
    native code runs that a KeyboardInterrupt raised inside would abort: torch's import). Returns the handlers
    replaced, for ``restore`` (None off the main thread: none is set there)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    _pending.clear()
    _first.clear()
    # a SIGHUP or SIGUSR1 ignored from the start is the user's choice (`nohup flowprep extract ... &`): kept
    chosen = [s for s in SIGNALS if s in (signal.SIGINT, signal.SIGTERM) or signal.getsignal(s) != signal.SIG_IGN]
    old = {s: signal.signal(s, _remember if defer else _raise) for s in chosen}
    old["unraisablehook"], sys.unraisablehook = sys.unraisablehook, _unraisable
    return old


def handled() -> None:
    """Forget CPython's mark of an unhandled KeyboardInterrupt. One raised inside an ``exec`` of a string (the
    dataclasses that torch's imports build) sets it even when the caller catches it, and at exit CPython then
    kills the process with SIGINT (-2) instead of exiting with the status chosen (130); an ``exec`` that ends
    normally clears it."""
    exec("")  # noqa: S102 (an empty program: the side effect is the point)


def restore(old: dict | None) -> None:
    """Put back the handlers ``install`` replaced and forget any signal (and CPython's mark: ``handled``)."""
    handled()
    old = dict(old or {})
    if "unraisablehook" in old:
        sys.unraisablehook = old.pop("unraisablehook")
    for s, handler in old.items():
        signal.signal(s, handler)
    _pending.clear()
    _first.clear()


def pending() -> bool:
    """Whether a signal came since ``install``."""
    return _pending.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if a signal came (and was dropped where it landed)."""
    if pending():
        raise KeyboardInterrupt
