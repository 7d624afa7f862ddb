"""TV-L1 optical flow in PyTorch, batched over frame pairs, computed the way OpenCV's DualTVL1OpticalFlow does.

A port of ``cv::optflow::DualTVL1OpticalFlow`` (opencv_contrib ``modules/optflow/src/tvl1flow.cpp``): the
duality scheme of Zach, Pock & Bischof (2007) with Wedel et al.'s median filtering, as described by Sanchez,
Meinhardt-Llopis & Facciolo (IPOL 2013). Same parameters, same defaults, same meaning (``TVL1Params``).

What must match OpenCV for the flow to match (measured while planning: EPE 0.21 when right, 0.216-0.47 when not):
- the pyramid: each level is ``cv::resize(previous, fx=fy=scale_step, INTER_LINEAR)``: size *rounded*
  (204.8 -> 205), source coordinate ``(x + 0.5) / scale_step - 0.5`` clamped at the border; levels stop
  before a side drops under 16 pixels;
- the warp: bicubic (Keys a = -0.75, as ``cv::remap(INTER_CUBIC)``), not bilinear: bilinear alone costs 5% EPE;
  pixel coordinates (``align_corners=True``); zeros outside the image (``BORDER_CONSTANT``);
- the stopping rule, per pair: after each inner iteration, the sum over pixels of the squared update of u
  against ``epsilon**2 * H * W`` of the level; the error is reset at each warp.

Batching: every pair has its own stopping test. A pair that has stopped keeps its values (``torch.where``) while
the others go on, so a batch gives the same flow as its pairs one by one. The host looks at the per-pair flags
only every ``check_every`` inner iterations (and at each outer iteration) to end the loops early: on CUDA there
is no host sync inside those k iterations, and with ``lookahead`` the host reads each count a check late, so the
GPU never waits for it (``ActiveCounts``); the flags themselves are exact at every iteration.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from flowprep.errors import FlowprepError
from flowprep.solvers import check_params
from flowprep.solvers.active_counts import ActiveCounts
from flowprep.solvers.medians import median_opencv, median_torch

FLT_EPSILON = float(np.finfo(np.float32).eps)  # OpenCV's test for a zero image gradient
MIN_LEVEL_SIDE = 16  # OpenCV stops the pyramid before a side gets smaller than this


@dataclass(frozen=True)
class TVL1Params:
    """OpenCV's DualTVL1OpticalFlow parameters, with its defaults and meaning.

    tau: time step of the dual scheme; lambda_: weight of the data term (``lambda`` in flowprep's
    params dict); theta: coupling between u and v; nscales: pyramid levels; warps: warps per level;
    epsilon: stopping threshold (root mean squared update of u per pixel); inner_iterations and
    outer_iterations: at most outer x inner iterations per warp, median filtering before each inner run;
    scale_step: pyramid scale factor; gamma: weight of the illumination term (0 = off);
    median_filtering: median window side (<= 1 = off).
    """

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    def __post_init__(self) -> None:
        check_params("tvl1", self.as_dict())  # the same rules as SolverConfig's

    @classmethod
    def from_dict(cls, params: dict) -> "TVL1Params":
        """Build from flowprep's params dict (key ``lambda``, as in ``solvers.ALGO_DEFAULTS['tvl1']``)."""
        d = dict(params)
        if "lambda" in d:
            d["lambda_"] = d.pop("lambda")
        return cls(**d)

    def as_dict(self) -> dict:
        """flowprep's params dict: the key ``lambda`` instead of ``lambda_``."""
        d = asdict(self)
        d["lambda"] = d.pop("lambda_")
        return d


# The fast end of the speed/accuracy trade-off (benchmarks/TVL1.md has its EPE and speed): fewer warps and
# iterations per level, the stopping rule unchanged.
FAST_PARAMS = {"warps": 2, "outer_iterations": 3, "inner_iterations": 20}


def pyramid_sizes(height: int, width: int, nscales: int, scale_step: float) -> list[tuple[int, int]]:
    """(H, W) of each pyramid level, finest first, as OpenCV sizes them (rounded, none under 16 pixels)."""
    sizes = [(height, width)]
    for _ in range(1, nscales):
        h, w = sizes[-1]
        # cv::resize with fx, fy: dsize = saturate_cast<int>(size * f), i.e. rounded half to even, as round()
        nh, nw = round(h * scale_step), round(w * scale_step)
        if nh < MIN_LEVEL_SIDE or nw < MIN_LEVEL_SIDE:
            break
        sizes.append((nh, nw))
    return sizes


