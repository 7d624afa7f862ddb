"""The pipeline checks of benchmarks/gpu_check.py: ``flowprep extract`` end to end on CUDA against the bare
solver, and training on CUDA (one temporal epoch with AMP, alone and under torchrun with NCCL); and
``run_all``, which runs every check in order within the budget."""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from gpu_check_flow import (
    CACHE,
    TARGET_PIPELINE,
    Context,
    _result,
    check_equivalence,
    check_tests,
    check_throughput,
    clip_frames,
    device_info,
    repeated_clip,
)
from gpu_check_kernels import check_jpeg, check_kernels, check_profile
from gpu_check_peer import check_cucim

PY = [sys.executable]


def _bare_rate(config, frames: list[np.ndarray], copies: int) -> tuple[float, int]:
    """pairs/s of the solver alone on the clip's pairs, ``copies`` times (frames already decoded)."""
    from flowprep.extraction.extract import _worker_solver
    solver = _worker_solver(config.solver)  # the very object the in-process extraction uses (warm)
    f0, f1 = np.stack(frames[:-1]), np.stack(frames[1:])
    solver.compute(f0[:solver.batch_size], f1[:solver.batch_size])
    t = time.perf_counter()
    for _ in range(copies):
        solver.compute(f0, f1)
    return copies * len(f0) / (time.perf_counter() - t), solver.batch_size


def check_extract(ctx: Context) -> dict:
    """``flowprep extract`` end to end on the GPU (decode and JPEG on the host's cores) against the bare solver on
    the same >= 2,000 pairs; then the same through the command line with ``--devices all``."""
    from flowprep.datasets.listing import list_videos
    from flowprep.extraction.config import ExtractConfig
    from flowprep.extraction.extract import ExtractWork
    from flowprep.runners import Chunk
    from flowprep.solvers import SolverConfig

    t0 = time.perf_counter()
    root, pairs = repeated_clip(ctx)
    where = ["--devices", "all"] if ctx.cuda else ["--jobs", "1", "--device", "cpu"]
    cmd = [*PY, "-m", "flowprep", "extract", "--dataset", "folder", "--root", str(root), "--out",
           str(ctx.out / "extract-cli"), *where, "--no-progress"] + ([] if ctx.cuda else ["--algo", "dis"])
    figures = {"pairs": pairs, "videos": len(list_videos("folder", root)), "command": " ".join(cmd[1:])}
    if ctx.dry:
        return _result("flowprep extract end to end", t0, "skipped", figures, "dry run: data made, needs CUDA")
    # what a GPU worker runs (ExtractWork: decode and JPEG threads, batches across videos, the HDF5 write), in
    # this process, warm: the solver compiled by a first video, as in a worker after its first chunk
    solver = SolverConfig(device="cuda") if ctx.cuda else SolverConfig(algo="dis", device="cpu")
    work = ExtractWork(ExtractConfig(solver=solver))  # on CUDA: the default there, compiled torch TV-L1
    videos = list_videos("folder", root)
    work(Chunk(0, tuple(videos[:1]), str(ctx.out / "extract-warm.h5")))
    t = time.perf_counter()
    res = work(Chunk(1, tuple(videos), str(ctx.out / "extract.h5")))
    pipeline = res.pairs / (time.perf_counter() - t)
    failed = sum(v.status != "ok" for v in res.videos)
    bare, batch = _bare_rate(work.config, clip_frames(ctx.data), len(videos))
    figures.update(pipeline_pairs_s=round(pipeline, 1), bare_solver_pairs_s=round(bare, 1), batch=batch,
                   ratio=round(pipeline / bare, 3), target=f">= {TARGET_PIPELINE}", failed=failed)
    r = ctx.run("extract-devices-all", cmd, min(180, ctx.left() - 60))
    report = ctx.out / "extract-cli" / "reports" / "latest.json"
    if r.returncode == 0 and report.is_file():
        cli = json.loads(report.read_text())
        figures.update(devices_all_pairs_s=cli["pairs_per_second"], devices_all_runner=cli["runner"])
    ok = pipeline / bare >= TARGET_PIPELINE and failed == 0 and r.returncode == 0
    return _result("flowprep extract end to end", t0, "pass" if ok else "fail", figures,
                   "" if r.returncode == 0 else f"--devices all: exit {r.returncode}, see logs")


def _demo(ctx: Context) -> tuple[Path, list[list[str]]]:
    """The demo videos (made here), and the commands that extract them on CUDA and train on them."""
    root, shards = ctx.out / "demo", ctx.out / "demo-shards"
    fit = ["-m", "train", "fit", "--shards", str(shards), "--dataset", "ucf101", "--split-dir", str(root),
           "--stream", "temporal", "--arch", "tiny", "--epochs", "1", "--batch-size", "16", "--crop-size", "56",
           "--device", ctx.device, "--num-workers", "2", "--no-progress"]
    return root, [
        [*PY, "-m", "flowprep", "extract", "--dataset", "ucf101", "--root", str(root), "--out", str(shards),
         "--device", ctx.device, "--no-torch-compile", "--jobs", "1", "--no-progress"]
        + ([] if ctx.cuda else ["--algo", "dis"]),
        [*PY, *fit, "--out", str(ctx.out / "fit")],
        [*PY, "-m", "torch.distributed.run", "--nproc-per-node", "1", *fit, "--out", str(ctx.out / "fit-ddp")]]


