"""What every worker process does first: die with the driver, leave Ctrl-C to it, own one core.

Workers are expendable: they ignore Ctrl-C (the driver stops them) and, on Linux, ask the kernel to SIGKILL
them when the driver dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the driver leaves no orphan still
writing into the output folder. Work that runs in the driver's own process caps its threads only while it
runs (``capped_threads``): a library call leaves the caller's settings as it found them.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Iterator

_PREPARED = False


def die_with_parent(parent: int) -> None:
    """End this process as soon as ``parent`` is gone (kernel signal on Linux, a watcher thread elsewhere)."""
    if sys.platform.startswith("linux"):
        import ctypes
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        else:
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="flowprep-parent-watch").start()


def set_threads(n: int) -> None:
    """Cap OpenCV, OpenMP and (if already imported) torch to ``n`` threads in this process."""
    import cv2
    cv2.setNumThreads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)  # read by torch when it is imported later
    torch = sys.modules.get("torch")  # importing torch here would cost every worker seconds for nothing
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def prepare_worker(parent: int | None, threads: int | None = 1) -> None:
    """Once per worker process: die with the driver ``parent`` and leave Ctrl-C to it; cap threads at
    ``threads`` (None: leave them, e.g. a GPU worker that decodes with every host thread)."""
    global _PREPARED
    if _PREPARED:
        return
    _PREPARED = True
    if parent is not None:
        die_with_parent(parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None:
        set_threads(threads)


@contextlib.contextmanager
def capped_threads(n: int = 1) -> Iterator[None]:
    """Cap threads at ``n`` (as a worker does) for the block, then restore what the process had.

    OpenCV's and the environment's settings come back exactly, and torch's when it was imported before. torch
    first imported inside the block read the cap at import; it is given the CPUs this process may use, which
    is torch's own default except on machines with hyper-threading (where torch counts physical cores).
    """
    import cv2
    torch = sys.modules.get("torch")
    before = (cv2.getNumThreads(), os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads() if torch else None)
    set_threads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before[0])
        if before[1] is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before[1]
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(before[2] if before[2] is not None else _usable_cpus())


def _usable_cpus() -> int:
    """The CPUs this process may use: its affinity where the OS has one (Linux), else all of them (macOS)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