@lru_cache(maxsize=256)
def linear_taps(n_out: int, n_in: int, src_per_dst: float) -> tuple[np.ndarray, ...]:
    """cv::resize INTER_LINEAR along one axis: each output pixel's two source indices (int32) and their weights
    (float32); half-pixel centres, clamped at both ends (where both taps are one pixel, its weight is 1)."""
    x = (np.arange(n_out) + 0.5) * src_per_dst - 0.5
    x0 = np.floor(x)
    frac = x - x0
    x0 = x0.astype(np.int64)
    frac[x0 < 0] = 0.0
    lo = np.clip(x0, 0, n_in - 1)
    hi = np.clip(x0 + 1, 0, n_in - 1)
    w_lo, w_hi = 1.0 - frac, frac
    w_lo[lo == hi], w_hi[lo == hi] = 1.0, 0.0
    return lo.astype(np.int32), hi.astype(np.int32), w_lo.astype(np.float32), w_hi.astype(np.float32)


def resize_linear(img: torch.Tensor, size: tuple[int, int], src_per_dst: tuple[float, float]) -> torch.Tensor:
    """``cv::resize(INTER_LINEAR)`` of (..., H, W) to ``size``, source step per output pixel (y, x) given.

    Rows, then columns, two taps each (``linear_taps``), so that sizes and coordinates follow OpenCV exactly;
    ``F.interpolate`` can neither round the size nor take a scale that differs from in/out.
    """
    out = img
    for axis, n_out, step in ((-2, size[0], src_per_dst[0]), (-1, size[1], src_per_dst[1])):
        lo, hi, w_lo, w_hi = (torch.from_numpy(t).to(img.device) for t in linear_taps(n_out, out.shape[axis], step))
        view = (-1, 1) if axis == -2 else (-1,)
        out = out.index_select(axis, lo) * w_lo.view(view) + out.index_select(axis, hi) * w_hi.view(view)
    return out


def build_pyramid(img: torch.Tensor, sizes: list[tuple[int, int]], scale_step: float,
                  resize: ResizeFn = resize_linear) -> list[torch.Tensor]:
    """Levels of (B, H, W) ``img`` at ``sizes`` (from ``pyramid_sizes``), each resized from the one above."""
    levels = [img]
    for size in sizes[1:]:
        levels.append(resize(levels[-1], size, (1.0 / scale_step, 1.0 / scale_step)))
    return levels


def centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of (B, H, W), one-sided halves at the borders (OpenCV's ``centeredGradient``)."""
    p = F.pad(img[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # replicate turns the border into 0.5*(a1-a0)
    dx = 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2])
    dy = 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])
    return dx, dy


def forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of (..., H, W), zero on the last column (x) and last row (y)."""
    ux = F.pad(u[..., 1:] - u[..., :-1], (0, 1))
    uy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return ux, uy


def divergence(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence of (px, py), the values before the first row/column taken as 0."""
    return (px - F.pad(px[..., :-1], (1, 0))) + (py - F.pad(py[..., :-1, :], (0, 0, 1, 0)))


