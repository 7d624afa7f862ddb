"""The solver interface: one object that turns batches of gray frame pairs into float flow.

A solver is anything with
    ``compute(frames0, frames1) -> flow`` with frames (B, H, W) uint8 and flow (B, 2, H, W) float32 in pixels,
    ``batch_size`` (how many pairs it wants at a time; 1 for OpenCV), and
    ``describe()`` (a JSON-able dict: algo, backend, device and every parameter, stored in the shards).
Backends are plain modules with a ``make(algo, params, device, batch_size, **options)`` function, chosen from
the dict below.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

# Every parameter of each algorithm, with OpenCV's defaults. A backend must give each the same meaning.
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "tvl1": {
        "tau": 0.25, "lambda": 0.15, "theta": 0.3, "nscales": 5, "warps": 5, "epsilon": 0.01,
        "inner_iterations": 30, "outer_iterations": 10, "scale_step": 0.8, "gamma": 0.0, "median_filtering": 5,
    },
    "farneback": {
        "pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
    },
    "dis": {"preset": "medium"},
}
DIS_PRESETS = ("ultrafast", "fast", "medium")  # OpenCV's DISOPTICAL_FLOW_PRESET_<NAME>


_POSITIVE, _AT_LEAST_1, _NOT_NEGATIVE = (lambda x: x > 0, "> 0"), (lambda x: x >= 1, ">= 1"), (lambda x: x >= 0, ">= 0")
_FRACTION = (lambda x: 0 < x < 1, "in (0, 1)")
# What each parameter's value must be: (int, float or str, test, the rule in words). Checked when a SolverConfig
# is made, so a bad value is refused once, up front, not by every worker for every video.
PARAM_RULES: dict[str, dict[str, tuple[type, Callable[[Any], bool], str]]] = {
    "tvl1": {
        "tau": (float, *_POSITIVE), "lambda": (float, *_POSITIVE), "theta": (float, *_POSITIVE),
        "nscales": (int, *_AT_LEAST_1), "warps": (int, *_AT_LEAST_1), "inner_iterations": (int, *_AT_LEAST_1),
        "outer_iterations": (int, *_AT_LEAST_1), "epsilon": (float, *_NOT_NEGATIVE),
        "gamma": (float, *_NOT_NEGATIVE), "scale_step": (float, *_FRACTION),
        "median_filtering": (int, lambda x: x <= 1 or x % 2 == 1, "odd, or <= 1 for none"),
    },
    "farneback": {
        "pyr_scale": (float, *_FRACTION), "levels": (int, *_NOT_NEGATIVE), "winsize": (int, *_AT_LEAST_1),
        "iterations": (int, *_AT_LEAST_1), "poly_n": (int, *_AT_LEAST_1), "poly_sigma": (float, *_NOT_NEGATIVE),
    },
    "dis": {"preset": (str, lambda x: x in DIS_PRESETS, f"{', '.join(DIS_PRESETS[:-1])} or {DIS_PRESETS[-1]}")},
}
_KINDS = {int: ((int, np.integer), "a whole number"), float: ((int, float, np.integer, np.floating), "a number"),
          str: ((str,), "one of")}


def check_params(algo: str, params: dict[str, Any]) -> None:
    """Raise ValueError naming each parameter of ``algo`` whose value breaks PARAM_RULES (type or range)."""
    bad = []
    for name, (kind, test, words) in PARAM_RULES.get(algo, {}).items():
        if name not in params:
            continue
        value, (types, what) = params[name], _KINDS[kind]
        ok = (isinstance(value, types) and not isinstance(value, bool)
              and (kind is str or math.isfinite(value)) and test(value))
        if not ok:
            bad.append(f"{name} must be {what} {words}, got {value!r}")
    if bad:
        raise ValueError(f"{algo} parameter(s): " + "; ".join(bad))


# Memory of one TV-L1 pair, float32 bytes per pixel of its finest level (torch's eager mode; OpenCV's and the
# compiled kernels' need less): torch_backend's batch sizes and extraction's refusal of frames no machine here
# could solve (a 16000x16000 video) both count with it. The reckoning is in torch_backend's "Memory model" comment.
BYTES_PER_PIXEL = 256

# backend name -> module implementing make(algo, params, device); imported only when chosen.
BACKENDS: dict[str, str] = {
    "opencv": "flowprep.solvers.opencv_backend",
    "torch": "flowprep.solvers.torch_backend",
}
# the torch backend's inner TV-L1 step: auto (triton on CUDA where triton is installed, the C loop on the CPU
# where it builds, else torch), the torch.compile'd step (torch), the fused Triton kernel (triton, CUDA only) or
# the fused C loop (c, CPU only: solvers/tvl1_c.py); the flow is the same
KERNELS = ("auto", "torch", "triton", "c")
# which algorithms each backend implements
BACKEND_ALGOS: dict[str, tuple[str, ...]] = {"opencv": ("tvl1", "farneback", "dis"), "torch": ("tvl1",)}


class Solver(Protocol):
    """What the extractor needs of a flow solver."""

    batch_size: int

    def compute(self, frames0: np.ndarray, frames1: np.ndarray) -> np.ndarray:
        """(B, H, W) uint8 x 2 -> (B, 2, H, W) float32 flow from frames0 to frames1, in pixels."""
        ...

    def describe(self) -> dict:
        """algo, backend, device and all parameters, JSON-able."""
        ...


@dataclass(frozen=True)
class SolverConfig:
    """Which flow algorithm, on which backend and device, with which parameters (unset ones take defaults)."""

    algo: str = "tvl1"
    backend: str = "auto"
    device: str = "auto"
    params: dict = field(default_factory=dict)
    batch_size: int | None = None  # None: the backend chooses
    compile: bool | None = None  # torch backend: torch.compile (None: FLOWPREP_TORCH_COMPILE, default on)
    kernel: str = "auto"  # torch backend's inner step: auto, torch, triton or c (KERNELS)

    def __post_init__(self) -> None:
        if self.algo not in ALGO_DEFAULTS:
            raise ValueError(f"unknown flow algorithm {self.algo!r}; choose one of {', '.join(ALGO_DEFAULTS)}")
        if self.backend != "auto" and self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of auto, {', '.join(BACKENDS)}")
        if not any(self.algo in BACKEND_ALGOS.get(b, ()) for b in (BACKENDS if self.backend == "auto" else
                                                                  (self.backend,))):  # here, not in every worker
            resolve_backend(self.algo, self.backend, "cpu")  # the error that says which backends run it
        unknown = set(self.params) - set(ALGO_DEFAULTS[self.algo])
        if unknown:
            raise ValueError(
                f"unknown {self.algo} parameter(s) {', '.join(sorted(unknown))}; "
                f"allowed: {', '.join(ALGO_DEFAULTS[self.algo])}")
        check_params(self.algo, self.params)
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown TV-L1 kernel {self.kernel!r}; choose one of {', '.join(KERNELS)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def full_params(self) -> dict:
        """The algorithm's defaults overlaid with the parameters given."""
        return {**ALGO_DEFAULTS[self.algo], **self.params}

    def output_identity(self) -> dict:
        """What decides the flow values, for the resume check: algo and parameters (not backend or device)."""
        return {"algo": self.algo, "params": self.full_params()}


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device.

    Without an NVIDIA driver on the machine the answer is no, found without importing torch (seconds per
    worker process)."""
    if not any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl")) \
            and "torch" not in sys.modules and sys.platform.startswith("linux"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def auto_cpu_tvl1(config: SolverConfig, device: str) -> bool:
    """Whether 'auto' sends this config's TV-L1 on ``device`` (resolved) to ``auto_cpu``, one pair at a time."""
    return config.backend == "auto" and config.algo == "tvl1" and device == "cpu" \
        and importlib.util.find_spec("torch") is not None  # found, not imported: small jobs never import it


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; anything else is checked and returned."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device; use device='cpu' "
                         "(--device cpu)")
    return device


