"""The torch backend of the solver interface: batched TV-L1 (``tvl1_torch``) on whatever device torch has.

Choices made here, not in the algorithm:
- device: "cpu", "cuda" or "cuda:N" (``solvers.resolve_device`` has already turned "auto" into one of these);
- batch size: the flag, else 1 on the CPU (a batch is slower there: caches, and a batch waits for its slowest
  pair), else from free GPU memory with the model ``BYTES_PER_PIXEL`` (below) at the nominal 320x240, capped at
  ``MAX_CUDA_BATCH``. ``compute`` also splits any input larger than the model allows, so memory stays bounded
  whatever the frame size;
- torch.compile: on by default (``FLOWPREP_TORCH_COMPILE=0`` or ``make(..., compile=False)`` turns it off).
  Shapes are static (dynamic shapes made the CPU kernels 2x slower), so each pyramid level of each frame size
  is one compile; partial batches are padded to the batch size so that the batch size adds none. While the
  solver runs, the recompile limit is raised to ``RECOMPILE_LIMIT`` and hitting it raises instead of silently
  falling back to eager (``compile_limits``: scoped to the call, so the caller's own torch.compile settings are
  as they were before and after). The ``flowprep`` command also keeps compiled code in
  ``~/.cache/flowprep/torchinductor`` (``use_compile_cache``; torch's default is wiped with /tmp), so a dataset
  pays the cold compile (40-120 s on a CPU) once per machine, then a few seconds per process. A library call
  changes no process-wide setting; ``configure_compile()`` applies both for a caller who asks.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
from typing import Any, Iterator

import numpy as np
import torch

from flowprep.solvers import BYTES_PER_PIXEL, tvl1_c
from flowprep.solvers.torch_cache import use_compile_cache
from flowprep.solvers.tvl1_torch import TVL1, MedianFn, StepFn, TVL1Params, tvl1_step

log = logging.getLogger(__name__)

# Memory model, float32 bytes per pixel of one pair at the finest level, eager mode (compiled uses less):
# pyramids of both frames 22, per-level state (I1 gradients, warped I1 and gradients, grad^2, rho, u, p) 52,
# warp transients 20, inner-iteration temporaries about 100; rounded up. The median window stack (25 x u) is
# made MEDIAN_CHUNK pairs at a time, so it adds a fixed amount, not a per-pair one.
MEDIAN_WORKSPACE_PER_PIXEL = 240  # 25 window values x 2 channels x 4 B, and the median's indices
NOMINAL_SIZE = (240, 320)  # UCF-101 and most HMDB-51 frames
MAX_CUDA_BATCH = 64  # past this, pairs/s stops rising and the batch waits longer for its slowest pair
CUDA_MEMORY_FRACTION = 0.6  # of the free memory at make() time
RECOMPILE_LIMIT = 1024  # 5 levels per frame size; a dataset with many frame sizes must never fall back to eager
CHECK_EVERY_CUDA = 10  # inner iterations between host checks of "all pairs stopped?" (one sync each)
LOOKAHEAD_CUDA = 1  # checks by which the host reads that answer late, so the GPU never waits for it


def bytes_per_pair(height: int, width: int) -> int:
    """Device memory one frame pair of height x width needs at most, by the model above."""
    return BYTES_PER_PIXEL * height * width


def choose_batch_size(device: str, height: int = NOMINAL_SIZE[0], width: int = NOMINAL_SIZE[1],
                      cap: int | None = MAX_CUDA_BATCH) -> int:
    """1 on the CPU; on CUDA the pairs that fit in CUDA_MEMORY_FRACTION of free memory, at most ``cap``."""
    if not device.startswith("cuda"):
        return 1
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    median_ws = MEDIAN_WORKSPACE_PER_PIXEL * height * width * TVL1.MEDIAN_CHUNK
    fit = int((free * CUDA_MEMORY_FRACTION - median_ws) // bytes_per_pair(height, width))
    return max(1, fit if cap is None else min(cap, fit))


def compile_wanted(device: str, compile: bool | None) -> bool:
    """Whether to torch.compile: the argument, else FLOWPREP_TORCH_COMPILE (default on) if a toolchain exists."""
    if compile is not None:
        return compile
    env = os.environ.get("FLOWPREP_TORCH_COMPILE", "1").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if device.startswith("cuda"):
        if importlib.util.find_spec("triton") is None:  # inductor's GPU code generator
            log.warning("torch.compile off: triton is not installed (pip install triton); running eager")
            return False
        return True
    if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        log.warning("torch.compile off: no C++ compiler on PATH (install g++); running eager, about 2x slower")
        return False
    return True


_LIMITS = {"recompile_limit": RECOMPILE_LIMIT, "accumulated_recompile_limit": RECOMPILE_LIMIT,
           "fail_on_recompile_limit_hit": True}  # never run eager silently


def _wanted_limits(dynamo_config) -> dict[str, Any]:
    """``_LIMITS`` against dynamo's current settings: limits only ever raised, the fail switch set."""
    return {k: max(getattr(dynamo_config, k), v) if k != "fail_on_recompile_limit_hit" else v
            for k, v in _LIMITS.items()}