def _epoch(ctx: Context, folder: str) -> dict:
    m = json.loads((ctx.out / folder / "metrics.json").read_text())
    loss = m["epochs"][-1]["train_loss"]
    return {"train_loss": loss, "finite": bool(np.isfinite(loss)), "world_size": m.get("world_size"),
            "dist_backend": m.get("dist_backend")}


def _device_lookup(ctx: Context) -> bool:
    """Compact flow batches of the demo shards become the same pixels on the GPU as on the CPU."""
    import torch

    from flowprep.loading.augment import to_pixels
    from flowprep.loading.clips import DataConfig, TrainClips, load_items
    from flowprep.loading.loader import make_loader
    from flowprep.store.reader import open_shards
    shards = open_shards(ctx.out / "demo-shards")
    items = load_items(shards, [(k, 0) for k in shards.keys()[:16]])
    data = TrainClips(shards, items, DataConfig(stream="temporal", crop_size=56), compact=True)
    for (codes, tables), _, _ in make_loader(data, batch_size=8, sampler=range(16)):
        if not torch.equal(to_pixels((codes, tables), torch.device(ctx.device)).cpu(),
                           to_pixels((codes, tables), torch.device("cpu"))):
            return False
    return True


def check_training(ctx: Context) -> dict:
    """One temporal epoch on the demo shards with AMP on CUDA, then the same under torchrun (NCCL)."""
    from flowprep.datasets.demo import make_demo_dataset

    t0 = time.perf_counter()
    root, cmds = _demo(ctx)
    make_demo_dataset(root)
    figures = {"commands": [" ".join(c[1:]) for c in cmds]}
    if ctx.dry:
        from flowprep.cli import build_parser as flowprep_parser
        from train.cli import build_parser as train_parser
        flowprep_parser().parse_args(cmds[0][3:])  # the commands' arguments hold
        train_parser().parse_args(cmds[1][3:])
        return _result("training on CUDA", t0, "skipped", figures, "dry run: demo made, commands checked")
    for name, cmd in zip(("demo-extract", "fit-amp", "fit-torchrun"), cmds):
        r = ctx.run(name, cmd, min(240, ctx.left()))
        if r.returncode != 0:
            return _result("training on CUDA", t0, "fail", figures, f"{name}: exit {r.returncode}, see logs")
        if name == "demo-extract":
            figures["device-side lookup equals the CPU's"] = _device_lookup(ctx)
    figures.update(amp=_epoch(ctx, "fit"), torchrun=_epoch(ctx, "fit-ddp"))
    ok = figures["amp"]["finite"] and figures["torchrun"]["finite"] and figures["device-side lookup equals the CPU's"]
    return _result("training on CUDA", t0, "pass" if ok else "fail", figures)


CHECKS = (check_tests, check_equivalence, check_kernels, check_throughput, check_profile, check_cucim, check_jpeg,
          check_extract, check_training)


def run_all(summary, data: Path, out: Path, budget: float, dry: bool, device: str = "cuda",
            only: tuple[str, ...] = ()) -> bool:
    """Every check in order (or those ``only`` names: "throughput" for check_throughput), each result written as
    it comes; True when none failed."""
    ctx = Context(data, out, time.perf_counter() + budget, dry, device)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(CACHE))  # this process compiles too (a warm rerun)
    info = device_info()
    summary.device({**info, "simulated_on_cpu": device == "cpu"})
    if info["gpu"] is None and not dry and ctx.cuda:
        summary.add(_result("CUDA", time.perf_counter(), "fail", note="torch sees no CUDA device; use --dry-run"))
        return False
    ok, broken = True, False
    for check in CHECKS:
        if only and check.__name__.removeprefix("check_") not in only:
            continue
        if ctx.left() <= 0:
            summary.add(_result(check.__doc__.split(":")[0][:60], time.perf_counter(), "skipped",
                                note="out of time"))
            continue
        t = time.perf_counter()
        try:
            result = check(ctx)
        except Exception as e:  # a broken check must not hide the others' results
            result = _result(check.__name__, t, "error", note=f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        summary.add(result)
        print(f"[{result['status']:7}] {result['name']} ({result['seconds']} s)", flush=True)
        ok &= result["status"] in ("pass", "skipped")
        broken |= result["status"] == "error"
    # a dry run or a CPU simulation measures nothing: there only a broken check (an exception) is a failure
    return not broken if dry or not ctx.cuda else ok
