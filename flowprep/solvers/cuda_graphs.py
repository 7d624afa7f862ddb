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
# the graphs kept, at most this share of the device's memory in their inputs: a graph per level, compaction
# bucket and frame size, none ever dropped, grew with every frame size a run met (Kinetics' widths vary)
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
    """

    def __init__(self, step: StepFn, k: int, budget_bytes: int | None = None):
        """``budget_bytes``: the inputs the kept graphs may hold, the least recently used dropped past it
        (None: GRAPH_MEMORY_SHARE of the device's memory, at the first capture)."""
        if k < 1:
            raise ValueError(f"iterations per graph must be at least 1, got {k}")
        self.step, self.k, self.budget_bytes = step, k, budget_bytes
        self._graphs: OrderedDict[tuple, _Captured] = OrderedDict()
        self.cached_bytes = 0  # the inputs the kept graphs hold
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
        cap = self._graphs.get(key)
        if cap is None:
            try:
                cap = self._keep(key, self._capture(args, (l_t, theta, taut)))
            except RuntimeError as e:  # a driver or library that cannot capture: slower, not stopped
                log.warning("CUDA graph capture failed (%s); running the inner iterations without graphs",
                            str(e).splitlines()[0][:200])
                self.failed = True
                return self._run(args, (l_t, theta, taut))
        else:
            self._graphs.move_to_end(key)
        for i, (dst, src) in enumerate(zip(cap.inputs, args)):
            if src is not dst and src is not cap.sources[i]:
                dst.copy_(src)
                cap.sources[i] = src
        cap.graph.replay()
        return cap.inputs[0], cap.inputs[1], cap.inputs[2], cap.inputs[6]

    def _keep(self, key: tuple, cap: _Captured) -> _Captured:
        """Keep a new graph, dropping the least recently used ones past the budget (never the new one)."""
        if self.budget_bytes is None:
            device = cap.inputs[0].device
            self.budget_bytes = int(GRAPH_MEMORY_SHARE * torch.cuda.get_device_properties(device).total_memory)
        self._graphs[key] = cap
        self.cached_bytes += _nbytes(cap)
        while self.cached_bytes > self.budget_bytes and len(self._graphs) > 1:
            _, old = self._graphs.popitem(last=False)
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
