"""Distributed training under torchrun: process group from the environment, the training sampler, gathering results.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything runs as one process (world size 1)
through the same code path. The gloo backend serves CPUs (and the tests), nccl serves GPUs.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

from flowprep.loading.sampling import ClassBalancedSampler, ShuffledSampler


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and logs."""
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun job described by the environment, if any (gloo on the CPU, nccl on CUDA).

    Args:
        device: 'auto' (CUDA if available), 'cpu' or 'cuda'.
    """
    if device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", device):
        raise ValueError(f"--device must be auto, cpu or cuda (cuda:N), got {device!r}")
    cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if cuda and not torch.cuda.is_available():  # torch's own error is a traceback about drivers
        raise ValueError(f"--device {device}: torch sees no CUDA GPU here (no driver, no GPU, or a CPU-only "
                         "torch); use --device cpu, or auto")
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(device="cuda" if cuda else "cpu")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, f"cuda:{local}" if cuda else "cpu")


def backend_name() -> str | None:
    """The process group's backend ('nccl', 'gloo'), or None outside torchrun."""
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def cleanup() -> None:
    """Leave the process group (a no-op outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of a few numbers over ranks (float64 on the CPU)."""
    t = torch.tensor(list(values), dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
    return t.cpu().tolist()


def train_sampler(labels: Sequence[int], info: DistInfo, seed: int, balanced: bool) -> Sampler[int]:
    """The training sampler: shuffled like DistributedSampler (one rank in a single process), or class-balanced."""
    if balanced:
        return ClassBalancedSampler(labels, info.world_size, info.rank, seed)
    return ShuffledSampler(len(labels), info.world_size, info.rank, seed)


def test_sampler(n: int, info: DistInfo) -> Sampler[int]:
    """Every item once across ranks, in order; the padding DistributedSampler adds is removed when gathering."""
    return DistributedSampler(range(n), num_replicas=info.world_size, rank=info.rank, shuffle=False)