def warp_bicubic(imgs: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample (B, C, H, W) at (x + u, y + v) like ``cv::remap(INTER_CUBIC, BORDER_CONSTANT=0)``; flow (B, 2, H, W)."""
    _, _, h, w = imgs.shape
    ys = torch.arange(h, device=imgs.device, dtype=imgs.dtype).view(1, h, 1)
    xs = torch.arange(w, device=imgs.device, dtype=imgs.dtype).view(1, 1, w)
    # align_corners=True: -1 and 1 are the centres of the first and last pixels, i.e. plain pixel coordinates
    gx = (xs + flow[:, 0]) * (2.0 / (w - 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / (h - 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)  # (B, H, W, 2)
    return F.grid_sample(imgs, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


def tvl1_step(u: torch.Tensor, px: torch.Tensor, py: torch.Tensor, grads: torch.Tensor, grad_sq: torch.Tensor,
              rho_c: torch.Tensor, active: torch.Tensor, scaled_eps: torch.Tensor, l_t: float, theta: float,
              taut: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One inner iteration of TV-L1 for a batch: thresholding, primal update, dual update, stopping test.

    Args:
        u: (B, C, H, W) flow (C = 2, or 3 with the illumination term u3).
        px, py: (B, C, H, W) dual variables.
        grads: (B, C, H, W) gradient of the data term per channel: I1wx, I1wy (and gamma).
        grad_sq: (B, H, W) |grad I1w|^2; rho_c: (B, H, W) constant part of the residual.
        active: (B,) bool, pairs still iterating; scaled_eps: 0-d, epsilon^2 * H * W.
        l_t, theta, taut: lambda*theta, theta, tau/theta.
    Returns:
        u, px, py updated where active, and the new active flags (the update was still above scaled_eps).
    """
    # thresholding step (OpenCV's estimateV): v = u + fi * grad, fi from where rho falls
    rho = rho_c + (grads * u).sum(dim=1)  # (B, H, W)
    lg = l_t * grad_sq
    fi = torch.where(rho < -lg, l_t,
                     torch.where(rho > lg, -l_t, torch.where(grad_sq > FLT_EPSILON, -rho / grad_sq, 0.0)))
    v = u + fi[:, None] * grads
    # primal update (estimateU) and its squared change, the stopping measure
    u_new = v + theta * divergence(px, py)
    err = (u_new - u).square().sum(dim=(1, 2, 3))  # (B,)
    # dual update (estimateDualVariables)
    ux, uy = forward_gradient(u_new)
    # sqrt(x^2 + y^2), not torch.hypot: within an ulp of OpenCV's hypot, and 2x faster compiled on the CPU
    norm = 1.0 + taut * torch.sqrt(ux * ux + uy * uy)
    px_new = (px + taut * ux) / norm
    py_new = (py + taut * uy) / norm
    a = active[:, None, None, None]
    return (torch.where(a, u_new, u), torch.where(a, px_new, px), torch.where(a, py_new, py),
            active & (err > scaled_eps))


StepFn = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
MedianFn = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]
RunFn = Callable[..., tuple[torch.Tensor, int, int]]
DataFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], list[torch.Tensor]]
ResizeFn = Callable[[torch.Tensor, tuple[int, int], tuple[float, float]], torch.Tensor]


