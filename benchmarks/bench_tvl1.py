"""TV-L1: OpenCV's CPU DualTVL1OpticalFlow against flowprep's torch port, same frames, same parameters, one run.

1. Accuracy: EPE against the ground truth of the 5 Middlebury sequences (../shared/data/middlebury), full size,
   for OpenCV and ours, with the default parameters and with the fast preset; and mean |ours - OpenCV|.
2. Speed: frame pairs/s at 320x240 (the real UCF-101 clip in ../shared/data/videos) of OpenCV and of ours at
   batch 1, 8 and 32, with one process per core for both (1 thread each); torch.compile's one-time cost
   measured apart, cold (empty cache) and warm (cache filled by the cold run); then the fast preset; then CUDA
   when torch sees one.

    .venv/bin/python benchmarks/bench_tvl1.py            # everything (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_tvl1.py --quick    # 2 sequences, fewer pairs, batch 1 and 8
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEQUENCES = ["Dimetrodon", "Grove2", "RubberWhale", "Urban2", "Venus"]
CLIP = DATA / "videos" / "ucf101" / "v_ApplyEyeMakeup_g01_c01.avi"
CV_NAMES = {"tau": "tau", "lambda": "lambda_", "theta": "theta", "nscales": "nscales", "warps": "warps",
            "epsilon": "epsilon", "inner_iterations": "innnerIterations", "outer_iterations": "outerIterations",
            "scale_step": "scaleStep", "gamma": "gamma", "median_filtering": "medianFiltering"}


def presets() -> dict[str, dict]:
    from flowprep.solvers import ALGO_DEFAULTS
    from flowprep.solvers.tvl1_torch import FAST_PARAMS

    default = dict(ALGO_DEFAULTS["tvl1"])
    return {"default": default, "fast": {**default, **FAST_PARAMS}}


def opencv_solver(params: dict):
    return cv2.optflow.DualTVL1OpticalFlow_create(**{CV_NAMES[k]: v for k, v in params.items()})


def one_thread() -> None:
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


# --- accuracy ------------------------------------------------------------------------------------------------

def accuracy_task(task: tuple[str, str, str]) -> tuple[str, str, str, float, np.ndarray]:
    """(sequence, backend, preset) -> EPE against ground truth and the flow (eager torch: same math as compiled)."""
    from flowprep.codecs.flo import read_flo
    from flowprep.solvers import torch_backend

    one_thread()
    seq, backend, preset = task
    params = presets()[preset]
    f0, f1 = (cv2.imread(str(DATA / "middlebury" / seq / f"frame1{i}.png"), cv2.IMREAD_GRAYSCALE) for i in (0, 1))
    if backend == "opencv":
        flow = opencv_solver(params).calc(f0, f1, None).transpose(2, 0, 1)
    else:
        flow = torch_backend.make("tvl1", params, "cpu", 1, compile=False).compute(f0[None], f1[None])[0]
    gt = read_flo(DATA / "middlebury" / seq / "flow10.flo")
    known = np.abs(gt).max(axis=0) < 1e9
    epe = float(np.linalg.norm(flow - gt, axis=0)[known].mean())
    return seq, backend, preset, epe, flow


def accuracy(seqs: list[str], pool) -> None:
    tasks = [(s, b, p) for p in ("default", "fast") for s in seqs for b in ("opencv", "torch")]
    results = {(s, b, p): (e, f) for s, b, p, e, f in pool.imap_unordered(accuracy_task, tasks)}
    for preset in ("default", "fast"):
        print(f"\n### Accuracy, {preset} parameters {presets()[preset] if preset == 'fast' else ''}")
        print("| sequence | EPE OpenCV | EPE ours | ours / OpenCV | mean abs(ours - OpenCV) px |")
        print("|---|---|---|---|---|")
        rows = []
        for s in seqs:
            (eo, fo), (et, ft) = results[(s, "opencv", preset)], results[(s, "torch", preset)]
            d = float(np.linalg.norm(ft - fo, axis=0).mean())
            rows.append((eo, et, d))
            print(f"| {s} | {eo:.4f} | {et:.4f} | {et / eo:.4f} | {d:.4f} |")
        eo, et, d = (float(np.mean(c)) for c in zip(*rows))
        print(f"| **mean** | {eo:.4f} | {et:.4f} | **{et / eo:.4f}** | {d:.4f} |")


# --- speed ---------------------------------------------------------------------------------------------------

def clip_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n consecutive gray frame pairs of the real 320x240 UCF-101 clip (cycled if n > 163)."""
    from flowprep.codecs.video import iter_frames, to_gray
    g = np.stack([to_gray(f) for f in iter_frames(str(CLIP))])
    idx = np.arange(n) % (len(g) - 1)
    return g[idx], g[idx + 1]


def speed_task(task: tuple) -> dict:
    """One worker: OpenCV and each of our kernels alternate on the same pairs, batch by batch, so that all see
    the same load from the rest of the machine -> pairs/s of each, and each kernel's first-call time (compile
    or cache load: torch.compile's, or the C loop's build)."""
    preset, batch, npairs, offset, device, compile_, kernels, with_opencv = task
    from flowprep.solvers import torch_backend

    if device == "cpu":
        one_thread()
    params = presets()[preset]
    f0, f1 = clip_pairs(offset + npairs + batch)
    f0, f1 = f0[offset:], f1[offset:]
    cv = opencv_solver(params)
    ours = {k: torch_backend.make("tvl1", params, device, batch, compile=compile_, kernel=k) for k in kernels}
    first = {}
    for k, solver in ours.items():
        t = time.perf_counter()
        solver.compute(f0[:batch], f1[:batch])  # warm-up: compiles (or loads the cache) for every pyramid level
        first[k] = time.perf_counter() - t
    t_cv, t_ours = 0.0, dict.fromkeys(kernels, 0.0)
    for i in range(batch, batch + npairs, batch):
        a, b = f0[i:i + batch], f1[i:i + batch]
        t = time.perf_counter()
        if with_opencv:
            for j in range(len(a)):
                cv.calc(a[j], b[j], None)
        t_cv += time.perf_counter() - t
        for k, solver in ours.items():
            t = time.perf_counter()
            solver.compute(a, b)
            t_ours[k] += time.perf_counter() - t
    return {"opencv": npairs / t_cv if with_opencv else float("nan"),
            **{k: npairs / t_ours[k] for k in kernels}, **{f"first_{k}": first[k] for k in kernels},
            "steady_per_batch": t_ours[kernels[0]] / (npairs / batch)}


