"""Several GPUs on one machine: one worker process per device, each seeing only its GPU.

``flowprep extract --devices all`` (or ``--devices 0,2``) starts one process per device with
``CUDA_VISIBLE_DEVICES`` set to that device before anything in it touches CUDA, so every worker computes on
"cuda:0" of its own GPU. Chunks go to whichever device is free next (one chunk in flight per device), so a slower
GPU simply does fewer chunks. Device ids are positions in the GPUs this process may use: when
``CUDA_VISIBLE_DEVICES`` is already set (e.g. by Slurm), ``--devices 0,1`` means its first two entries.
"""
from __future__ import annotations

import os
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence, TypeVar

from flowprep.runners import Chunk, Progress, Work, singles
from flowprep.runners.local import after_stall, died, run_chunk
from flowprep.runners.watchdog import check_stalls
from flowprep.runners.worker import prepare_worker
from flowprep.store.record import ChunkResult

T = TypeVar("T")
R = TypeVar("R")


def visible_devices(count: int | None = None) -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else 0..count-1 (count from torch)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    if count is None:
        try:
            import torch
            count = torch.cuda.device_count()
        except ImportError:
            count = 0
    return [str(i) for i in range(count)]


def parse_devices(text: str, visible: list[str]) -> list[str]:
    """``'all'`` or ``'0,1'`` -> the CUDA_VISIBLE_DEVICES value of each worker (one per device).

    Raises:
        ValueError: no GPU is visible, an id is not a visible position, or an id repeats.
    """
    if not visible:
        raise ValueError("devices (--devices) needs CUDA GPUs, but none is visible (torch sees none and "
                         "CUDA_VISIBLE_DEVICES is empty); leave them out to run on CPU cores")
    if text.strip().lower() == "all":
        return list(visible)
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) >= len(visible):
            raise ValueError(f"devices (--devices): {part!r} is not a visible GPU; visible are 0..{len(visible) - 1} "
                             f"(physical {','.join(visible)}), or say 'all'")
        dev = visible[int(part)]
        if dev in out:
            raise ValueError(f"devices (--devices): GPU {part} is listed twice")
        out.append(dev)
    return out


def schedule(items: list[T], workers: list[str], submit: Callable[[str, T], Future],
             restart: Callable[[str], None] | None = None, died: Callable[[T, BaseException], R] | None = None,
             split: Callable[[T], list[T]] | None = None,
             stalled: Callable[[T], tuple[R, T | None] | None] | None = None) -> Iterator[tuple[str, R]]:
    """Run items on workers, one in flight per worker, the next item going to whichever finishes first.

    Yields (worker, result) in completion order; the first error cancels what is not started and propagates,
    except a worker's death when ``restart`` and ``died`` are given: its one item in flight is known, so the worker
    is restarted (``restart(worker)``) and the item tried once more; dying again, the item is split into parts
    (``split(item)``, when given and it has several), each of which dies only once, and ``died(item, error)`` is
    the result of an item that died its last time. A worker that stopped itself for want of progress says so:
    ``stalled(item)`` is then (the result, the item's rest to run again or None), and nothing is tried again.
    """
    pending = deque(items)
    running: dict[Future, tuple[str, T]] = {}
    deaths: dict = {}  # item -> how often its worker died (items are hashable: a Chunk is)

    def start(w: str, item: T) -> None:
        try:
            f = submit(w, item)
        except BrokenProcessPool:  # the worker died idle, since its last item: a fresh one takes this item
            if restart is None:
                raise
            restart(w)
            f = submit(w, item)
        running[f] = (w, item)

    try:
        for w in workers:
            if pending:
                start(w, pending.popleft())
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                w, item = running.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool as e:
                    if restart is None or died is None:
                        raise
                    restart(w)
                    result = _death(item, e, deaths, pending, died, split, stalled)
                if pending:
                    start(w, pending.popleft())
                if result is not None:
                    yield w, result
    finally:
        for fut in running:
            fut.cancel()


def _death(item: T, e: BaseException, deaths: dict, pending: deque, died: Callable, split: Callable | None,
           stalled: Callable | None) -> R | None:
    """What ``schedule`` does when the worker running ``item`` died: its result, or None with what is to run
    again put first in ``pending`` (the item; its parts; a stalled item's rest)."""
    after = stalled(item) if stalled is not None else None
    if after is not None:
        if after[1] is not None:
            pending.appendleft(after[1])
        return after[0]
    deaths[item] = deaths.get(item, 0) + 1
    if deaths[item] < 2:  # tried once more
        pending.appendleft(item)
        return None
    parts = split(item) if split is not None else []
    if len(parts) > 1:  # which part kills its worker: each once
        deaths.update({p: 1 for p in parts})
        pending.extendleft(reversed(parts))
        return None
    return died(item, e)


