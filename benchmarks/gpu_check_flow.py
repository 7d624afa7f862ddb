"""The flow checks of benchmarks/gpu_check.py (the CUDA tests, CUDA = CPU, pairs/s), one function each, and what
they share. Every check returns a result dict (name, status: pass / fail / skipped / error, seconds, figures,
note) and keeps to the time left."""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".gpu_cache" / "inductor"  # ignored, not carried: kept between runs on one machine
SEQUENCES = ("Dimetrodon", "Grove2", "RubberWhale", "Urban2", "Venus")
CLIP = Path("videos") / "ucf101" / "v_ApplyEyeMakeup_g01_c01.avi"
BATCHES = (1, 8, 32, 64)
GPU_TESTS = ("tests/flowprep/solvers/test_tvl1_torch.py", "tests/flowprep/solvers/test_tvl1_triton.py",
             "tests/train/test_gpu.py")
TARGET_PAIRS_S, TARGET_PIPELINE, TARGET_DIFF = 1000.0, 0.8, 0.01


@dataclass
class Context:
    """What every check needs: the data, the output folder, the clock, whether this is a dry run, and where the
    checks run: "cuda", or "cpu" to try the check's own code on a machine without a GPU (``--simulate-on-cpu``:
    small frames, few configurations, no figure that means anything)."""

    data: Path
    out: Path
    deadline: float
    dry: bool
    device: str = "cuda"
    ours_pairs_s: float | None = None  # our best pairs/s, once check_throughput has run (the peer's ratio)

    @property
    def cuda(self) -> bool:
        """Whether the checks run on a GPU."""
        return self.device == "cuda"

    @property
    def scale(self) -> float:
        """Frame scale for the flow checks (1 on a GPU)."""
        return 1.0 if self.cuda else 0.25

    def left(self) -> float:
        """Seconds left of the budget."""
        return self.deadline - time.perf_counter()

    def env(self) -> dict:
        """The environment of the commands the check runs: the checkout importable, the carried data, the
        compile cache, pytest from .gpu_check/site when the machine has none."""
        import importlib.util
        path = [str(REPO)]
        if importlib.util.find_spec("pytest") is None:
            path.append(str(REPO / ".gpu_check" / "site"))
        return {**os.environ, "PYTHONPATH": os.pathsep.join(path + [os.environ.get("PYTHONPATH", "")]).rstrip(":"),
                "FLOWPREP_SHARED_DATA": str(self.data), "TORCHINDUCTOR_CACHE_DIR": str(CACHE),
                "PYTHONUNBUFFERED": "1"}

    def run(self, name: str, cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run a command from the checkout, its output saved to OUT/logs/<name>.log."""
        logs = self.out / "logs"
        logs.mkdir(exist_ok=True)
        try:
            r = subprocess.run(cmd, cwd=REPO, env=self.env(), capture_output=True, text=True,
                               timeout=max(timeout, 5))
        except subprocess.TimeoutExpired as e:
            r = subprocess.CompletedProcess(cmd, 124, e.stdout or "", (e.stderr or "") + "\n(timed out)")
        (logs / f"{name}.log").write_text(f"$ {' '.join(cmd)}\n(exit {r.returncode})\n{r.stdout}\n{r.stderr}")
        return r


def _result(name: str, t0: float, status: str, figures: dict | None = None, note: str = "") -> dict:
    return {"name": name, "status": status, "seconds": round(time.perf_counter() - t0, 1),
            "figures": figures or {}, "note": note}


def device_info() -> dict:
    """The GPU this runs on (or that there is none)."""
    import torch
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": None}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), gpus=torch.cuda.device_count())
    return info


def check_tests(ctx: Context) -> dict:
    """The CUDA tests (``-m gpu``); a dry run collects them only."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
           *GPU_TESTS] + (["--collect-only"] if ctx.dry else [])
    r = ctx.run("cuda-tests", cmd, min(240, ctx.left()))
    text = r.stdout + r.stderr
    counts = {k: int(m.group(1)) for k in ("passed", "failed", "skipped", "error", "deselected")
              if (m := re.search(rf"(\d+) {k}", text))}
    collected = re.search(r"(\d+)/\d+ tests collected|(\d+) tests? collected", text)
    figures = {**counts, "collected": int(next(g for g in collected.groups() if g)) if collected else None,
               "command": " ".join(cmd[2:])}
    if ctx.dry:
        return _result("CUDA tests (-m gpu)", t0, "skipped", figures, "dry run: collected, not run (no CUDA)")
    ok = r.returncode == 0 and counts.get("passed", 0) >= 7 and not counts.get("skipped")
    return _result("CUDA tests (-m gpu)", t0, "pass" if ok else "fail", figures,
                   "" if ok else f"exit {r.returncode}; see logs/cuda-tests.log")


