"""Frame pairs/s of `extract_dataset` with 1 and 2 local joblib workers and on a 2-worker Dask LocalCluster,
on the same videos in one run. Target: Dask within 15% of joblib at 2 workers.

    .venv/bin/python benchmarks/bench_scale.py [--quick] [--videos N] [--frames F]

Each backend first extracts two videos untimed (worker start-up and imports are paid once per pool, not per
run), then the timed run extracts every video into a fresh folder. Timings are wall-clock on a shared machine:
repeat a run before trusting a small difference.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from flowprep.datasets.listing import list_videos
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.runners.dask_cluster import DaskRunner
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig


def _load_video_writer():
    # the test suite's video writer, loaded by path: putting tests/ on sys.path would let tests/flowprep shadow
    # the package in worker processes
    import importlib.util
    spec = importlib.util.spec_from_file_location("_flowprep_test_videos",
                                                  Path(__file__).resolve().parents[1] / "tests" / "videogen.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_shift_video


write_shift_video = _load_video_writer()

CONFIG = ExtractConfig(solver=SolverConfig(algo="tvl1", backend="opencv", device="cpu"))


def make_videos(root: Path, n: int, frames: int, size: tuple[int, int]) -> None:
    for i in range(n):
        write_shift_video(root / f"C{i % 2}" / f"v_{i:03d}.avi", [(1, i % 3 - 1)] * (frames - 1), size=size, seed=i)


def timed(videos, out: Path, **kw) -> float:
    """pairs/s of one extraction (after an untimed two-video warm-up of the same backend)."""
    extract_dataset(videos[:2], out.with_name(out.name + "-warm"), CONFIG, videos_per_shard=1, show_progress=False,
                    **kw)  # two videos, so that a 2-worker pool really starts
    t0 = time.perf_counter()
    rep = extract_dataset(videos, out, CONFIG, videos_per_shard=1, show_progress=False, **kw)
    sec = time.perf_counter() - t0
    assert rep.videos_failed == 0, rep.failures
    return rep.pairs / sec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="8 small videos instead of 24")
    p.add_argument("--videos", type=int, default=None)
    p.add_argument("--frames", type=int, default=9)
    args = p.parse_args(argv)
    n = args.videos or (8 if args.quick else 24)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        make_videos(root, n, args.frames, (64, 48))
        videos = list_videos("folder", root)
        pairs = n * (args.frames - 1)
        print(f"{n} videos of 64x48, {pairs} TV-L1 pairs (OpenCV, 1 thread per worker)")
        j1 = timed(videos, Path(tmp) / "j1", runner=LocalRunner(1))
        j2 = timed(videos, Path(tmp) / "j2", runner=LocalRunner(2))
        from dask.distributed import LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster:
            d2 = timed(videos, Path(tmp) / "d2", runner=DaskRunner(cluster.scheduler_address))
    print(f"joblib, 1 worker : {j1:7.2f} pairs/s")
    print(f"joblib, 2 workers: {j2:7.2f} pairs/s  (x{j2 / j1:.2f} over 1 worker)")
    ok = d2 / j2 >= 0.85
    print(f"dask,   2 workers: {d2:7.2f} pairs/s  (dask / joblib at 2 workers = {d2 / j2:.3f}; target >= 0.85: "
          f"{'met' if ok else 'MISSED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
