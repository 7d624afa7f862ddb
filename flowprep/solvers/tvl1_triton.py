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
def _cx(a, b):
    # a compare-exchange: the wire pair in order (a median network is these and nothing else)
    return tl.minimum(a, b), tl.maximum(a, b)


@triton.jit
def _sort3(a, b, c):
    a, b = _cx(a, b)
    b, c = _cx(b, c)
    a, b = _cx(a, b)
    return a, b, c


@triton.jit
def _sort4(a, b, c, d):
    a, b = _cx(a, b)
    c, d = _cx(c, d)
    a, c = _cx(a, c)
    b, d = _cx(b, d)
    b, c = _cx(b, c)
    return a, b, c, d


@triton.jit
def _sort5(a, b, c, d, e):
    # nine exchanges, the fewest that sort five
    a, b = _cx(a, b)
    d, e = _cx(d, e)
    c, e = _cx(c, e)
    c, d = _cx(c, d)
    a, d = _cx(a, d)
    a, c = _cx(a, c)
    b, e = _cx(b, e)
    b, d = _cx(b, d)
    b, c = _cx(b, c)
    return a, b, c, d, e


@triton.jit
def _median9(a0, a1, a2, b0, b1, b2, c0, c1, c2):
    """The median of a 3 x 3 window (rows a, b, c): sorted rows, then sorted columns, then the median of the
    anti-diagonal. 30 min/max against a 16-wide sort."""
    a0, a1, a2 = _sort3(a0, a1, a2)
    b0, b1, b2 = _sort3(b0, b1, b2)
    c0, c1, c2 = _sort3(c0, c1, c2)
    a0, b0, c0 = _sort3(a0, b0, c0)
    a1, b1, c1 = _sort3(a1, b1, c1)
    a2, b2, c2 = _sort3(a2, b2, c2)
    _, med, _ = _sort3(a2, b1, c0)
    return med


@triton.jit
def _median25(a0, a1, a2, a3, a4, b0, b1, b2, b3, b4, c0, c1, c2, c3, c4, d0, d1, d2, d3, d4,
              e0, e1, e2, e3, e4):
    """The median of a 5 x 5 window (rows a..e) by a min/max network of our own (the exhaustive 0-1 test in
    tests/flowprep/solvers/test_tvl1_triton.py is its proof). Rows sorted, then columns: the grid is then
    sorted both ways and the 13th value lies on anti-diagonals 3, 4 or 5. With the diagonals sorted, it is
    the larger of (3rd of diagonal 3, median of diagonal 4, smallest of diagonal 5) combined as below; the
    compiler drops what no output needs. About 190 min/max against a 32-wide bitonic sort (~1,000)."""
    a0, a1, a2, a3, a4 = _sort5(a0, a1, a2, a3, a4)
    b0, b1, b2, b3, b4 = _sort5(b0, b1, b2, b3, b4)
    c0, c1, c2, c3, c4 = _sort5(c0, c1, c2, c3, c4)
    d0, d1, d2, d3, d4 = _sort5(d0, d1, d2, d3, d4)
    e0, e1, e2, e3, e4 = _sort5(e0, e1, e2, e3, e4)
    a0, b0, c0, d0, e0 = _sort5(a0, b0, c0, d0, e0)
    a1, b1, c1, d1, e1 = _sort5(a1, b1, c1, d1, e1)
    a2, b2, c2, d2, e2 = _sort5(a2, b2, c2, d2, e2)
    a3, b3, c3, d3, e3 = _sort5(a3, b3, c3, d3, e3)
    a4, b4, c4, d4, e4 = _sort5(a4, b4, c4, d4, e4)
    _, _, p2, p3 = _sort4(a3, b2, c1, d0)  # diagonal 3: its two largest
    _, _, q2, _, _ = _sort5(a4, b3, c2, d1, e0)  # diagonal 4: its median
    s0, s1, _, _ = _sort4(b4, c3, d2, e1)  # diagonal 5: its two smallest
    return tl.maximum(tl.maximum(p2, tl.minimum(q2, s0)), tl.minimum(p3, tl.maximum(s0, tl.minimum(q2, s1))))


@triton.jit
def _taps5(src, yy, x, m, W):
    # one 5-wide window row at row yy: columns x-2..x+2, the border replicated
    row = src + yy * W
    return (tl.load(row + tl.maximum(x - 2, 0), mask=m), tl.load(row + tl.maximum(x - 1, 0), mask=m),
            tl.load(row + x, mask=m), tl.load(row + tl.minimum(x + 1, W - 1), mask=m),
            tl.load(row + tl.minimum(x + 2, W - 1), mask=m))


