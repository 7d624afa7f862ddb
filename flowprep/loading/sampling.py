"""Which videos an epoch visits: the paper's class-balanced draw, and distinct draws for any sampler that repeats.

``TrainClips`` takes a sample's random choices (frame or stack start, crop, flip, jitter) from its index alone, so
that a run is the same with any number of workers. A sampler that draws with replacement visits a video several
times an epoch; each visit must be a new sample, not the first one again. So index ``v + k * n`` (n videos) is
video v's k-th draw of the epoch: ``distinct_draws`` numbers a sequence of picks that way, ``DistinctDraws`` wraps
any sampler (torch's ``WeightedRandomSampler``, say), and ``ShuffledSampler`` and ``ClassBalancedSampler`` do it
themselves.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def distinct_draws(picks: Iterable[int], n: int, num_replicas: int = 1, rank: int = 0) -> list[int]:
    """TrainClips indices for video picks over ``n`` videos: the k-th repeat of video v becomes
    ``v + (k * num_replicas + rank) * n``, so that the draws of every rank (DDP) differ too."""
    seen: Counter[int] = Counter()
    out = []
    for v in picks:
        v = int(v)
        out.append(v + (seen[v] * num_replicas + rank) * n)
        seen[v] += 1
    return out


class DistinctDraws(Sampler[int]):
    """Any sampler over a ``TrainClips`` of ``n`` videos, each repeat of a video made a draw of its own; under DDP
    give each rank's sampler its ``num_replicas`` and ``rank``, so that two ranks drawing one video differ."""

    def __init__(self, sampler: Sampler[int], n: int, num_replicas: int = 1, rank: int = 0):
        self.sampler, self.n, self.num_replicas, self.rank = sampler, n, num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        """Passed on to the wrapped sampler, if it has epochs."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[int]:
        return iter(distinct_draws(self.sampler, self.n, self.num_replicas, self.rank))


class ShuffledSampler(Sampler[int]):
    """torch's DistributedSampler (shuffled, padded to a multiple of the ranks, the same order for the same seed and
    epoch) with the padding's repeats made draws of their own: they fell on other ranks as the same samples."""

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        self.n, self.num_replicas, self.rank, self.seed, self.epoch = n, num_replicas, rank, seed, 0
        self.num_samples = math.ceil(n / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)  # as DistributedSampler seeds it
        order = torch.randperm(self.n, generator=g).tolist()
        total = self.num_samples * self.num_replicas
        order = (order * math.ceil(total / max(1, len(order))))[:total]
        return iter(distinct_draws(order, self.n)[self.rank::self.num_replicas])


class ClassBalancedSampler(Sampler[int]):
    """The paper's mini-batches: each sample picks a class uniformly, then one of its videos uniformly.

    One epoch draws ``len(labels)`` samples; like DistributedSampler it is seeded by (seed, epoch) and split
    across ranks, so all ranks draw from one shared sequence without overlap. A video drawn again is a new sample
    (``distinct_draws``, counted over all ranks): drawn by video index alone, it was the same crop and flip.
    """

    def __init__(self, labels: Sequence[int], num_replicas: int = 1, rank: int = 0, seed: int = 0):
        # each class's indices in order, from one stable sort (a comparison per class took 15-30 s at 650k videos)
        _, codes = np.unique(np.asarray(labels), return_inverse=True)  # any sortable labels: class names too
        order = np.argsort(codes.reshape(-1), kind="stable")
        starts = np.flatnonzero(np.diff(codes.reshape(-1)[order], prepend=-1))
        self.by_class = np.split(order, starts[1:]) if len(order) else []
        self.n = len(labels)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(len(labels) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's draw."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        total = self.num_samples * self.num_replicas
        classes = rng.integers(len(self.by_class), size=total)
        picks = [int(self.by_class[c][rng.integers(len(self.by_class[c]))]) for c in classes]
        return iter(distinct_draws(picks, self.n)[self.rank::self.num_replicas])
