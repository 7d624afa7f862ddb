"""A worker that stops making progress ends itself, so that a video whose decoder, GPU or file system hangs costs
that video and ``STALL_S`` seconds, not the whole batch (a hung worker never finished and the run waited forever).

The work beats (``beat(key)``, from the extraction pipeline's loop) while it makes progress. The timer is
``faulthandler``'s: it runs in a C thread, so it fires even while the hung call holds the GIL. When no beat came
for the timeout it writes the video's key and every thread's traceback to the chunk's stall note
(``<staged>.stalled``) and ends the process (exit code 1). The runner then reads the note (``read_stall``): the
video named fails with the reason, the chunk's other videos run again, and the chunks that shared the pool are
not suspected of anything (flowprep.runners.local).

Work runs in this process only when one chunk at a time is all there is to do (``--jobs 1``): that is not watched.
"""
from __future__ import annotations

import contextlib
import faulthandler
import os
import threading
import time
from dataclasses import dataclass
from typing import IO, Iterator

STALL_S = 600.0  # seconds without progress before a worker is stopped: a solver batch or a compile takes far less
_REARM_S = 1.0  # the timer is re-armed at most once a second (each arm starts a C thread), or a tenth of its time
_TIMEOUT_MARK = "Timeout ("  # how faulthandler's dump begins


@dataclass
class _Watch:
    note: IO[str]
    seconds: float
    thread: int  # the thread doing the chunk: only its beats count
    key: str = ""
    armed: float = 0.0


_CURRENT: _Watch | None = None
_LOCK = threading.Lock()


def note_path(staged: str) -> str:
    """Where the worker doing the chunk staged at ``staged`` leaves its stall note."""
    return f"{staged}.stalled"


@contextlib.contextmanager
def watching(staged: str, first: str, seconds: float | None) -> Iterator[None]:
    """Arm the timer for the block (``seconds``: None or 0, no timer); ``first`` is the key blamed until a beat
    names another. The note is removed when the block ends, however it ends. The timer is one per process: a
    chunk that starts while another is watched here (a Dask worker with several threads) is not watched."""
    global _CURRENT
    with _LOCK:
        mine = bool(seconds) and _CURRENT is None
        if mine:
            _CURRENT = _Watch(open(note_path(staged), "w", encoding="utf-8"), float(seconds or 0),
                              threading.get_ident())
    if not mine:
        yield
        return
    try:
        beat(first)
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        with _LOCK:
            _CURRENT.note.close()
            _CURRENT = None
        with contextlib.suppress(OSError):
            os.unlink(note_path(staged))


def beat(key: str) -> None:
    """Progress on video ``key``: the timer starts again (a no-op where nothing is watched)."""
    w = _CURRENT
    if w is None or w.thread != threading.get_ident():
        return
    now = time.monotonic()
    if key != w.key:  # the note's first line names the video that stalls
        w.note.seek(0)
        w.note.truncate()
        w.note.write(f"{key}\n")
        w.note.flush()
        w.key = key
    elif now - w.armed < min(_REARM_S, w.seconds / 10):
        return
    w.armed = now
    faulthandler.dump_traceback_later(w.seconds, exit=True, file=w.note)


@dataclass(frozen=True)
class Stall:
    """What a worker's stall note says: the video it stalled on, the timeout, and where every thread was."""

    key: str
    seconds: float
    threads: str


def read_stall(staged: str, remove: bool = True) -> Stall | None:
    """The stall note left by the worker of the chunk at ``staged``, if its timer fired (else None)."""
    path = note_path(staged)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    key, _, dump = text.partition("\n")
    if not dump.startswith(_TIMEOUT_MARK):
        return None  # the worker died otherwise (killed) while it was still making progress
    if remove:
        with contextlib.suppress(OSError):
            os.unlink(path)
    h, m, s = (float(x) for x in dump[len(_TIMEOUT_MARK):].split(")", 1)[0].split(":"))
    return Stall(key, h * 3600 + m * 60 + s, dump.partition("\n")[2].rstrip())