@contextlib.contextmanager
def compile_limits() -> Iterator[None]:
    """Within the block: dynamo's recompile limits at least ``RECOMPILE_LIMIT`` (5 pyramid levels per frame
    size), and an error instead of a silent eager fallback past them; the previous values come back after."""
    import torch._dynamo.config as dynamo_config

    with dynamo_config.patch(**_wanted_limits(dynamo_config)):
        yield


def configure_compile() -> str:
    """For a caller who asks: the compile cache and the recompile limits for the whole process (what the
    solver otherwise applies only while it runs). Returns the cache directory."""
    import torch._dynamo.config as dynamo_config

    for k, v in _wanted_limits(dynamo_config).items():
        setattr(dynamo_config, k, v)
    return use_compile_cache()


def choose_kernel(device: str, kernel: str, gamma: float = 0.0) -> str:
    """The inner step to run: "triton" (fused kernel, CUDA), "c" (fused C loop, CPU, ``tvl1_c``) or "torch";
    "auto" takes triton on CUDA if installed, the C loop on the CPU if it builds (and gamma is 0), else torch.

    Raises:
        ValueError: "triton" asked for off CUDA (outside Triton's interpreter) or without triton installed; "c"
            off the CPU, with gamma, or where it cannot build.
    """
    has_triton = importlib.util.find_spec("triton") is not None
    on_cpu = not device.startswith("cuda")
    if kernel == "auto":
        if not on_cpu:
            return "triton" if has_triton else "torch"
        return "c" if gamma == 0 and tvl1_c.available()[0] else "torch"
    if kernel == "c":
        ok, why = tvl1_c.available()
        if on_cpu and gamma == 0 and ok:
            return kernel
        reason = (f"it runs on the CPU only, not {device!r}" if not on_cpu
                  else "it has no illumination term (gamma must be 0)" if gamma != 0 else why)
        raise ValueError(f"--tvl1-kernel c cannot run: {reason}; use --tvl1-kernel torch")
    if kernel == "triton":
        if not has_triton:
            raise ValueError("--tvl1-kernel triton needs triton (pip install triton); or use --tvl1-kernel torch")
        if not device.startswith("cuda") and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(f"--tvl1-kernel triton runs on CUDA only, not on {device!r}; use --tvl1-kernel torch")
    return kernel


def _kernels(kernel: str, compiled: bool) -> tuple[StepFn, str | MedianFn]:
    # the inner step and the median filter of a kernel choice
    if kernel == "triton":
        from flowprep.solvers import tvl1_triton
        return tvl1_triton.step, tvl1_triton.median
    if kernel == "c":  # the whole inner run is TVL1's ``run``: the step is the reference only
        return tvl1_step, "auto"
    return (torch.compile(tvl1_step, dynamic=False, fullgraph=True) if compiled else tvl1_step), "auto"


# the C kernel's parts of TVL1 (solvers/tvl1_c.py): the inner runs, each warp's bicubic sampling and data term,
# the pyramids' and the flow's resizing
_C_KERNELS = {"run": tvl1_c.inner_run, "data": tvl1_c.data_term, "resize": tvl1_c.resize_linear}


def _host_buffer(shape: tuple[int, ...], pinned: bool) -> torch.Tensor:
    # float32 host memory for the flow; page-locked where asked and possible (a locked-memory limit can refuse it)
    if pinned:
        try:
            return torch.empty(shape, dtype=torch.float32, pin_memory=True)
        except RuntimeError:
            pass
    return torch.empty(shape, dtype=torch.float32)


