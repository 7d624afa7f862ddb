"""TV-L1's inner iterations on the CPU as one fused C loop, built with the machine's C compiler at first use.

Why: compiled torch runs one inner iteration per call (about 300 calls per 320x240 pair), and much of its time
was the call, not the arithmetic (issue 21). Here a whole run of inner iterations, up to the stopping test, is
one call, and each iteration is one sweep over the rows: row y of the primal update (thresholding, u, the
stopping measure), then row y - 1 of the dual update, while both are in cache; vectorised by the compiler
(``#pragma omp simd``, no OpenMP runtime). The arithmetic is ``tvl1_torch.tvl1_step``'s, the same float32
operations in the same order (no fused multiply-adds), so the flow is the same to rounding.

The library is built once per machine and CPU (``-march=native``: the cache key holds the CPU's flags, so a
home folder shared by different nodes never loads one built for another CPU) into
``$XDG_CACHE_HOME/flowprep/ckernels`` (``~/.cache`` by default, beside the compiled torch kernels), in about a
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

from flowprep.solvers.torch_cache import compile_cache_dir

# -fno-math-errno: sqrtf may then vectorise (errno is the only thing it gives up); -ffp-contract=off: no fused
# multiply-adds, the same roundings as torch's step
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd", "-fPIC", "-shared",
         "-std=c99"]

SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#define FLT_EPS 1.1920928955078125e-07f

/* u += thresholding + theta * div(p) at pixels [x0, x1) of one row; left/up: p one column left and one row up
   (offset pointers, or zeros at the border), so that the loop has no branch and vectorises. Returns the
   squared change of u over those pixels. */
static inline float row_u(float *restrict u0, float *restrict u1, const float *restrict px0,
                          const float *restrict px1, const float *restrict left0, const float *restrict left1,
                          const float *restrict py0, const float *restrict py1, const float *restrict up0,
                          const float *restrict up1, const float *restrict g0, const float *restrict g1,
                          const float *restrict gsq, const float *restrict rc, int x0, int x1, float l_t,
                          float theta) {
    float err = 0.0f;
    #pragma omp simd reduction(+:err)
    for (int x = x0; x < x1; x++) {
        const float a = u0[x], b = u1[x], s = gsq[x];
        const float rho = rc[x] + (g0[x] * a + g1[x] * b), lg = l_t * s;
        const float fi = rho < -lg ? l_t : (rho > lg ? -l_t : (s > FLT_EPS ? -rho / s : 0.0f));
        const float d0 = (px0[x] - left0[x]) + (py0[x] - up0[x]);
        const float d1 = (px1[x] - left1[x]) + (py1[x] - up1[x]);
        const float na = (a + fi * g0[x]) + theta * d0, nb = (b + fi * g1[x]) + theta * d1;
        err += (na - a) * (na - a) + (nb - b) * (nb - b);
        u0[x] = na;
        u1[x] = nb;
    }
    return err;
}

/* p = (p + taut * grad u) / (1 + taut * |grad u|) at pixels [x0, x1) of one row; right/down: u one column
   right and one row down (or u itself, a zero difference, at the border) */
static inline void row_p(const float *restrict u, const float *restrict right, const float *restrict down,
                         float *restrict px, float *restrict py, int x0, int x1, float taut) {
    #pragma omp simd
    for (int x = x0; x < x1; x++) {
        const float ux = right[x] - u[x], uy = down[x] - u[x];
        const float norm = 1.0f + taut * sqrtf(ux * ux + uy * uy);
        px[x] = (px[x] + taut * ux) / norm;
        py[x] = (py[x] + taut * uy) / norm;
    }
}

static void p_rows(const float *u, float *px, float *py, long n, int h, int w, int y, float taut) {
    for (int c = 0; c < 2; c++) {
        const long r = c * n + (long)y * w;
        const float *down = y < h - 1 ? u + r + w : u + r;
        row_p(u + r, u + r + 1, down, px + r, py + r, 0, w - 1, taut);
        row_p(u + r, u + r, down, px + r, py + r, w - 1, w, taut);
    }
}

/* One inner iteration, both updates in one sweep: row y of u (which reads p's rows y - 1 and y, not yet
   updated), then row y - 1 of p (which reads u's rows y - 1 and y, both updated): each array is read once
   per iteration while its rows are in cache. Returns the squared change of u. */
static double iteration(float *u, float *px, float *py, const float *g, const float *gsq, const float *rc,
                       const float *zeros, int h, int w, float l_t, float theta, float taut) {
    const long n = (long)h * w;
    double err = 0.0;  /* rows summed in double: the stopping test compares it with a threshold */
    for (int y = 0; y < h; y++) {
        const long r = (long)y * w;
        const float *up0 = y > 0 ? py + r - w : zeros, *up1 = y > 0 ? py + n + r - w : zeros;
        /* column 0: nothing to its left; the rest: the column before */
        err += row_u(u + r, u + n + r, px + r, px + n + r, zeros, zeros, py + r, py + n + r, up0, up1, g + r,
                     g + n + r, gsq + r, rc + r, 0, 1, l_t, theta);
        err += row_u(u + r, u + n + r, px + r, px + n + r, px + r - 1, px + n + r - 1, py + r, py + n + r, up0,
                     up1, g + r, g + n + r, gsq + r, rc + r, 1, w, l_t, theta);
        if (y > 0) p_rows(u, px, py, n, h, w, y - 1, taut);
    }
    p_rows(u, px, py, n, h, w, h - 1, taut);
    return err;
}

/* One inner run for each active pair of a batch (B, 2, H, W float32, contiguous), in place: at most `iters`
   iterations, a pair stopping after the iteration whose squared update of u is not above scaled_eps (the rule
   of tvl1_torch: OpenCV's). active[b]: 1 while a pair iterates, 0 once it stopped. steps[0]: the most
   iterations a pair ran. Returns the pairs left, or -1 if out of memory. */
int tvl1_inner(float *u, float *px, float *py, const float *g, const float *gsq, const float *rc,
               uint8_t *active, int b, int h, int w, int iters, float l_t, float theta, float taut,
               float scaled_eps, int32_t *steps) {
    const long n = (long)h * w;
    float *zeros = calloc((size_t)w, sizeof(float));
    if (!zeros) return -1;
    int left = 0;
    for (int k = 0; k < b; k++) {
        if (!active[k]) continue;
        float *uk = u + 2 * n * k, *pxk = px + 2 * n * k, *pyk = py + 2 * n * k;
        int it = 0, on = 1;
        while (on && it < iters) {
            const double err = iteration(uk, pxk, pyk, g + 2 * n * k, gsq + n * k, rc + n * k, zeros, h, w, l_t,
                                        theta, taut);
            on = err > scaled_eps;
            it++;
        }
        if (it > steps[0]) steps[0] = it;
        active[k] = (uint8_t)on;
        left += on;
    }
    free(zeros);
    return left;
}
"""


def _cache_dir() -> Path:
    return Path(compile_cache_dir()).parent / "ckernels"


def _cpu_key() -> str:
    # -march=native code runs only on CPUs with the same instruction sets: the key holds them
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next((ln for ln in lines if ln.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()}:{flags}"


def _build(cc: str) -> Path:
    key = hashlib.sha256("\n".join([SOURCE, " ".join(FLAGS), cc, _cpu_key()]).encode()).hexdigest()[:16]
    out = _cache_dir() / f"tvl1_inner-{key}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src, lib = Path(tmp) / "tvl1_inner.c", Path(tmp) / "tvl1_inner.so"
        src.write_text(SOURCE, encoding="utf-8")
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
    return lib, ""


def available() -> tuple[bool, str]:
    """Whether the C kernel can run here, and if not, why (one line)."""
    lib, why = _load()
    return lib is not None, why


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
    lib, why = _load()
    if lib is None:
        raise RuntimeError(f"the C TV-L1 kernel is not available: {why}")
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

