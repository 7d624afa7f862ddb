"""How many pairs of a batch are still iterating, as the host learns it: now, or a check late.

The inner loop asks "has every pair stopped?" every ``check_every`` iterations. On a GPU, reading the answer
at once (``int(active.sum())``) is a host sync: the GPU runs dry while the host reads it and launches what
comes next. That was about a quarter of a batch's time on the H200 (45 of 180 ms for 122 checks, run 2 in
benchmarks/TVL1.md). With ``lookahead`` 1 the host launches the next iterations first and then reads the
count of the check before: the GPU always has work queued. The flow does not change: a pair that has stopped is
masked at every iteration on the device (its state is carried through unchanged), so the iterations launched
after every pair stopped change nothing but the time (at most ``check_every`` iterations a run, on a batch that
compaction has mostly emptied by then).
"""
from __future__ import annotations

from collections import deque

import torch


class ActiveCounts:
    """The counts of active pairs at each check, handed back ``lookahead`` checks late (0: at once).

    ``push(active)`` records a check and returns the newest count the host knows by then (None if none yet);
    ``known`` holds it. On CUDA a count is copied into page-locked memory behind a CUDA event, so waiting for it
    waits for that check only, not for the work queued after it.
    """

    def __init__(self, lookahead: int = 0):
        if lookahead < 0:
            raise ValueError(f"lookahead must be 0 or more checks, got {lookahead}")
        self.lookahead = lookahead
        self.known: int | None = None
        self._pending: deque = deque()

    def push(self, active: torch.Tensor) -> int | None:
        """Record the check of ``active`` (B bools); the newest count known after it."""
        if active.device.type != "cuda":
            self._pending.append(int(active.sum()))
        else:
            host = torch.empty((), dtype=torch.int64, pin_memory=True)
            host.copy_(active.sum(), non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            self._pending.append((host, done))
        while len(self._pending) > self.lookahead:
            count = self._pending.popleft()
            if isinstance(count, tuple):
                count[1].synchronize()
                count = int(count[0])
            self.known = count
        return self.known

    def set(self, count: int) -> None:
        """A count known at once (a loop that ran on the host, as the CPU's C loop): it supersedes the pending."""
        self._pending.clear()
        self.known = count