def _gray(path: Path, scale: float = 1.0) -> np.ndarray:
    import cv2

    from flowprep.quality.ground_truth import read_gray
    img = read_gray(path)
    return img if scale == 1.0 else cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def clip_frames(data: Path, n: int | None = None, scale: float = 1.0) -> list[np.ndarray]:
    """Gray frames of the real UCF-101 clip (320x240, or scaled)."""
    import cv2

    from flowprep.codecs.video import iter_frames, to_gray
    frames = []
    for f in iter_frames(str(data / CLIP)):
        g = to_gray(f)
        frames.append(g if scale == 1.0 else cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
        if n is not None and len(frames) == n:
            break
    return frames


def _pairs(ctx: Context) -> list[tuple[str, np.ndarray, np.ndarray, Path | None]]:
    scale = 0.25 if ctx.dry else ctx.scale
    pairs = [(s, _gray(ctx.data / "middlebury" / s / "frame10.png", scale),
              _gray(ctx.data / "middlebury" / s / "frame11.png", scale),
              ctx.data / "middlebury" / s / "flow10.flo" if scale == 1.0 else None) for s in SEQUENCES]
    frames = clip_frames(ctx.data, scale=scale)
    pairs += [(f"ucf101 clip, pair {i}", frames[i], frames[i + 1], None) for i in (0, 50, 100, 150)]
    return pairs[:1] if ctx.dry else pairs


def check_equivalence(ctx: Context) -> dict:
    """Flow on CUDA against flow on the CPU (eager torch), the same (default) parameters: the CUDA default (fused
    Triton step in CUDA graphs) and the eager torch step on CUDA."""
    import torch

    from flowprep.codecs.flo import read_flo
    from flowprep.quality.metrics import flow_errors
    from flowprep.solvers import ALGO_DEFAULTS, torch_backend

    t0 = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    params = dict(ALGO_DEFAULTS["tvl1"])
    cpu = torch_backend.make("tvl1", params, "cpu", 1, compile=False, kernel="torch")
    # what extract runs on CUDA (the compiled CPU step of a simulation would take minutes: eager there)
    # (simulated on a CPU: the torch step, as CUDA runs it, not the CPU's C loop)
    gpu = None if ctx.dry else torch_backend.make("tvl1", params, ctx.device, 1, compile=None if ctx.cuda else False,
                                                  kernel="auto" if ctx.cuda else "torch")
    eager = None if ctx.dry else torch_backend.make("tvl1", params, ctx.device, 1, compile=False, kernel="torch",
                                                   graphs=False)
    rows, note = [], ""
    for name, f0, f1, gt in _pairs(ctx):
        if ctx.left() < 20:
            note = "stopped early: out of time"
            break
        t = time.perf_counter()
        a = cpu.compute(f0[None], f1[None])[0]
        row = {"pair": name, "size": f"{f0.shape[1]}x{f0.shape[0]}", "cpu_s": round(time.perf_counter() - t, 2)}
        if gpu is not None:
            b = gpu.compute(f0[None], f1[None])[0]
            d = np.abs(a - b)
            row.update(kernel=gpu.kernel, mean_abs_diff_px=float(d.mean()), max_abs_diff_px=float(d.max()),
                       eager_torch_mean_abs_diff_px=float(np.abs(a - eager.compute(f0[None], f1[None])[0]).mean()))
            if gt is not None:
                g = read_flo(gt)
                row.update(epe_cpu=flow_errors(a, g)["epe"], epe_cuda=flow_errors(b, g)["epe"])
        rows.append(row)
    if ctx.dry:
        return _result("flow on CUDA = flow on the CPU", t0, "skipped", {"pairs": rows},
                       "dry run: the CPU side of one pair at 1/4 size; no CUDA side")
    worst = max(max(r["mean_abs_diff_px"], r["eager_torch_mean_abs_diff_px"]) for r in rows)
    ok = worst <= TARGET_DIFF and not note
    return _result("flow on CUDA = flow on the CPU", t0, "pass" if ok else "fail",
                   {"pairs": rows, "worst mean |diff| px": worst,
                    "worst max |diff| px": max(r["max_abs_diff_px"] for r in rows), "target": f"<= {TARGET_DIFF}"},
                   note)


def _syncs(solver, f0: np.ndarray, f1: np.ndarray) -> int | None:
    """Host syncs of one call: torch's sync debug mode warns at each one (None off CUDA)."""
    import torch
    if solver.device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            solver.compute(f0, f1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


# What is timed on CUDA, in this order (the default first; the torch.compile cold start, the longest, last):
# (label, options of torch_backend.make, batches; 0 = the batch the backend picks)
CUDA_CONFIGS = (("triton + graphs", {}, (0, *BATCHES, 128, 256)),
                ("triton + graphs, no compaction", {"compact": False}, (0,)),
                ("triton + graphs, host check every 30", {"check_every": 30}, (0,)),
                ("triton + graphs, host waits at each check", {"lookahead": 0}, (8, 0)),
                ("triton + graphs, counts read 2 checks late", {"lookahead": 2}, (8, 0)),
                ("triton, no graphs", {"graphs": False}, (8, 0)),
                ("torch eager", {"kernel": "torch", "compile": False, "graphs": False}, (0,)),
                ("torch compiled + graphs", {"kernel": "torch", "compile": True}, (0,)))
CPU_CONFIGS = (("torch eager", {"kernel": "torch", "compile": False}, (0, 2)),)


def _rate(ctx: Context, config: tuple, batch: int, frames: list[np.ndarray]) -> dict:
    """pairs/s of one configuration at 320x240 (first call apart), its peak memory and host syncs."""
    import torch

    from flowprep.solvers import ALGO_DEFAULTS, torch_backend
    label, options, _ = config
    t = time.perf_counter()
    solver = torch_backend.make("tvl1", dict(ALGO_DEFAULTS["tvl1"]), ctx.device, batch or None, **options)
    b = solver.batch_size
    pairs = [i % (len(frames) - 1) for i in range(b)]
    f0, f1 = np.stack([frames[i] for i in pairs]), np.stack([frames[i + 1] for i in pairs])
    solver.compute(f0, f1)  # the first call: compiles (or loads the cache), captures graphs, warms up
    first = time.perf_counter() - t
    if ctx.cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if ctx.cuda else 0
    reps, t = 0, time.perf_counter()
    while reps < 3 or (time.perf_counter() - t < 2.0 and reps < 50):
        solver.compute(f0, f1)
        reps += 1
    seconds = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() - base if ctx.cuda else 0
    h, w = f0.shape[1:]
    model = b * torch_backend.bytes_per_pair(h, w) + torch_backend.MEDIAN_WORKSPACE_PER_PIXEL * h * w * min(b, 8)
    return {"mode": label, "batch": f"{b} (auto)" if not batch else b, "pairs": b,
            "pairs_s": round(reps * b / seconds, 1), "first_call_s": round(first, 1),
            "peak_mib": round(peak / 2**20), "model_mib": round(model / 2**20), "within_model": peak <= model,
            "syncs_per_batch": _syncs(solver, f0, f1)}


def check_throughput(ctx: Context) -> dict:
    """pairs/s at 320x240, default parameters: the CUDA default (Triton kernels, CUDA graphs, compaction) at the
    backend's batch and at 1 to 256, then without compaction, without graphs, eager torch and compiled torch."""
    t0 = time.perf_counter()
    if ctx.dry:
        return _result("pairs/s at 320x240", t0, "skipped", {}, "dry run: needs CUDA")
    frames = clip_frames(ctx.data, None, ctx.scale)  # every frame; larger batches take its pairs again
    rows, note = [], ""
    for config in CUDA_CONFIGS if ctx.cuda else CPU_CONFIGS:
        auto = None  # the batch the backend picked: not timed a second time as an explicit one
        for batch in config[2]:
            if batch and batch == auto:
                continue
            if ctx.left() < (90 if ctx.cuda else 30):  # keep time for the extraction and training checks
                note = "not every configuration measured: out of time (a second run compiles nothing)"
                break
            try:
                rows.append(_rate(ctx, config, batch, frames))
                auto = rows[-1]["pairs"] if not batch else auto
            except Exception as e:  # an out-of-memory or compile failure is a finding, not the end
                rows.append({"mode": config[0], "batch": batch or "auto",
                             "error": f"{type(e).__name__}: {str(e)[:300]}"})
    best = max((r.get("pairs_s", 0) for r in rows), default=0)
    ctx.ours_pairs_s = best or None
    memory_ok = all(r.get("within_model", True) for r in rows)
    ok = best >= TARGET_PAIRS_S and memory_ok and not any("error" in r for r in rows)
    return _result("pairs/s at 320x240", t0, "pass" if ok else "fail",
                   {"configurations": rows, "best pairs/s": best, "target": f">= {TARGET_PAIRS_S:.0f}",
                    "peak memory within the model": memory_ok}, note)


def repeated_clip(ctx: Context, pairs: int | None = None) -> tuple[Path, int]:
    """A folder dataset of the real clip repeated until it holds at least ``pairs`` pairs (hard links)."""
    from flowprep.codecs.video import probe
    pairs = pairs or (6000 if ctx.cuda else 2000 if ctx.dry else 300)  # a few seconds at the target rate
    per = probe(str(ctx.data / CLIP)).frame_count - 1
    copies = math.ceil(pairs / per)
    root = ctx.out / "clips"
    shutil.rmtree(root, ignore_errors=True)
    for i in range(copies):
        dest = root / "ApplyEyeMakeup" / f"v_ApplyEyeMakeup_g{i + 1:02d}_c01.avi"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(ctx.data / CLIP, dest)
        except OSError:
            shutil.copyfile(ctx.data / CLIP, dest)
    return root, copies * per
