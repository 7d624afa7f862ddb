"""The GPU check's looks inside (benchmarks/gpu_check.py): the Triton kernels alone at several launch shapes,
where one batch's time goes (torch.profiler), and JPEG encoding on the host's cores against nvJPEG; one
function each, in the style of gpu_check_flow's checks."""
from __future__ import annotations

import os
import time

import numpy as np
from bench_tvl1_work import STEP_BYTES, work_per_pair
from gpu_check_flow import Context, _result, clip_frames

KERNEL_SHAPE = (64, 2, 240, 320)  # the backend's batch at 320x240: the finest level's state
STEP_SHAPES = ((256, 8), (128, 4), (512, 8), (1024, 4))  # (pixels per program, warps); the first is the default


def _time_cuda(fn, reps: int = 50) -> float:
    """Microseconds per call of fn on the GPU (CUDA events, after three warm-up calls)."""
    import torch
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / reps


def _clip_work(ctx: Context) -> dict[str, float]:
    # bench_tvl1_work's counts per pair on the real clip, with the CUDA solver one pair and one step at a time
    from flowprep.solvers import ALGO_DEFAULTS, torch_backend
    solver = torch_backend.make("tvl1", dict(ALGO_DEFAULTS["tvl1"]), ctx.device, 1, graphs=False, lookahead=0)
    return work_per_pair(solver, clip_frames(ctx.data, 7))


def _median_figures(u, active) -> dict:
    """The 5x5 median by the min/max network (the default) and by sorting the window (the reference, what runs
    1-2 measured): microseconds per call on the batch, the ratio, and whether the two agree to the bit."""
    import torch

    from flowprep.solvers import tvl1_triton
    net_us = _time_cuda(lambda: tvl1_triton.median(u, 5, active))
    sorted_us = _time_cuda(lambda: tvl1_triton.median(u, 5, active, network=False))
    same = torch.equal(tvl1_triton.median(u, 5, active), tvl1_triton.median(u, 5, active, network=False))
    return {"median_5x5_us": round(net_us, 1), "median_5x5_sorted_us": round(sorted_us, 1),
            "median network speed-up": round(sorted_us / net_us, 2), "network equals sorted": same}


def check_kernels(ctx: Context) -> dict:
    """The fused step and the median on a batch-64 320x240 state: microseconds per call and the bandwidth the
    step's 64 B per pixel make of it, at several launch shapes (the copy bandwidth of the card beside it); and
    with the work of a pair of the real clip (``bench_tvl1_work``), the pairs/s these kernels alone allow."""
    import torch

    from flowprep.solvers import tvl1_triton
    t0 = time.perf_counter()
    if ctx.dry or not ctx.cuda:
        return _result("the Triton kernels alone", t0, "skipped", {}, "needs CUDA")
    work = _clip_work(ctx)
    b, c, h, w = KERNEL_SHAPE
    g = torch.Generator(device="cuda").manual_seed(0)
    u, px, py, grads = (torch.randn(KERNEL_SHAPE, device="cuda", generator=g) for _ in range(4))
    grad_sq, rho_c = grads.square().sum(dim=1), torch.randn(b, h, w, device="cuda", generator=g)
    active, eps = torch.ones(b, dtype=torch.bool, device="cuda"), torch.tensor(0.01, device="cuda")
    rows, default = [], (tvl1_triton.BLOCK, tvl1_triton.WARPS)
    try:
        for block, warps in STEP_SHAPES:
            tvl1_triton.BLOCK, tvl1_triton.WARPS = block, warps
            us = _time_cuda(lambda: tvl1_triton.step(u, px, py, grads, grad_sq, rho_c, active, eps, 0.045, 0.3, 0.8))
            rows.append({"block": block, "warps": warps, "us_per_call": round(us, 1),
                         "GB_s": round(b * h * w * STEP_BYTES / us / 1e3),
                         "step_only_pairs_s": round(1e6 * b * h * w / (us * work["pixel_iterations"]))})
    finally:
        tvl1_triton.BLOCK, tvl1_triton.WARPS = default
    big = torch.empty(2**28, device="cuda")  # 1 GiB: the card's copy bandwidth, read + write
    copy_us = _time_cuda(lambda: big.clone(), reps=10)
    medians = _median_figures(u, active)
    per_pair_us = (rows[0]["us_per_call"] * work["pixel_iterations"]
                   + medians["median_5x5_us"] * work["median_pixels"]) / (b * h * w)
    return _result("the Triton kernels alone", t0, "pass" if medians["network equals sorted"] else "fail",
                   {"state": "x".join(map(str, KERNEL_SHAPE)), "step": rows, **medians,
                    "copy_GB_s (read + write)": round(2 * big.numel() * 4 / copy_us / 1e3),
                    "work per pair of the clip": {k: round(v) for k, v in work.items()},
                    "step + median only, pairs/s (default shape)": round(1e6 / per_pair_us)})


