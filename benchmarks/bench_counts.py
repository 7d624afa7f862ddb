"""Cost that grows with the number of videos, not worse: the real names and counts of UCF-101, HMDB-51 and a
Kinetics-sized set, each through every step that touches the whole folder (issue 12).

    .venv/bin/python benchmarks/bench_counts.py [--fraction F] [--kinetics N] [--jobs J]

Datasets (tiny videos: one 3-frame 16x16 MJPG clip per dataset, hard-linked under every name, so that only the
count matters): UCF-101 with the 13,320 names of the official split 1 lists (../shared/data/ucf101_splits), HMDB-51
with the 6,766 names of its split 1 files (../shared/data/hmdb51_splits), and 60,000 Kinetics-named clips
(<youtube_id>_<start:06d>_<end:06d>.mp4 in train/<label>/, 400 labels, with a train.csv). For each, in seconds
per 1,000 videos: extraction (flowprep extract's whole path with the DIS solver, whose share is negligible at
this size: what is left is the per-video overhead), resuming the finished folder (the same command again),
`info`, `verify`, `open_shards` + keys, and building the trainer's training set (split files -> keys -> items ->
TrainClips). The last column is the ratio of the per-video cost at the largest count to that at the smallest.

Targets: that ratio <= 1.3 on every row; resuming the finished Kinetics-sized folder in under 10 s; `info` under
2x `open_shards` + keys at every count.
"""
from __future__ import annotations

import argparse
import os
import random
import string
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from flowprep.datasets.listing import list_videos
from flowprep.datasets.splits import load_split
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.loading.clips import DataConfig, TrainClips, load_items
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig
from flowprep.store.reader import open_shards
from flowprep.store.summary import summarize
from flowprep.store.verify import verify_folder
from train.splits import bind

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIG = ExtractConfig(solver=SolverConfig(algo="dis", backend="opencv", device="cpu"))
ROWS = ("extract", "resume", "info", "verify", "open_shards + keys", "training set")