@triton.jit
def _taps3(src, yy, x, m, W):
    row = src + yy * W
    return tl.load(row + tl.maximum(x - 1, 0), mask=m), tl.load(row + x, mask=m), \
        tl.load(row + tl.minimum(x + 1, W - 1), mask=m)


@triton.jit
def _window25(src, y, x, m, H, W):
    a0, a1, a2, a3, a4 = _taps5(src, tl.maximum(y - 2, 0), x, m, W)
    b0, b1, b2, b3, b4 = _taps5(src, tl.maximum(y - 1, 0), x, m, W)
    c0, c1, c2, c3, c4 = _taps5(src, y, x, m, W)
    d0, d1, d2, d3, d4 = _taps5(src, tl.minimum(y + 1, H - 1), x, m, W)
    e0, e1, e2, e3, e4 = _taps5(src, tl.minimum(y + 2, H - 1), x, m, W)
    return _median25(a0, a1, a2, a3, a4, b0, b1, b2, b3, b4, c0, c1, c2, c3, c4, d0, d1, d2, d3, d4,
                     e0, e1, e2, e3, e4)


@triton.jit
def _window9(src, y, x, m, H, W):
    a0, a1, a2 = _taps3(src, tl.maximum(y - 1, 0), x, m, W)
    b0, b1, b2 = _taps3(src, y, x, m, W)
    c0, c1, c2 = _taps3(src, tl.minimum(y + 1, H - 1), x, m, W)
    return _median9(a0, a1, a2, b0, b1, b2, c0, c1, c2)


@triton.jit
def _window_sorted(src, y, x, m, H, W, K: tl.constexpr, WINDOW: tl.constexpr):
    # any K: the K*K window, padded to a power of two with +inf (sorted to the end), sorted in registers
    j = tl.arange(0, WINDOW)
    yy = tl.minimum(tl.maximum(y[:, None] + (j // K - K // 2)[None, :], 0), H - 1)  # border replicated
    xx = tl.minimum(tl.maximum(x[:, None] + (j % K - K // 2)[None, :], 0), W - 1)
    vals = tl.load(src + yy * W + xx, mask=m[:, None] & (j < K * K)[None, :], other=float("inf"))
    return tl.sum(tl.where((j == K * K // 2)[None, :], tl.sort(vals, dim=1), 0.0), axis=1)


@triton.jit
def _median_kernel(u_ptr, out_ptr, act_ptr, C, H, W, K: tl.constexpr, WINDOW: tl.constexpr, BLOCK: tl.constexpr,
                   NETWORK: tl.constexpr):
    b = tl.program_id(1)
    c = tl.program_id(2)
    hw = H * W
    o, m, y, x = _pixels(tl.program_id(0), H, W, BLOCK)
    src = u_ptr + (b * C + c) * hw
    if NETWORK and K == 5:
        med = _window25(src, y, x, m, H, W)
    elif NETWORK and K == 3:
        med = _window9(src, y, x, m, H, W)
    else:
        med = _window_sorted(src, y, x, m, H, W, K, WINDOW)
    keep = tl.load(src + o, mask=m, other=0.0)
    act = tl.load(act_ptr + b) != 0
    tl.store(out_ptr + (b * 2 + c) * hw + o, tl.where(act, med, keep), mask=m)


MEDIAN_BLOCK = 128  # pixels per program: BLOCK x window values live in registers during the sort


def median(u: torch.Tensor, ksize: int, active: torch.Tensor, network: bool = True) -> torch.Tensor:
    """ksize x ksize median of u's first two channels (B, C, H, W) -> (B, 2, H, W), border replicated, as
    ``medians.median_torch`` and ``cv2.medianBlur``, in one launch; stopped pairs come through unchanged.
    3 x 3 and 5 x 5 (TV-L1's) go through a min/max network; other sizes, or ``network=False`` (to time the
    two side by side), sort the window in registers. A median picks one of the values: both are exact."""
    b, c, h, w = u.shape
    u = u.contiguous()
    out = torch.empty((b, 2, h, w), dtype=u.dtype, device=u.device)
    window = triton.next_power_of_2(ksize * ksize)
    _median_kernel[(triton.cdiv(h * w, MEDIAN_BLOCK), b, 2)](u, out, active, c, h, w, K=ksize, WINDOW=window,
                                                             BLOCK=MEDIAN_BLOCK, NETWORK=network)
    return out
