"""A worker that stops making progress ends itself, so that a video whose decoder, GPU or file system hangs costs
that video and ``STALL_S`` seconds, not the whole batch (a hung worker never finished and the run waited forever).

The work beats (``beat(key)``, from the extraction pipeline's loop) while it makes progress. The timer is
``faulthandler``'s: it runs in a C thread, so it fires even while the hung call holds the GIL. When no beat came
for the timeout it writes the video's key and every thread's traceback to the chunk's stall note
(``<staged>.stalled``) and ends the process (exit code 1). The runner then reads the note (``read_stall``): the
video named fails with the reason and the chunk's other videos run again (flowprep.runners.slots). Three stalls
in a row with nothing finished between them stop the run (``check_stalls``): a hung GPU or mount, not a video.

Work runs in the driver's process only when one chunk at a time is all there is to do (``--jobs 1``, or a single
video): that is not watched. Chunks side by side in the threads of one process (a Dask worker started with
several threads) each have their own deadline; a stall ends the process, and Dask runs its other chunks again.
"""
from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import IO, Iterator

from flowprep.datasets.listing import shown
from flowprep.errors import FlowprepError

STALL_S = 600.0  # seconds without progress before a worker is stopped: a solver batch or a compile takes far less
_REARM_S = 1.0  # the timer is re-armed at most once a second (each arm starts a C thread), or a tenth of its time
_TIMEOUT_MARK = "Timeout ("  # how faulthandler's dump begins
STALLS_IN_A_ROW = 3  # workers stalled with nothing finished between them: the machine is hung, not a video


@dataclass
class _Watch:
    note: IO[str]
    seconds: float
    key: str = ""
    armed: float = 0.0  # when its last beat re-armed the timer
    deadline: float = float("inf")  # when the timer fires for it (inf: paused)


_WATCHES: dict[int, _Watch] = {}  # by the thread doing the chunk: only its beats count for it
_LOCK = threading.Lock()


def note_path(staged: str) -> str:
    """Where the worker doing the chunk staged at ``staged`` leaves its stall note."""
    return f"{staged}.stalled"


@contextlib.contextmanager
def watching(staged: str, first: str, seconds: float | None) -> Iterator[None]:
    """Watch the block, run by this thread (``seconds``: None or 0, not watched); ``first`` is the key blamed until
    a beat names another. The note is removed when the block ends, however it ends. Chunks run side by side in
    threads of one process (a Dask worker with several threads) are each watched: the one timer of the process
    is armed for the earliest deadline among them, and writes into that chunk's note."""
    me = threading.get_ident()
    with _LOCK:
        mine = bool(seconds) and me not in _WATCHES
        if mine:
            _WATCHES[me] = _Watch(open(note_path(staged), "w", encoding="utf-8"), float(seconds or 0))
    if not mine:
        yield
        return
    try:
        beat(first)
        yield
    finally:
        with _LOCK:
            w = _WATCHES.pop(me)
            _arm()  # for the others, or off
        w.note.close()
        with contextlib.suppress(OSError):
            os.unlink(note_path(staged))


def _arm() -> None:
    """The timer, for the watch whose deadline comes first (under _LOCK); cancelled when none has one."""
    due = min(_WATCHES.values(), key=lambda w: w.deadline, default=None)
    if due is None or due.deadline == float("inf"):
        faulthandler.cancel_dump_traceback_later()
    else:
        faulthandler.dump_traceback_later(max(due.deadline - time.monotonic(), 0.001), exit=True, file=due.note)


def beat(key: str) -> None:
    """Progress on video ``key``: this thread's deadline moves on (a no-op where nothing is watched)."""
    w = _WATCHES.get(threading.get_ident())
    if w is None:
        return
    now = time.monotonic()
    if key != w.key:  # the note's first line names the video that stalls and the timeout (JSON: a newline or a
        w.note.seek(0)  # byte that is not UTF-8 in a name stays on the line; the timer's own figure is the time
        w.note.truncate()  # left when another thread armed it)
        w.note.write(json.dumps([key, w.seconds]) + "\n")
        w.note.flush()
        w.key = key
    elif now - w.armed < min(_REARM_S, w.seconds / 10):
        return
    with _LOCK:
        w.armed, w.deadline = now, now + w.seconds
        _arm()


def pause() -> None:
    """The work left is not the videos' (closing the shard, its fsync and rename, dropping dead space): this
    thread's deadline is lifted, so that a slow disk at the end of a chunk does not fail its last video. A no-op
    where nothing is watched."""
    w = _WATCHES.get(threading.get_ident())
    if w is not None:
        with _LOCK:
            w.key, w.armed, w.deadline = "", float("inf"), float("inf")  # a beat after this sets one again
            _arm()


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
    line, _, dump = text.partition("\n")
    if not dump.startswith(_TIMEOUT_MARK):
        return None  # the worker died otherwise (killed) while it was still making progress
    if remove:
        with contextlib.suppress(OSError):
            os.unlink(path)
    try:
        key, seconds = json.loads(line)
        seconds = float(seconds)
    except (ValueError, TypeError):  # a note cut short (a full disk): still a stall, of the chunk's first video
        return Stall("", 0.0, dump.partition("\n")[2].rstrip())
    return Stall(key if isinstance(key, str) else "", seconds, dump.partition("\n")[2].rstrip())


def check_stalls(keys: list[str], seconds: float) -> None:
    """FlowprepError once ``STALLS_IN_A_ROW`` workers in a row stalled (``keys``: their videos) with nothing
    finished between them: a hung GPU, driver or mount fails every video in turn, each after the timeout."""
    if len(keys) >= STALLS_IN_A_ROW:
        raise FlowprepError(f"{len(keys)} workers in a row made no progress for {seconds:g} s (on "
                            f"{', '.join(shown(k) for k in keys[-STALLS_IN_A_ROW:])}) and nothing finished between "
                            "them: the GPU, its driver or the file system looks hung, not a video; fix it and run "
                            "the same command again (the shards finished are kept, those videos are tried again)")