def resolve_backend(algo: str, backend: str, device: str) -> str:
    """'auto' -> torch on a CUDA device, else OpenCV (make_solver sends TV-L1 on the CPU to auto_cpu first); an
    algorithm neither runs (one added after docs/EXTENDING.md) -> the first backend of BACKEND_ALGOS that runs it."""
    if backend != "auto":
        if algo not in BACKEND_ALGOS[backend]:
            raise ValueError(f"backend {backend!r} does not implement {algo!r}; "
                             f"it has {', '.join(BACKEND_ALGOS[backend])}")
        if backend == "opencv" and device.startswith("cuda"):
            raise ValueError("the opencv backend runs on the CPU only; use --backend torch for --device cuda")
        return backend
    if device.startswith("cuda") and algo in BACKEND_ALGOS["torch"] and _backend_importable("torch"):
        return "torch"
    if algo in BACKEND_ALGOS["opencv"]:
        return "opencv"
    runs = [b for b, algos in BACKEND_ALGOS.items() if algo in algos]
    if not runs:
        raise ValueError(f"no backend implements {algo!r}; add it to BACKEND_ALGOS (docs/EXTENDING.md)")
    return runs[0]


def _backend_importable(name: str) -> bool:
    try:
        importlib.import_module(BACKENDS[name])
        return True
    except ImportError:
        return False


def make_solver(config: SolverConfig) -> Solver:
    """Build the solver a config names, resolving 'auto' backend and device. TV-L1 by 'auto' on the CPU runs one
    pair at a time whatever ``batch_size`` (batching is slower there; backend 'torch' batches): a batch size had
    sent it to OpenCV, 10x slower than the C loop, without a word."""
    device = resolve_device(config.device)
    if auto_cpu_tvl1(config, device):
        from flowprep.solvers.auto_cpu import SizeDispatchSolver
        return SizeDispatchSolver(config.full_params(), compile=config.compile, kernel=config.kernel)
    backend = resolve_backend(config.algo, config.backend, device)
    module = importlib.import_module(BACKENDS[backend])
    options = {"compile": config.compile, "kernel": config.kernel} if backend == "torch" else {}
    return module.make(config.algo, config.full_params(), device, config.batch_size, **options)
