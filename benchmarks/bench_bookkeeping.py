"""Bookkeeping that grows with the number of videos stays linear up to Kinetics-700's 650,000 clips: reading
mmaction2 annotation lists for import, and building the trainer's class-balanced sampler.

    .venv/bin/python benchmarks/bench_bookkeeping.py [--sizes 10000 100000 650000] [--quick]

Both were quadratic or worse at scale (a scale hunt, 2026-12-07): ``list_mmaction2`` looked each key up in a list
(the RGB and flow lists of a subset name the same videos): 13 s at 32,000 rows, about an hour projected for
Kinetics-700, before any progress bar; ``ClassBalancedSampler`` compared every label with every class (15-33 s at
650,000 videos and 700 classes, on every rank, at every `train fit --balanced`). For each step the cost per 1,000
videos at each size is printed, and the reference is the smallest size's: the ratio of the largest size's per-video
cost to it. Target: that ratio <= 1.5 on each row (linear, with room for a busy machine).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from flowprep.interchange.mmaction2 import list_mmaction2
from flowprep.loading.sampling import ClassBalancedSampler

CLASSES = 700  # Kinetics-700
TARGET = 1.5


def mmaction2_lists(folder: Path, n: int) -> None:
    """A Kinetics-style rawframes folder's train lists (RGB and flow, naming the same n clips); 20 frame folders
    exist (the reader checks the first 20 to find the tree)."""
    rows = [f"c{i % CLASSES}/{i:011d}_000000_000010 {10} {i % CLASSES}\n" for i in range(n)]
    for name in ("kinetics700_train_list_rawframes.txt", "kinetics700_train_list_flow.txt"):
        (folder / name).write_text("".join(rows))
    for row in rows[:20]:
        (folder / "rawframes_train" / row.split()[0]).mkdir(parents=True, exist_ok=True)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(n: int) -> dict[str, float]:
    """Seconds per 1,000 videos for each step at n videos."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mmaction2_lists(folder, n)
        listed = timed(lambda: list_mmaction2(folder))
    labels = list(np.random.default_rng(0).integers(CLASSES, size=n))  # a list, as train.fit passes it
    sampler = timed(lambda: ClassBalancedSampler(labels))
    return {"mmaction2 lists (import)": listed / n * 1000, "class-balanced sampler": sampler / n * 1000}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 650_000])
    p.add_argument("--quick", action="store_true", help="1,000 and 10,000 videos: a smoke run, not a measurement")
    args = p.parse_args(argv)
    sizes = [1_000, 10_000] if args.quick else sorted(args.sizes)
    results = {n: measure(n) for n in sizes}
    print(f"{'step':<28}" + "".join(f"{f'ms/1k @ {n:,}':>18}" for n in sizes) + f"{'ratio':>8}  target")
    missed = False
    for step in results[sizes[0]]:
        ratio = results[sizes[-1]][step] / max(results[sizes[0]][step], 1e-9)
        ok = ratio <= TARGET
        missed |= not ok
        print(f"{step:<28}" + "".join(f"{results[n][step] * 1000:>18.2f}" for n in sizes)
              + f"{ratio:>8.2f}  <= {TARGET}: {'met' if ok else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
