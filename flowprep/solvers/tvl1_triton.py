"""One TV-L1 inner iteration as a single Triton kernel: thresholding, primal update, dual update and the stopping
measure in one pass over memory (``tvl1_torch.tvl1_step`` is the reference it must equal).

Why a hand-written kernel: the compiled torch step reads and writes each pixel's state about twice (u_new is
written, then read back with p for the dual update). Here each program recomputes u_new at its right and lower
neighbours (from values that are in cache anyway) so that u, p, the data-term gradients, |grad|^2 and rho are
read once and u, p written once: 10 floats in, 6 out, 64 B per pixel-iteration. Pairs that have stopped copy
their state through. The stopping measure is summed per program into a (B, programs) buffer, then added up by
torch: no atomics, so the same input gives the same stopping decisions every run.

Only the two-channel form (gamma = 0, OpenCV's default) has a kernel; ``step`` hands the illumination form to
the torch step. On a machine without a GPU the kernel runs under Triton's interpreter (``TRITON_INTERPRET=1``),
which is how the tests compare it with the torch step.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from flowprep.solvers.tvl1_torch import FLT_EPSILON, tvl1_step

# One pixel per thread: 54 registers under triton 3.6, 98 under 3.8, so enough warps per multiprocessor to hide
# the memory latency. 4 pixels per thread (1024 x 4 warps, the first try) took 255 registers: 2 warps per
# multiprocessor, 1.4 TB/s on the H200 (benchmarks/TVL1.md; a test compiles it for sm_90 and reads ptxas -v).
BLOCK, WARPS = 256, 8


@triton.jit
def _pixels(pid, H, W, BLOCK: tl.constexpr):
    # the flat offsets of a program's pixels in an H x W plane, which of them exist, and their row and column
    o = pid * BLOCK + tl.arange(0, BLOCK)
    y = o // W
    return o, o < H * W, y, o - y * W


@triton.jit
def _primal(u_ptr, px_ptr, py_ptr, g_ptr, gsq_ptr, rc_ptr, c0, c1, s, o, m, m_left, m_up, W, l_t, theta,
            FLT_EPS: tl.constexpr):
    # u before and after the primal update at flat offsets o of one pair (both channels), and p at o.
    # c0, c1: where the pair's channel 0 and 1 start in the (B, 2, H, W) tensors; s: in the (B, H, W) ones.
    u1 = tl.load(u_ptr + c0 + o, mask=m, other=0.0)
    u2 = tl.load(u_ptr + c1 + o, mask=m, other=0.0)
    g1 = tl.load(g_ptr + c0 + o, mask=m, other=0.0)
    g2 = tl.load(g_ptr + c1 + o, mask=m, other=0.0)
    gsq = tl.load(gsq_ptr + s + o, mask=m, other=0.0)
    rho = tl.load(rc_ptr + s + o, mask=m, other=0.0) + (g1 * u1 + g2 * u2)
    lg = l_t * gsq
    safe = tl.where(gsq > FLT_EPS, gsq, 1.0)  # no division by zero where the gradient vanishes
    fi = tl.where(rho < -lg, l_t, tl.where(rho > lg, -l_t, tl.where(gsq > FLT_EPS, -tl.div_rn(rho, safe), 0.0)))
    px1 = tl.load(px_ptr + c0 + o, mask=m, other=0.0)
    px2 = tl.load(px_ptr + c1 + o, mask=m, other=0.0)
    py1 = tl.load(py_ptr + c0 + o, mask=m, other=0.0)
    py2 = tl.load(py_ptr + c1 + o, mask=m, other=0.0)
    div1 = (px1 - tl.load(px_ptr + c0 + o - 1, mask=m_left, other=0.0)) \
        + (py1 - tl.load(py_ptr + c0 + o - W, mask=m_up, other=0.0))
    div2 = (px2 - tl.load(px_ptr + c1 + o - 1, mask=m_left, other=0.0)) \
        + (py2 - tl.load(py_ptr + c1 + o - W, mask=m_up, other=0.0))
    n1 = (u1 + fi * g1) + theta * div1
    n2 = (u2 + fi * g2) + theta * div2
    return u1, u2, n1, n2, px1, px2, py1, py2


@triton.jit
def _step_kernel(u_ptr, px_ptr, py_ptr, g_ptr, gsq_ptr, rc_ptr, act_ptr, uo_ptr, pxo_ptr, pyo_ptr, part_ptr,
                 H, W, l_t, theta, taut, BLOCK: tl.constexpr, FLT_EPS: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1)
    hw = H * W
    o, m, y, x = _pixels(pid, H, W, BLOCK)
    right, down, left, up = m & (x < W - 1), m & (y < H - 1), m & (x > 0), m & (y > 0)
    c0 = b * 2 * hw
    c1 = c0 + hw
    s = b * hw
    u1, u2, n1, n2, px1, px2, py1, py2 = _primal(u_ptr, px_ptr, py_ptr, g_ptr, gsq_ptr, rc_ptr, c0, c1, s, o, m,
                                                 left, up, W, l_t, theta, FLT_EPS)
    # u_new of the right and lower neighbours: the forward gradient of u_new without a second pass
    _, _, r1, r2, _, _, _, _ = _primal(u_ptr, px_ptr, py_ptr, g_ptr, gsq_ptr, rc_ptr, c0, c1, s, o + 1, right,
                                       right, right & (y > 0), W, l_t, theta, FLT_EPS)
    _, _, d1, d2, _, _, _, _ = _primal(u_ptr, px_ptr, py_ptr, g_ptr, gsq_ptr, rc_ptr, c0, c1, s, o + W, down,
                                       down & (x > 0), down, W, l_t, theta, FLT_EPS)
    ux1, ux2 = tl.where(right, r1 - n1, 0.0), tl.where(right, r2 - n2, 0.0)
    uy1, uy2 = tl.where(down, d1 - n1, 0.0), tl.where(down, d2 - n2, 0.0)
    norm1 = 1.0 + taut * tl.sqrt_rn(ux1 * ux1 + uy1 * uy1)
    norm2 = 1.0 + taut * tl.sqrt_rn(ux2 * ux2 + uy2 * uy2)
    act = tl.load(act_ptr + b) != 0
    tl.store(uo_ptr + c0 + o, tl.where(act, n1, u1), mask=m)
    tl.store(uo_ptr + c1 + o, tl.where(act, n2, u2), mask=m)
    tl.store(pxo_ptr + c0 + o, tl.where(act, tl.div_rn(px1 + taut * ux1, norm1), px1), mask=m)
    tl.store(pxo_ptr + c1 + o, tl.where(act, tl.div_rn(px2 + taut * ux2, norm2), px2), mask=m)
    tl.store(pyo_ptr + c0 + o, tl.where(act, tl.div_rn(py1 + taut * uy1, norm1), py1), mask=m)
    tl.store(pyo_ptr + c1 + o, tl.where(act, tl.div_rn(py2 + taut * uy2, norm2), py2), mask=m)
    e1, e2 = n1 - u1, n2 - u2
    err = tl.sum(tl.where(m, e1 * e1 + e2 * e2, 0.0), axis=0)
    tl.store(part_ptr + b * tl.num_programs(0) + pid, err)


def step(u: torch.Tensor, px: torch.Tensor, py: torch.Tensor, grads: torch.Tensor, grad_sq: torch.Tensor,
         rho_c: torch.Tensor, active: torch.Tensor, scaled_eps: torch.Tensor, l_t: float, theta: float,
         taut: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``tvl1_torch.tvl1_step`` as one kernel launch (plus the per-pair sum of the stopping measure); same
    arguments, same results. The illumination form (three channels) goes to the torch step."""
    if u.shape[1] != 2:
        return tvl1_step(u, px, py, grads, grad_sq, rho_c, active, scaled_eps, l_t, theta, taut)
    b, _, h, w = u.shape
    u, px, py, grads = u.contiguous(), px.contiguous(), py.contiguous(), grads.contiguous()
    programs = triton.cdiv(h * w, BLOCK)
    uo, pxo, pyo = torch.empty_like(u), torch.empty_like(px), torch.empty_like(py)
    parts = torch.empty((b, programs), dtype=torch.float32, device=u.device)
    _step_kernel[(programs, b)](u, px, py, grads, grad_sq.contiguous(), rho_c.contiguous(), active, uo, pxo, pyo,
                                parts, h, w, l_t, theta, taut, BLOCK=BLOCK, FLT_EPS=FLT_EPSILON, num_warps=WARPS)
    return uo, pxo, pyo, active & (parts.sum(dim=1) > scaled_eps)


