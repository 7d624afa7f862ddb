"""Several GPUs on one machine: one worker process per device, each seeing only its GPU.

``flowprep extract --devices all`` (or ``--devices 0,2``) starts one process per device with
``CUDA_VISIBLE_DEVICES`` set to that device before anything in it touches CUDA, so every worker computes on
"cuda:0" of its own GPU. Chunks go to whichever device is free next (one chunk in flight per device), so a slower
GPU simply does fewer chunks. Device ids are positions in the GPUs this process may use: when
``CUDA_VISIBLE_DEVICES`` is already set (e.g. by Slurm), ``--devices 0,1`` means its first two entries.
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import Future
from typing import Iterator, Sequence

from flowprep.runners import Chunk, Progress, Work
from flowprep.runners.local import run_chunk
from flowprep.runners.slots import SlotPool, run_slots
from flowprep.runners.worker import prepare_worker
from flowprep.store.record import ChunkResult


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


def device_env(device: str) -> dict[str, str]:
    """The environment of a device's worker: it sees that GPU only."""
    return {"CUDA_VISIBLE_DEVICES": device}


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
        with SlotPool(self.devices, device_env, initializer=prepare_worker, initargs=(me, None)) as pool:
            def submit(dev: str, chunk: Chunk) -> Future:
                return pool.submit(dev, run_chunk, gpu_work, chunk, parent=me, threads=None)

            for res in run_slots(chunks, self.devices, submit, pool.restart, self.events):
                progress(len(res.videos), res.pairs)
                yield res