def _cpu_encode_rate(images: list[np.ndarray], quality: int, seconds: float = 3.0) -> float:
    """Gray JPEGs per second from flowprep.codecs.jpeg.encode_gray (libjpeg-turbo) on every core (it frees the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from flowprep.codecs.jpeg import encode_gray
    n, t = 0, time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        while n == 0 or time.perf_counter() - t < seconds:
            n += sum(1 for _ in pool.map(lambda im: encode_gray(im, quality), images))
    return n / (time.perf_counter() - t)


def _nvjpeg_rate(images: list[np.ndarray], quality: int, seconds: float = 3.0) -> tuple[float, str]:
    """Gray JPEGs per second from torchvision's nvJPEG encoder on CUDA tensors (batched), and the layout used."""
    import torch
    from torchvision.io import encode_jpeg
    gpu = [torch.from_numpy(im)[None].cuda() for im in images]
    try:
        encode_jpeg(gpu[:2], quality=quality)
        layout = "gray (1, H, W)"
    except Exception:  # an encoder that takes colour only: the gray plane as three channels
        gpu = [g.expand(3, -1, -1).contiguous() for g in gpu]
        encode_jpeg(gpu[:2], quality=quality)
        layout = "gray as 3 channels"
    torch.cuda.synchronize()
    n, t = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t < seconds:
        n += len(encode_jpeg(gpu, quality=quality))
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t), layout


def check_jpeg(ctx: Context) -> dict:
    """JPEG encoding for 2,000 pairs/s (two flow planes and one RGB frame per pair): libjpeg-turbo on all the
    host's cores against nvJPEG on the GPU, on 320x240 planes of the real clip."""
    from flowprep.extraction.config import ExtractConfig
    quality = ExtractConfig().quality
    t0 = time.perf_counter()
    if ctx.dry:
        return _result("JPEG encode: cores vs nvJPEG", t0, "skipped", {}, "dry run: needs CUDA")
    images = clip_frames(ctx.data, 64, ctx.scale)
    cpu = _cpu_encode_rate(images, quality)
    figures = {"quality": quality, "size": f"{images[0].shape[1]}x{images[0].shape[0]}",
               "cores": os.cpu_count(), "cpu_images_s": round(cpu), "cpu_pairs_s (3 images a pair)": round(cpu / 3)}
    if ctx.cuda:
        try:
            gpu, layout = _nvjpeg_rate(images, quality)
            figures.update(nvjpeg_images_s=round(gpu), nvjpeg_layout=layout, nvjpeg_over_cpu=round(gpu / cpu, 2))
        except Exception as e:  # no nvJPEG in this torchvision build: the figure says so
            figures["nvjpeg"] = f"{type(e).__name__}: {str(e)[:200]}"
    return _result("JPEG encode: cores vs nvJPEG", t0, "pass", figures)


def check_profile(ctx: Context) -> dict:
    """Where one batch's time goes (the CUDA default at the backend's batch): torch.profiler's CUDA kernel
    totals, the batch's wall time, and the share of it the GPU was busy (low: the host sets the speed)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from flowprep.solvers import ALGO_DEFAULTS, torch_backend
    t0 = time.perf_counter()
    if ctx.dry or not ctx.cuda:
        return _result("where a batch's time goes", t0, "skipped", {}, "needs CUDA")
    solver = torch_backend.make("tvl1", dict(ALGO_DEFAULTS["tvl1"]), ctx.device)
    frames = clip_frames(ctx.data, solver.batch_size + 1)
    f0, f1 = np.stack(frames[:-1]), np.stack(frames[1:])
    solver.compute(f0, f1)  # warm: kernels compiled, graphs captured
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        solver.compute(f0, f1)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
    events = [e for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0]
    busy = sum(e.self_device_time_total for e in events) / 1e6
    top = sorted(events, key=lambda e: e.self_device_time_total, reverse=True)[:12]
    rows = [{"kernel": e.key[:70], "calls": e.count, "gpu_ms": round(e.self_device_time_total / 1e3, 2)} for e in top]
    return _result("where a batch's time goes", t0, "pass",
                   {"batch": solver.batch_size, "wall_ms": round(wall * 1e3, 1), "gpu_busy_ms": round(busy * 1e3, 1),
                    "gpu_busy_share": round(busy / wall, 3), "kernels": rows})