def tiny_clip(path: Path) -> None:
    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (16, 16))
    for _ in range(3):
        w.write(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    w.release()


def ucf101(root: Path, clip: Path, fraction: float) -> tuple[str, Path, int]:
    split = load_split("ucf101", SHARED / "ucf101_splits", 1)
    names = sorted({n for n, _ in split.train + split.test})
    names = names[:max(1, int(len(names) * fraction))]
    for n in names:
        _link(clip, root / n)
    return "ucf101", SHARED / "ucf101_splits", len(names)


def hmdb51(root: Path, clip: Path, fraction: float) -> tuple[str, Path, int]:
    names = sorted(f"{f.name.rsplit('_test_split1.txt', 1)[0]}/{ln.split()[0]}"
                   for f in (SHARED / "hmdb51_splits").glob("*_test_split1.txt")
                   for ln in f.read_text().splitlines() if ln.strip())
    names = names[:max(1, int(len(names) * fraction))]
    for n in names:
        _link(clip, root / n)
    return "hmdb51", SHARED / "hmdb51_splits", len(names)


def kinetics(root: Path, clip: Path, count: int) -> tuple[str, Path, int]:
    rng = random.Random(0)
    labels = [f"action {i:03d}" for i in range(400)]
    alphabet = string.ascii_letters + string.digits + "_-"
    rows = ["label,youtube_id,time_start,time_end,split"]
    for i in range(count):
        yid, start, label = "".join(rng.choice(alphabet) for _ in range(11)), rng.randrange(0, 600), labels[i % 400]
        _link(clip, root / "train" / label / f"{yid}_{start:06d}_{start + 10:06d}.mp4")
        rows.append(f"{label},{yid},{start},{start + 10},train")
    splits = root.parent / "kinetics_annotations"
    splits.mkdir()
    (splits / "train.csv").write_text("\n".join(rows) + "\n")
    (splits / "validate.csv").write_text("\n".join(rows[:2]) + "\n")  # the trainer wants both files
    return "kinetics", splits, count


def _link(clip: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.link(clip, path)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(dataset: str, root: Path, split_dir: Path, out: Path, jobs: int) -> dict[str, float]:
    """Seconds of each row for one folder."""
    videos = list_videos(dataset, root)
    t = {}
    t["extract"], rep = timed(lambda: extract_dataset(videos, out, CONFIG, runner=LocalRunner(jobs),
                                                      show_progress=False))
    assert rep.videos_ok == len(videos), rep.failures[:3]
    t["resume"], again = timed(lambda: extract_dataset(list_videos(dataset, root), out, CONFIG,
                                                       runner=LocalRunner(jobs), show_progress=False))
    assert again.videos_processed == 0
    t["info"], s = timed(lambda: summarize(out))
    t["verify"], f = timed(lambda: verify_folder(out))
    assert s["videos_ok"] == len(videos) and f.clean
    t["open_shards + keys"], _ = timed(lambda: open_shards(out).keys())

    def training_set():
        shards = open_shards(out)
        items = load_items(shards, bind(load_split(dataset, split_dir, 1).train, shards))
        return TrainClips(shards, items, DataConfig(stream="temporal", flow_length=1, crop_size=8))
    t["training set"], _ = timed(training_set)
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fraction", type=float, default=1.0, help="of UCF-101's and HMDB-51's names (smoke runs)")
    p.add_argument("--kinetics", type=int, default=60_000, help="Kinetics-named clips")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="extraction processes")
    args = p.parse_args(argv)
    if not (SHARED / "ucf101_splits").is_dir() or not (SHARED / "hmdb51_splits").is_dir():
        print(f"split files not found in {SHARED}", file=sys.stderr)
        return 2
    results = {}
    with tempfile.TemporaryDirectory(prefix="flowprep-counts-") as tmp:
        tmp = Path(tmp)
        for make, arg in ((hmdb51, args.fraction), (ucf101, args.fraction), (kinetics, args.kinetics)):
            name = make.__name__
            root = tmp / name / "videos"
            clip = tmp / name / "clip.avi"  # one clip per dataset: a file takes at most 65,000 hard links
            clip.parent.mkdir(parents=True)
            tiny_clip(clip)
            t0 = time.perf_counter()
            dataset, split_dir, n = make(root, clip, arg)
            print(f"{name}: {n} videos made in {time.perf_counter() - t0:.1f} s; measuring...", flush=True)
            results[name] = (n, measure(dataset, root, split_dir, tmp / name / "out", args.jobs))
    return report(results)


def report(results: dict[str, tuple[int, dict[str, float]]]) -> int:
    """Print the table (seconds per 1,000 videos) and the targets; 0 when all are met."""
    order = sorted(results, key=lambda k: results[k][0])
    small, large = order[0], order[-1]
    head = "".join(f"{f'{k} ({results[k][0]})':>22}" for k in order)
    print(f"\nseconds per 1,000 videos{head}{'largest / smallest':>22}")
    ok = True
    for row in ROWS:
        per = {k: results[k][1][row] / results[k][0] * 1000 for k in order}
        ratio = per[large] / per[small]
        ok &= ratio <= 1.3
        print(f"  {row:22}" + "".join(f"{per[k]:22.3f}" for k in order) + f"{ratio:21.2f}x")
    n, t = results[large]
    resume_ok = t["resume"] < 10
    info_ok = all(t2["info"] <= 2 * t2["open_shards + keys"] for _, t2 in results.values())
    print(f"\nper-video cost at {results[large][0]} within 1.3x of that at {results[small][0]} on every row: "
          f"{'met' if ok else 'MISSED'}")
    print(f"resuming the finished folder of {n} videos: {t['resume']:.2f} s (< 10 s): "
          f"{'met' if resume_ok else 'MISSED'}")
    print("info / (open_shards + keys): " + ", ".join(
        f"{k} {t2['info'] / t2['open_shards + keys']:.2f}x" for k, (_, t2) in results.items())
        + f" (< 2x at every count): {'met' if info_ok else 'MISSED'}")
    return 0 if ok and resume_ok and info_ok else 1


if __name__ == "__main__":
    sys.exit(main())
