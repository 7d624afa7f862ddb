"""Ctrl-C and a scheduler's SIGTERM (Slurm's warning before a kill) stop a command the same way: as a
KeyboardInterrupt, remembered. A KeyboardInterrupt that lands inside a ``__del__`` or a weakref callback (a
DataLoader's worker bookkeeping) is printed by Python and dropped, and the run went on for another hundred epochs;
long loops call ``check`` where stopping is safe, which raises it again."""
from __future__ import annotations

import signal
import sys
import threading

_pending = threading.Event()
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise(signum, frame) -> None:
    _pending.set()
    raise KeyboardInterrupt


def _unraisable(u, default=sys.unraisablehook) -> None:
    # a dropped interrupt is remembered: no "Exception ignored ... Traceback" on the terminal for it
    if not isinstance(u.exc_value, KeyboardInterrupt):
        default(u)


def _remember(signum, frame) -> None:
    _pending.set()


def install(defer: bool = False) -> dict | None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, remembered for ``check`` (``defer``: only remembered, for while
    native code runs that a KeyboardInterrupt raised inside would abort: torch's import). Returns the handlers
    replaced, for ``restore`` (None off the main thread: none is set there)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    _pending.clear()
    old = {s: signal.signal(s, _remember if defer else _raise) for s in SIGNALS}
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


def pending() -> bool:
    """Whether a signal came since ``install``."""
    return _pending.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if a signal came (and was dropped where it landed)."""
    if pending():
        raise KeyboardInterrupt