class TorchTVL1Solver:
    """TV-L1 on a torch device behind the solver interface: (B, H, W) uint8 pairs -> (B, 2, H, W) float32 flow.

    On CUDA the inner step and the median are Triton kernels, or the step is compiled torch (``kernel``); every
    ``CHECK_EVERY_CUDA`` iterations of it run as one CUDA graph (``graphs``; default on CUDA), and the host reads
    each check's count of pairs left ``LOOKAHEAD_CUDA`` checks late (``lookahead``; ``active_counts``).
    """

    def __init__(self, params: dict[str, Any], device: str = "cpu", batch_size: int | None = None,
                 compile: bool | None = None, kernel: str = "auto", graphs: bool | None = None,
                 compact: bool | None = None, check_every: int | None = None, lookahead: int | None = None):
        self.params = TVL1Params.from_dict(params)
        self.device = torch.device(device)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size) if batch_size else choose_batch_size(device)
        self.kernel = choose_kernel(device, kernel, self.params.gamma)
        self.compiled = self.kernel == "torch" and compile_wanted(device, compile)
        self.graphs = self.device.type == "cuda" if graphs is None else graphs
        step, median = _kernels(self.kernel, self.compiled)
        check_every = check_every or (CHECK_EVERY_CUDA if self.device.type == "cuda" else 1)
        block = self._graphed = None
        if self.graphs:
            from flowprep.solvers.cuda_graphs import GraphedSteps
            block = self._graphed = GraphedSteps(step, check_every)
        # compaction makes new batch shapes: cheap for Triton kernels and graphs, a recompile each for torch.compile
        self.compact = not self.compiled if compact is None else compact
        self.lookahead = (LOOKAHEAD_CUDA if self.device.type == "cuda" else 0) if lookahead is None else lookahead
        self._tvl1 = TVL1(self.params, step=step, check_every=check_every, median=median, block=block,
                          compact=self.compact, lookahead=self.lookahead,
                          **(_C_KERNELS if self.kernel == "c" else {}))

    def compute(self, frames0: np.ndarray, frames1: np.ndarray) -> np.ndarray:
        """(B, H, W) uint8 x 2 -> (B, 2, H, W) float32 flow from frames0 to frames1, in pixels."""
        if frames0.shape != frames1.shape or frames0.ndim != 3:
            raise ValueError(f"frames must both be (B, H, W); got {frames0.shape} and {frames1.shape}")
        if frames0.dtype != np.uint8 or frames1.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 gray images; got {frames0.dtype} and {frames1.dtype}")
        b, h, w = frames0.shape
        chunk = self.batch_size
        if self.device.type == "cuda":
            chunk = min(chunk, choose_batch_size(str(self.device), h, w, cap=None))  # what fits, whatever was asked
        # on CUDA the flow comes back into page-locked memory: a pageable copy ran at 2 GB/s on the H200 machine
        # (21 ms of a 180 ms batch of 64), a pinned one at the link's speed; torch caches pinned blocks
        out = _host_buffer((b, 2, h, w), pinned=self.device.type == "cuda")
        if self._graphed is not None:  # its graphs are kept by frame size, the current one's whatever they hold
            self._graphed.frame = (h, w)
        with compile_limits() if self.compiled else contextlib.nullcontext():
            for start in range(0, b, chunk):
                f0 = torch.from_numpy(np.ascontiguousarray(frames0[start:start + chunk])).to(self.device)
                f1 = torch.from_numpy(np.ascontiguousarray(frames1[start:start + chunk])).to(self.device)
                n = f0.shape[0]
                if (self.compiled or self.graphs) and n < chunk:
                    # pad with black pairs (they stop after one iteration): compiled shapes and graphs stay the same
                    pad = f0.new_zeros((chunk - n, h, w))
                    f0, f1 = torch.cat((f0, pad)), torch.cat((f1, pad))
                out[start:start + n] = self._tvl1(f0, f1)[:n]
        return out.numpy()

    def describe(self) -> dict:
        """algo, backend, device, every parameter, and how it ran (batch size, compiled, torch version)."""
        return {"algo": "tvl1", "backend": "torch", "device": str(self.device), "params": self.params.as_dict(),
                "batch_size": self.batch_size, "compiled": self.compiled, "kernel": self.kernel,
                "cuda_graphs": self.graphs, "compact": self.compact, "lookahead": self.lookahead,
                "torch": torch.__version__}


def make(algo: str, params: dict[str, Any], device: str, batch_size: int | None = None,
         compile: bool | None = None, kernel: str = "auto", graphs: bool | None = None,
         compact: bool | None = None, check_every: int | None = None,
         lookahead: int | None = None) -> TorchTVL1Solver:
    """Build the torch solver for ``algo`` (only "tvl1") on ``device`` ("cpu", "cuda", "cuda:N").

    Args:
        algo: the flow algorithm; this backend has TV-L1 only.
        params: all TV-L1 parameters (``solvers.ALGO_DEFAULTS['tvl1']`` keys, OpenCV's meaning).
        device: a resolved torch device string.
        batch_size: pairs per call; None: chosen by ``choose_batch_size``.
        compile: torch.compile the inner iteration; None: ``FLOWPREP_TORCH_COMPILE`` (default on).
        kernel: the inner step, "auto", "torch" or "triton" (``choose_kernel``).
        graphs: run the inner iterations as CUDA graphs; None: on CUDA.
        compact: stopped pairs leave the batch (``TVL1``); None: unless torch.compile'd (a recompile per shape).
        check_every: inner iterations per host check (and per CUDA graph); None: ``CHECK_EVERY_CUDA`` on CUDA, 1
            on the CPU.
        lookahead: checks by which the host reads the count of pairs left late (``active_counts``); None:
            ``LOOKAHEAD_CUDA`` on CUDA, 0 on the CPU (where an iteration run after the last pair stopped costs
            as much as any other).
    Raises:
        ValueError: an algorithm other than tvl1, a bad parameter, batch size or kernel.
    """
    if algo != "tvl1":
        raise ValueError(f"the torch backend implements tvl1 only, not {algo!r}; use --backend opencv for {algo}")
    return TorchTVL1Solver(params, device, batch_size, compile, kernel, graphs, compact, check_every, lookahead)
