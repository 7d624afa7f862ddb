"""TV-L1 on the CPU in C (``tvl1_c.c``), built with the machine's C compiler at first use, called through ctypes.

Why: compiled torch runs one inner iteration per call (about 300 calls per 320x240 pair), and much of its time
was the call, not the arithmetic (issue 21). Here a whole run of inner iterations, up to the stopping test, is
one call, and each iteration is one sweep over the rows: row y of the primal update (thresholding, u, the
stopping measure), then row y - 1 of the dual update, while both are in cache; vectorised by the compiler
(``#pragma omp simd``, no OpenMP runtime). The arithmetic is ``tvl1_torch.tvl1_step``'s, in float32 without
fused multiply-adds, but for one reciprocal and two products where the step divides twice (1.16x on the loop;
an ulp apart per iteration). Then what a warp's data term took in torch (``grid_sample``'s bicubic warp of I1
and its gradients: 26 ns per pixel) is one C pass (``data_term``, about 10 ns): a block of 16 pixels whose
taps start at one offset, or two neighbouring ones (95% of blocks on real flow), reads them as contiguous
vectors; and the pyramids' resize is two taps per pixel in one pass (``resize_linear``).

The library is built once per machine and CPU (``-march=native``: the cache key holds the CPU's flags, so a
home folder shared by different nodes never loads one built for another CPU) into
``torch_cache.cache_root()/ckernels`` (``~/.cache/flowprep`` by default, beside the compiled torch kernels), in about a
second. No C compiler, or a build that fails: ``available()`` says why in one line and the torch backend keeps
the compiled torch step.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from flowprep.solvers.torch_cache import cache_root
from flowprep.solvers.tvl1_torch import linear_taps

# -fno-math-errno: sqrtf may then vectorise (errno is the only thing it gives up); -ffp-contract=off: no fused
# multiply-adds, the same roundings as torch's step
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd", "-fPIC", "-shared",
         "-std=c99"]

SOURCE_FILE = Path(__file__).with_name("tvl1_c.c")  # the kernels (package data: setup.cfg)


def _cache_dir() -> Path:
    return cache_root() / "ckernels"


def _cpu_key() -> str:
    # -march=native code runs only on CPUs with the same instruction sets: the key holds them
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next((ln for ln in lines if ln.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()}:{flags}"


def _build(cc: str) -> Path:
    source = SOURCE_FILE.read_text(encoding="utf-8")
    key = hashlib.sha256("\n".join([source, " ".join(FLAGS), cc, _cpu_key()]).encode()).hexdigest()[:16]
    out = _cache_dir() / f"tvl1_inner-{key}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src, lib = Path(tmp) / "tvl1_inner.c", Path(tmp) / "tvl1_inner.so"
        src.write_text(source, encoding="utf-8")
        subprocess.run([cc, *FLAGS, "-o", str(lib), str(src), "-lm"], check=True, capture_output=True, text=True,
                       timeout=120)
        os.replace(lib, out)  # atomic: a process beside this one loads a whole library or builds its own
    return out


@lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get("FLOWPREP_C_KERNEL", "1") == "0":
        return None, "FLOWPREP_C_KERNEL=0"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler on PATH (install gcc)"
    try:
        lib = ctypes.CDLL(str(_build(cc)))
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        return None, f"the C kernel did not build ({detail.strip().splitlines()[-1] if detail.strip() else e})"
    fn = lib.tvl1_inner
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int] * 4 + [ctypes.c_float] * 4 + [ctypes.c_void_p]
    lib.tvl1_resize.restype = ctypes.c_int
    lib.tvl1_resize.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int] * 5 + [ctypes.c_void_p] * 8
    lib.tvl1_data.restype = ctypes.c_int
    lib.tvl1_data.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 3
    return lib, ""


def available() -> tuple[bool, str]:
    """Whether the C kernel can run here, and if not, why (one line)."""
    lib, why = _load()
    return lib is not None, why


def _lib() -> ctypes.CDLL:
    # the loaded library, or the one-line reason it is not there
    lib, why = _load()
    if lib is None:
        raise RuntimeError(f"the C TV-L1 kernel is not available: {why}")
    return lib


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def inner_run(u: torch.Tensor, px: torch.Tensor, py: torch.Tensor, data: list[torch.Tensor], active: torch.Tensor,
              scaled_eps: float, consts: tuple[float, float, float], iters: int) -> tuple[torch.Tensor, int, int]:
    """Up to ``iters`` inner iterations of every active pair, in place on u, px, py (B, 2, H, W).

    Args:
        u, px, py: the flow and the dual variables, float32 contiguous CPU tensors (changed in place).
        data: [grads (B, 2, H, W), grad_sq (B, H, W), rho_c (B, H, W)], as ``tvl1_torch.tvl1_step`` takes them.
        active: (B,) bool, pairs still iterating.
        scaled_eps, consts: as ``tvl1_step``'s (epsilon^2 * H * W; lambda*theta, theta, tau/theta).
        iters: the inner iterations at most.
    Returns:
        the new active flags, the pairs still active, and the most iterations any pair ran.
    """
    lib = _lib()
    b, c, h, w = u.shape
    if c != 2:
        raise ValueError("the C kernel has no illumination term (gamma = 0 only)")
    grads, grad_sq, rho_c = (t.contiguous() for t in data)
    flags = active.to(torch.uint8).contiguous()
    steps = torch.zeros(1, dtype=torch.int32)
    l_t, theta, taut = consts
    left = lib.tvl1_inner(_ptr(u), _ptr(px), _ptr(py), _ptr(grads), _ptr(grad_sq), _ptr(rho_c), _ptr(flags),
                          b, h, w, iters, l_t, theta, taut, float(scaled_eps), _ptr(steps))
    if left < 0:
        raise MemoryError(f"the C TV-L1 kernel could not allocate a row of {w} floats")
    return flags.bool(), int(left), int(steps[0])


def data_term(i0: torch.Tensor, sources: torch.Tensor, u: torch.Tensor) -> list[torch.Tensor]:
    """A warp's data term in one C pass: ``tvl1_torch.TVL1._data_term``'s outputs, to float32 rounding.

    Args:
        i0: (B, H, W) first frame; sources: (B, 3, H, W) second frame and its x, y gradients; u: (B, 2, H, W) flow.
    Returns:
        [grads (B, 2, H, W): the gradients sampled bicubically at x + u, grad_sq (B, H, W): their squared norm,
        rho_c (B, H, W): the constant part of the residual, I1(x + u) - grads . u - I0].
    """
    lib = _lib()
    b, _, h, w = sources.shape
    i0, sources, u = i0.contiguous(), sources.contiguous(), u[:, :2].contiguous()
    grads, grad_sq, rho_c = u.new_empty((b, 2, h, w)), u.new_empty((b, h, w)), u.new_empty((b, h, w))
    if lib.tvl1_data(_ptr(i0), _ptr(sources), _ptr(u), _ptr(grads), _ptr(grad_sq), _ptr(rho_c), b, h, w) < 0:
        raise MemoryError(f"the C TV-L1 kernel could not allocate a row of {w} pixels' weights")
    return [grads, grad_sq, rho_c]


def resize_linear(img: torch.Tensor, size: tuple[int, int], src_per_dst: tuple[float, float]) -> torch.Tensor:
    """``tvl1_torch.resize_linear`` (cv::resize INTER_LINEAR) of a (..., H, W) float32 CPU tensor in one C pass
    (the same two taps per output pixel along each axis, without torch's temporaries)."""
    lib = _lib()
    hi, wi = img.shape[-2:]
    img = img.contiguous()
    out = img.new_empty(img.shape[:-2] + tuple(size))
    taps = [torch.from_numpy(t) for t in (*linear_taps(size[0], hi, src_per_dst[0]),
                                          *linear_taps(size[1], wi, src_per_dst[1]))]
    if lib.tvl1_resize(_ptr(img), _ptr(out), img.numel() // (hi * wi), hi, wi, size[0], size[1],
                       *(_ptr(t) for t in taps)) < 0:
        raise MemoryError(f"the C TV-L1 kernel could not allocate a row of {wi} floats")
    return out