def parallel_rate(pool, workers: int, preset: str, batch: int, npairs: int, compile_: bool,
                  kernels: tuple[str, ...]) -> dict:
    tasks = [(preset, batch, npairs, w * npairs, "cpu", compile_, kernels, True) for w in range(workers)]
    res = pool.map(speed_task, tasks)  # the workers run at the same time: their rates add up
    out = {k: sum(r[k] for r in res) for k in ("opencv", *kernels)}
    return {**out, **{f"first_{k}": max(r[f"first_{k}"] for r in res) for k in kernels}}


def compile_costs(preset: str, batch: int) -> tuple[float, float]:
    """torch.compile's one-time cost (first call minus a steady call), cold then warm: two fresh processes
    sharing a new, empty compile cache."""
    saved = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="flowprep_inductor_")
    costs = []
    try:
        for _ in range(2):
            with mp.get_context("spawn").Pool(1) as p:
                r = p.apply(speed_task, ((preset, batch, batch, 0, "cpu", True, ("torch",), False),))
            costs.append(r["first_torch"] - r["steady_per_batch"])
    finally:
        if saved is not None:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = saved
    return costs[0], costs[1]


def speed(pool, workers: int, quick: bool, compile_: bool, kernels: tuple[str, ...]) -> None:
    npairs = 8 if quick else 32
    batches = [1, 8] if quick else [1, 8, 32]
    print(f"\n### Speed at 320x240, CPU, {workers} processes x 1 thread (pairs/s, all processes together)")
    if compile_ and "torch" in kernels:
        cold, warm = compile_costs("default", 1)
        print(f"torch.compile one-time cost per process, batch 1: {cold:.1f} s with an empty cache, "
              f"{warm:.1f} s with a warm one")
    names = {"c": "ours (C loop)", "torch": f"ours (torch, {'compiled' if compile_ else 'eager'})"}
    print("| parameters | batch | OpenCV pairs/s | " + " | ".join(f"{names[k]} pairs/s | / OpenCV" for k in kernels)
          + " | first call s |")
    print("|---|---|---|" + "---|---|" * len(kernels) + "---|")
    for preset in ("default", "fast"):
        for b in batches if preset == "default" else [1]:
            r = parallel_rate(pool, workers, preset, b, max(npairs, b), compile_, kernels)
            cells = " | ".join(f"{r[k]:.2f} | **{r[k] / r['opencv']:.2f}**" for k in kernels)
            firsts = ", ".join(f"{k} {r[f'first_{k}']:.1f}" for k in kernels)
            print(f"| {preset} | {b} | {r['opencv']:.2f} | {cells} | {firsts} |")
            sys.stdout.flush()


def cuda_speed(quick: bool, compile_: bool) -> None:
    import torch

    from flowprep.solvers import torch_backend

    print(f"\n### Speed at 320x240, {torch.cuda.get_device_name()} (pairs/s, one process)")
    print(f"batch size chosen from free memory: {torch_backend.choose_batch_size('cuda')}")
    print("| preset | batch | pairs/s | first call s |")
    print("|---|---|---|---|")
    for preset in ("default", "fast"):
        for b in [1, 8, 32, 64] if not quick else [8, 32]:
            npairs = max(4 * b, 32)
            r = speed_task((preset, b, npairs, 0, "cuda", compile_, ("auto",), False))
            print(f"| {preset} | {b} | {r['auto']:.1f} | {r['first_auto']:.1f} |")
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 sequences, fewer pairs, batch 1 and 8")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one per core)")
    ap.add_argument("--no-compile", action="store_true", help="time eager torch instead of torch.compile")
    ap.add_argument("--kernels", nargs="+", default=["c", "torch"], choices=["c", "torch"],
                    help="our CPU kernels to time beside OpenCV (default: both)")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args(argv)
    missing = [p for p in (DATA / "middlebury", CLIP) if not p.exists()]
    if missing:
        print(f"reference data missing: {', '.join(map(str, missing))} (see ../shared/data/README.md)")
        return 1
    import torch

    from flowprep.solvers.torch_backend import configure_compile

    cache = configure_compile()  # the on-disk compile cache every worker shares (they inherit the env)
    print(f"# TV-L1 benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}, compile cache {cache}")
    print("(timings on a shared machine are noisy; ratios come from the same run)")
    seqs = SEQUENCES[2:4] if args.quick else SEQUENCES
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        if not args.skip_accuracy:
            accuracy(seqs, pool)
    if not args.skip_speed:
        with ctx.Pool(args.workers) as pool:
            speed(pool, args.workers, args.quick, not args.no_compile, tuple(args.kernels))
        if torch.cuda.is_available():
            cuda_speed(args.quick, not args.no_compile)
        else:
            print("\nCUDA: torch sees no GPU here; see benchmarks/TVL1.md for the expected figure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
