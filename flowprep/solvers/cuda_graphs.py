"""Several TV-L1 inner iterations as one CUDA graph: one launch from the host instead of k x (a few) launches.

At 320x240 a pyramid level's iteration is tens of microseconds of GPU work but a few Python-side launches of
10-20 us each; below batch ~32 the host sets the speed. A graph captured once per level shape (and batch) and
replayed runs the k iterations back to back on the GPU. The host still looks at "has every pair stopped?" after
each replay (one sync per k iterations, as without graphs), so the flow is the same as step by step.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import torch

from flowprep.solvers.tvl1_torch import StepFn

log = logging.getLogger(__name__)
# the graphs of other frame sizes than the one being solved, kept within this share of the device's memory (their
# inputs): a graph per level, compaction bucket and frame size, none dropped, grew with every size a run met
GRAPH_MEMORY_SHARE = 0.1


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]  # u, px, py, grads, grad_sq, rho_c, active, scaled_eps: the graph reads these
    sources: list  # the caller's tensor last copied into each input (held, so its memory cannot be reused)


class GraphedSteps:
    """``k`` calls of ``step`` as one CUDA graph per (shape, constants); called like the step itself.

    The graph ends by copying its state (u, px, py, active) back into its own inputs and returns those, so the
    usual loop, which feeds the result straight back, copies nothing in between; the data terms (grads,
    grad_sq, rho_c, scaled_eps) are copied in only when the caller passes other tensors than last time. So the
    returned tensors are overwritten by the next call with the same shapes, and the caller must not modify the
    tensors it passes in place between two calls (TVL1 does neither).

    Graphs are kept by frame size (``frame``, which the caller sets before each solve): past ``budget_bytes`` the
    least recently solved sizes' graphs are dropped, whole, never the current size's (dropping graphs one by one
    dropped the very graph a pass needed next, and every batch captured its levels again).
    """

    def __init__(self, step: StepFn, k: int, budget_bytes: int | None = None):
        """``budget_bytes``: the inputs the kept graphs may hold (None: GRAPH_MEMORY_SHARE of the device's memory,
        at the first capture); the current frame size's are kept whatever they hold."""
        if k < 1:
            raise ValueError(f"iterations per graph must be at least 1, got {k}")
        self.step, self.k, self.budget_bytes = step, k, budget_bytes
        self._graphs: dict[tuple, _Captured] = {}
        self._sizes: OrderedDict[tuple, list[tuple]] = OrderedDict()  # frame size -> its graphs' keys, LRU first
        self.frame: tuple = ()  # the frame size being solved (set by the caller)
        self.cached_bytes = 0  # the inputs the kept graphs hold
        self.captures = 0
        # one memory pool for every graph (shapes x levels x compaction buckets): safe because nothing a graph
        # makes outlives its replay (the state is copied back into inputs allocated outside the pool)
        self._pool = None
        self.failed = False

    def __call__(self, u: torch.Tensor, px: torch.Tensor, py: torch.Tensor, grads: torch.Tensor,
                 grad_sq: torch.Tensor, rho_c: torch.Tensor, active: torch.Tensor, scaled_eps: torch.Tensor,
                 l_t: float, theta: float, taut: float) -> tuple[torch.Tensor, ...]:
        """``k`` inner iterations from this state (same arguments and results as the step)."""
        args = (u, px, py, grads, grad_sq, rho_c, active, scaled_eps)
        key = (tuple(tuple(a.shape) for a in args), u.device, l_t, theta, taut)
        if self.failed:  # a capture failed once: plain launches from then on (same flow, more host work)
            return self._run(args, (l_t, theta, taut))
        if self.frame not in self._sizes or next(reversed(self._sizes)) != self.frame:
            self._new_frame()
        cap = self._graphs.get(key)
        if cap is None:
            try:
                cap = self._keep(key, self._capture(args, (l_t, theta, taut)))
            except RuntimeError as e:  # a driver or library that cannot capture: slower, not stopped
                log.warning("CUDA graph capture failed (%s); running the inner iterations without graphs",
                            str(e).splitlines()[0][:200])
                self.failed = True
                return self._run(args, (l_t, theta, taut))
        for i, (dst, src) in enumerate(zip(cap.inputs, args)):
            if src is not dst and src is not cap.sources[i]:
                dst.copy_(src)
                cap.sources[i] = src
        cap.graph.replay()
        return cap.inputs[0], cap.inputs[1], cap.inputs[2], cap.inputs[6]

    def _new_frame(self) -> None:
        # another frame size: the others' graphs stop pinning the caller's last tensors (copied in again if they
        # come back), and this one becomes the most recently used
        for cap in self._graphs.values():
            cap.sources[:] = [None] * len(cap.sources)
        self._sizes.setdefault(self.frame, [])
        self._sizes.move_to_end(self.frame)

    def _keep(self, key: tuple, cap: _Captured) -> _Captured:
        """Keep a new graph of the current frame size, dropping the least recently solved sizes past the budget."""
        if self.budget_bytes is None:
            device = cap.inputs[0].device
            self.budget_bytes = int(GRAPH_MEMORY_SHARE * torch.cuda.get_device_properties(device).total_memory)
        self._graphs[key] = cap
        self._sizes[self.frame].append(key)
        self.cached_bytes += _nbytes(cap)
        self.captures += 1
        while self.cached_bytes > self.budget_bytes and len(self._sizes) > 1:
            _, keys = self._sizes.popitem(last=False)
            for old in filter(None, (self._graphs.pop(k, None) for k in keys)):
                self.cached_bytes -= _nbytes(old)
        return cap

    def _capture(self, args: tuple[torch.Tensor, ...], consts: tuple[float, float, float]) -> _Captured:
        inputs = tuple(a.clone() for a in args)
        device = inputs[0].device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the capture: Triton compiles, the allocator settles
            self._run(inputs, consts)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self._pool):
            u, px, py, active = self._run(inputs, consts)
            for dst, src in zip((inputs[0], inputs[1], inputs[2], inputs[6]), (u, px, py, active)):
                dst.copy_(src)  # the state back where the next replay reads it
        return _Captured(graph, inputs, [None] * len(inputs))

    def _run(self, inputs: tuple[torch.Tensor, ...], consts: tuple[float, float, float]) -> tuple[torch.Tensor, ...]:
        u, px, py, grads, grad_sq, rho_c, active, scaled_eps = inputs
        for _ in range(self.k):
            u, px, py, active = self.step(u, px, py, grads, grad_sq, rho_c, active, scaled_eps, *consts)
        return u, px, py, active


def _nbytes(cap: _Captured) -> int:
    # the memory a kept graph holds outside the shared pool: its inputs
    return sum(t.numel() * t.element_size() for t in cap.inputs)
