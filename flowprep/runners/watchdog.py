"""A worker that stops making progress ends itself, so that a video whose decoder, GPU or file system hangs costs
that video and ``STALL_S`` seconds, not the whole batch (a hung worker never finished and the run waited forever).

The work beats (``beat(key)``, from the extraction pipeline's loop) while it makes progress. The timer is
``faulthandler``'s: it runs in a C thread, so it fires even while the hung call holds the GIL. When no beat came
for the timeout it writes the video's key and every thread's traceback to the chunk's stall note
(``<staged>.stalled``) and ends the process (exit code 1). The runner then reads the note (``read_stall``): the
video named fails with the reason and the chunk's other videos run again (flowprep.runners.slots). Three stalls
in a row with nothing finished between them stop the run (``check_stalls``): a hung GPU or mount, not a video.

Work runs in the driver's process only when one chunk at a time is all there is to do (``--jobs 1``, or a single
video): that is not watched.
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
    if key != w.key:  # the note's first line names the video that stalls (JSON: a newline or a byte that is not
        w.note.seek(0)  # UTF-8 in a name stays on the line)
        w.note.truncate()
        w.note.write(json.dumps(key) + "\n")
        w.note.flush()
        w.key = key
    elif now - w.armed < min(_REARM_S, w.seconds / 10):
        return
    w.armed = now
    faulthandler.dump_traceback_later(w.seconds, exit=True, file=w.note)


def pause() -> None:
    """The work left is not the videos' (closing the shard, its fsync and rename, dropping dead space): the timer
    stops, so that a slow disk at the end of a chunk does not fail its last video. A no-op where nothing is
    watched."""
    w = _CURRENT
    if w is not None and w.thread == threading.get_ident():
        faulthandler.cancel_dump_traceback_later()
        w.key, w.armed = "", float("inf")  # a beat after this arms it again


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
        key = json.loads(line)
        h, m, s = (float(x) for x in dump[len(_TIMEOUT_MARK):].split(")", 1)[0].split(":"))
    except ValueError:  # a note cut short (a full disk): still a stall, of the chunk's first video
        return Stall("", 0.0, dump.partition("\n")[2].rstrip())
    return Stall(key if isinstance(key, str) else "", h * 3600 + m * 60 + s, dump.partition("\n")[2].rstrip())


def check_stalls(keys: list[str], seconds: float) -> None:
    """FlowprepError once ``STALLS_IN_A_ROW`` workers in a row stalled (``keys``: their videos) with nothing
    finished between them: a hung GPU, driver or mount fails every video in turn, each after the timeout."""
    if len(keys) >= STALLS_IN_A_ROW:
        raise FlowprepError(f"{len(keys)} workers in a row made no progress for {seconds:g} s (on "
                            f"{', '.join(shown(k) for k in keys[-STALLS_IN_A_ROW:])}) and nothing finished between "
                            "them: the GPU, its driver or the file system looks hung, not a video; fix it and run "
                            "the same command again (the shards finished are kept, those videos are tried again)")