@triton.jit
def _median_kernel(u_ptr, out_ptr, act_ptr, C, H, W, K: tl.constexpr, WINDOW: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(1)
    c = tl.program_id(2)
    hw = H * W
    o, m, y, x = _pixels(tl.program_id(0), H, W, BLOCK)
    j = tl.arange(0, WINDOW)  # the K*K window, padded to a power of two with +inf (sorted to the end)
    yy = tl.minimum(tl.maximum(y[:, None] + (j // K - K // 2)[None, :], 0), H - 1)  # border replicated
    xx = tl.minimum(tl.maximum(x[:, None] + (j % K - K // 2)[None, :], 0), W - 1)
    src = u_ptr + (b * C + c) * hw
    vals = tl.load(src + yy * W + xx, mask=m[:, None] & (j < K * K)[None, :], other=float("inf"))
    med = tl.sum(tl.where((j == K * K // 2)[None, :], tl.sort(vals, dim=1), 0.0), axis=1)
    keep = tl.load(src + o, mask=m, other=0.0)
    act = tl.load(act_ptr + b) != 0
    tl.store(out_ptr + (b * 2 + c) * hw + o, tl.where(act, med, keep), mask=m)


MEDIAN_BLOCK = 128  # pixels per program: BLOCK x window values live in registers during the sort


def median(u: torch.Tensor, ksize: int, active: torch.Tensor) -> torch.Tensor:
    """ksize x ksize median of u's first two channels (B, C, H, W) -> (B, 2, H, W), border replicated, as
    ``medians.median_torch`` and ``cv2.medianBlur``: one launch, the window sorted in registers (a median
    picks one of the values, so the result is exact); stopped pairs come through unchanged."""
    b, c, h, w = u.shape
    u = u.contiguous()
    out = torch.empty((b, 2, h, w), dtype=u.dtype, device=u.device)
    window = triton.next_power_of_2(ksize * ksize)
    _median_kernel[(triton.cdiv(h * w, MEDIAN_BLOCK), b, 2)](u, out, active, c, h, w, K=ksize, WINDOW=window,
                                                             BLOCK=MEDIAN_BLOCK)
    return out