class TVL1:
    """Batched TV-L1: call it with (B, H, W) frame tensors (uint8 or float in [0, 255]) to get (B, 2, H, W) flow.

    Args:
        params: the algorithm's parameters (OpenCV's meaning and defaults).
        step: the inner-iteration function, ``tvl1_step`` or a ``torch.compile`` of it (torch_backend does that).
        check_every: inner iterations between two host checks of "has every pair stopped?" (each is one host
            sync on CUDA). 1 on the CPU (free there); None: 1 on the CPU, 10 elsewhere.
        median: "auto" (cv2.medianBlur on the CPU for windows 3 and 5, the torch median elsewhere), "torch", or
            a function ``(u, ksize, active) -> (B, 2, H, W)`` that filters u's first two channels of the active
            pairs and passes the others through (``tvl1_triton.median``).
        block: ``check_every`` steps in one call, used wherever that many are left before a check (a CUDA graph
            of them: ``cuda_graphs.GraphedSteps``); None: one step at a time.
        compact: pairs that have stopped leave the batch within a warp (``_warp``) instead of being carried
            along masked: the same flow, less work when a batch's pairs stop at different times.
        run: a whole run of inner iterations in one call, in place (``tvl1_c.inner_run``, the CPU's fused C
            loop), instead of ``step`` once per iteration; None: ``step``.
        data: a warp's data term ``(i0, sources, u) -> [grads, grad_sq, rho_c]`` (``tvl1_c.data_term``: the
            bicubic warp and the data term in one C pass); None: ``warp_bicubic`` and torch (``_data_term``).
        resize: ``resize_linear`` or a function like it (``tvl1_c.resize_linear``), for the pyramids and the flow.
        lookahead: checks by which the host reads "how many pairs are left" late (``ActiveCounts``): 1 on a GPU
            keeps it busy while the host waits; the same flow, at most ``check_every`` masked iterations more.
    """

    MEDIAN_CHUNK = 8  # pairs per torch median call: its k*k window stack is the largest temporary

    def __init__(self, params: TVL1Params = TVL1Params(), step: StepFn = tvl1_step, check_every: int | None = None,
                 median: str | MedianFn = "auto", block: StepFn | None = None, compact: bool = True,
                 run: RunFn | None = None, data: DataFn | None = None, resize: ResizeFn = resize_linear,
                 lookahead: int = 0):
        if median not in ("auto", "torch") and not callable(median):
            raise ValueError(f"median must be 'auto', 'torch' or a function, got {median!r}")
        self.params = params
        self.step = step
        self.check_every = check_every
        self.median = median
        self.block = block
        self.compact = compact
        self.run = run
        self.data = data or self._data_term
        self.resize = resize
        self.lookahead = lookahead
        self.inner_steps = 0  # batch inner iterations run by the last call (a work measure for benchmarks)

    def __call__(self, frames0: torch.Tensor, frames1: torch.Tensor) -> torch.Tensor:
        """Flow from frames0 to frames1: (B, H, W) x 2 -> (B, 2, H, W) float32, (dx, dy) in pixels."""
        if frames0.shape != frames1.shape or frames0.ndim != 3:
            raise ValueError(f"frames must both be (B, H, W); got {tuple(frames0.shape)} and {tuple(frames1.shape)}")
        if min(frames0.shape[1:]) < 3:
            raise FlowprepError(f"frames of {frames0.shape[2]}x{frames0.shape[1]} px are too small for the torch "
                                "TV-L1 (3x3 at least): use --backend opencv, or --size")
        p = self.params
        b, h, w = frames0.shape
        sizes = pyramid_sizes(h, w, p.nscales, p.scale_step)
        both = build_pyramid(torch.cat((frames0, frames1)).float(), sizes, p.scale_step, self.resize)
        i0s, i1s = [level[:b] for level in both], [level[b:] for level in both]
        channels = 3 if p.gamma != 0 else 2
        u = frames0.new_zeros((b, channels) + sizes[-1], dtype=torch.float32)
        self.inner_steps = 0
        for s in range(len(sizes) - 1, -1, -1):
            u = self._one_scale(i0s[s], i1s[s], u)
            if s > 0:
                # zoom to the next finer level (u3, the illumination term, is not a displacement: not scaled)
                hs, ws = sizes[s]
                hf, wf = sizes[s - 1]
                u = self.resize(u, sizes[s - 1], (hs / hf, ws / wf))
                u[:, :2] *= 1.0 / p.scale_step
        return u[:, :2].contiguous()

    def _one_scale(self, i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        # OpenCV's procOneScale for a batch: i0, i1 (B, H, W), u (B, C, H, W) -> u refined at this level.
        p = self.params
        b, h, w = i0.shape
        on_cpu = i0.device.type == "cpu"
        check_every = self.check_every or (1 if on_cpu else 10)
        l_t, taut = float(np.float32(p.lambda_ * p.theta)), float(np.float32(p.tau / p.theta))
        scaled_eps = torch.tensor(float(np.float32(p.epsilon * p.epsilon * h * w)), device=i0.device)
        i1x, i1y = centered_gradient(i1)
        u = u.contiguous()  # (a fused run changes u, px and py in place)
        px = torch.zeros_like(u)
        py = torch.zeros_like(u)
        sources = torch.stack((i1, i1x, i1y), dim=1)  # what each warp samples: I1w, I1wx, I1wy
        for _ in range(p.warps):
            grads, grad_sq, rho_c = self.data(i0, sources, u)
            if u.shape[1] == 3:
                grads = torch.cat((grads, torch.full_like(i0, p.gamma)[:, None]), dim=1)
            u, px, py = self._warp([u, px, py], [grads, grad_sq, rho_c], scaled_eps, (l_t, p.theta, taut),
                                   check_every)
        return u

    @staticmethod
    def _data_term(i0: torch.Tensor, sources: torch.Tensor, u: torch.Tensor) -> list[torch.Tensor]:
        # I1 and its gradients warped by u, and the data term from them: the gradients (B, 2, H, W), their
        # squared norm and the constant part of the residual (B, H, W)
        warped = warp_bicubic(sources, u[:, :2])
        i1w, grads = warped[:, 0], warped[:, 1:3]
        return [grads, grads.square().sum(dim=1), i1w - (grads * u[:, :2]).sum(dim=1) - i0]

    def _warp(self, state: list[torch.Tensor], data: list[torch.Tensor], scaled_eps: torch.Tensor,
              consts: tuple[float, float, float], check_every: int) -> list[torch.Tensor]:
        # the outer iterations of one warp on state [u, px, py]; the error is reset at each warp, so every pair
        # starts active. Compaction: once the pairs still iterating fit a batch a quarter smaller, the working
        # set is cut down to them (plus stopped ones to fill a bucket size) instead of masking the rest
        active = torch.ones(state[0].shape[0], dtype=torch.bool, device=state[0].device)
        full, idx, counts = None, None, ActiveCounts(self.lookahead)
        for _ in range(self.params.outer_iterations):
            if self.params.median_filtering > 1:
                state[0] = self._median(state[0], active)
            *state, active = self._inner(*state, data, active, scaled_eps, consts, check_every, counts)
            left = active.shape[0] if counts.known is None else counts.known  # never fewer than are active
            if left == 0:
                break
            keep = self._keep(left, active.shape[0])
            if keep < active.shape[0]:
                if idx is None:  # the whole batch, as the first cut finds it (copied: graphs own their outputs)
                    full = [t.clone() for t in state]
                else:
                    for f, t in zip(full, state):
                        f[idx] = t
                order = torch.argsort((~active).to(torch.uint8), stable=True)[:keep]  # the active pairs first
                idx = order if idx is None else idx[order]
                state, data, active = [t[order] for t in state], [t[order] for t in data], active[order]
        if idx is None:
            return state
        for f, t in zip(full, state):
            f[idx] = t
        return full

    def _keep(self, left: int, size: int) -> int:
        # the working set's next size: ``left`` active pairs rounded up to a bucket (a multiple of 8 past 8, so
        # that few shapes need a compiled step or a CUDA graph), cut only when that saves a quarter
        if not self.compact:
            return size
        bucket = left if left <= 8 else -(-left // 8) * 8
        return bucket if bucket <= 0.75 * size else size

    def _inner(self, u: torch.Tensor, px: torch.Tensor, py: torch.Tensor, data: list[torch.Tensor],
               active: torch.Tensor, scaled_eps: torch.Tensor, consts: tuple[float, float, float],
               check_every: int, counts: ActiveCounts) -> tuple[torch.Tensor, ...]:
        # one run of inner iterations; the host counts the active pairs every check_every iterations and at the
        # end (``counts``: the outer loop reads the last one), so a GPU syncs once per check, or not at all
        n, inner = 0, self.params.inner_iterations
        if self.run is not None:  # the whole run in one call (a pair stops at its own iteration, as below)
            active, left, steps = self.run(u, px, py, data, active, float(scaled_eps), consts, inner)
            self.inner_steps += steps
            counts.set(left)
            return u, px, py, active
        while n < inner:
            k = check_every if self.block is not None and inner - n >= check_every else 1
            u, px, py, active = (self.block if k > 1 else self.step)(u, px, py, *data, active, scaled_eps, *consts)
            n += k
            self.inner_steps += k
            if (n % check_every == 0 or n == inner) and counts.push(active) == 0:
                break
        return u, px, py, active

    def _median(self, u: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        # median of u1, u2 only (OpenCV leaves u3 alone), on the pairs still active
        k = self.params.median_filtering
        if callable(self.median):
            uv = self.median(u, k, active)
        elif self.median == "auto" and u.device.type == "cpu" and k in (3, 5):  # cv2's float median: 3 and 5 only
            uv = median_opencv(u[:, :2], k, active)
        else:
            med = torch.cat([median_torch(c, k) for c in u[:, :2].split(self.MEDIAN_CHUNK)])
            uv = torch.where(active[:, None, None, None], med, u[:, :2])
        return torch.cat((uv, u[:, 2:]), dim=1) if u.shape[1] == 3 else uv