def _device_env(device: str) -> dict[str, str]:
    return {"CUDA_VISIBLE_DEVICES": device}


class DevicePool:
    """One single-process executor per slot (a context manager): a worker's death breaks only its own executor,
    so whose chunk it was is known. ``env(slot)`` is set at each process's start (default: a GPU per slot, its
    CUDA_VISIBLE_DEVICES)."""

    def __init__(self, devices: list[str], initializer: Callable | None = None, initargs: tuple = (),
                 env: Callable[[str], dict[str, str]] = _device_env):
        self._init = (initializer, initargs, env)
        self.executors = {d: self._start(d) for d in devices}

    def _start(self, device: str):
        from joblib.externals.loky import ProcessPoolExecutor
        initializer, initargs, env = self._init
        return ProcessPoolExecutor(max_workers=1, env=env(device), initializer=initializer, initargs=initargs)

    def restart(self, device: str) -> None:
        """A fresh process for ``device`` (its old one died)."""
        self.executors[device].shutdown(wait=False, kill_workers=True)
        self.executors[device] = self._start(device)

    def submit(self, device: str, fn: Callable, *args, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` in the device's process."""
        return self.executors[device].submit(fn, *args, **kwargs)

    def __enter__(self) -> "DevicePool":
        return self

    def __exit__(self, *exc) -> None:
        for ex in self.executors.values():
            ex.shutdown(wait=exc[0] is None, kill_workers=exc[0] is not None)


class GpuRunner:
    """One worker process per GPU (``devices``: CUDA_VISIBLE_DEVICES values, see ``parse_devices``)."""

    def __init__(self, devices: list[str] | str):
        if isinstance(devices, str):  # "0,1" or "all", as --devices takes it (it was split into characters)
            devices = parse_devices(devices, visible_devices())
        if not devices:
            raise ValueError("GpuRunner needs at least one device")
        if len(set(map(str, devices))) != len(devices):
            raise ValueError(f"GpuRunner: a device is listed twice in {list(devices)}")
        self.devices = [str(d) for d in devices]
        self.events: Counter = Counter()  # worker deaths and stalls in the last run, for its report

    def slots(self) -> int:
        """One chunk in flight per device."""
        return len(self.devices)

    def describe(self) -> dict:
        """{"kind": "gpus", "devices": [...]}."""
        return {"kind": "gpus", "devices": self.devices, **self.events}

    def run(self, work: Work, chunks: Sequence[Chunk], progress: Progress) -> Iterator[ChunkResult]:
        """Run the chunks with one worker per device; yield results as they finish (progress per chunk)."""
        gpu_work = work.on_gpu()
        me = os.getpid()
        # tied to this process at start-up, not at its first chunk (see runners.local); threads left alone: a GPU
        # worker decodes and encodes with the host's threads
        with DevicePool(self.devices, initializer=prepare_worker, initargs=(me, None)) as pool:
            def submit(dev: str, chunk: Chunk) -> Future:
                return pool.submit(dev, run_chunk, gpu_work, chunk, parent=me, threads=None)

            for res in run_slots(chunks, self.devices, submit, pool.restart, self.events):
                progress(len(res.videos), res.pairs)
                yield res


def run_slots(chunks: Sequence[Chunk], slots: list[str], submit: Callable[[str, Chunk], Future],
              restart: Callable[[str], None], events: Counter) -> Iterator[ChunkResult]:
    """``schedule`` for chunks, one in flight per slot (a process of its own). A worker that dies (out of memory)
    costs only its video: its chunk is tried once more, then each of its videos once, and the one whose worker
    dies then fails; a worker that stalled names its video, which fails at once. ``events`` counts the
    "worker_deaths" and "stalls"; the third stall in a row with nothing finished between stops the run."""
    streak: list[str] = []  # the videos of the stalls since a chunk last finished

    def restarted(slot: str) -> None:
        events["worker_deaths"] += 1
        restart(slot)

    def stalled(chunk: Chunk):
        after = after_stall(chunk)
        if after is None:
            return None
        events["stalls"] += 1
        streak.append(after[0].videos[0].key)
        check_stalls(streak, after[2])
        return after[:2]

    events.clear()
    for _, res in schedule(list(chunks), slots, submit, restart=restarted, died=died, split=singles,
                           stalled=stalled):
        if res.shard:
            streak.clear()
        yield res
