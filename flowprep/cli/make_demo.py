"""``flowprep make-demo``: write the bundled motion-only demo dataset (UCF-101 layout)."""
from __future__ import annotations

import argparse
import json

from flowprep.datasets.demo import DemoConfig, make_demo_dataset


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``flowprep make-demo``."""
    d = DemoConfig()
    p.add_argument("--out", default="data/sample", help="dataset root to write")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed: same seed and flags, same files")
    p.add_argument("--train-groups", type=int, default=d.train_groups, help="groups in the training split")
    p.add_argument("--test-groups", type=int, default=d.test_groups, help="groups in the test split (g01..)")
    p.add_argument("--clips", type=int, default=d.clips, help="clips per group and class")
    p.add_argument("--frames", type=int, default=d.frames, help="frames per video")
    p.add_argument("--size", default=f"{d.width}x{d.height}", help="frame size WIDTHxHEIGHT")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    """Write (or reuse) the demo dataset and print what is there."""
    from flowprep.codecs.video import parse_size
    w, h = parse_size(args.size)
    s = make_demo_dataset(args.out, seed=args.seed, train_groups=args.train_groups, test_groups=args.test_groups,
                          clips=args.clips, frames=args.frames, width=w, height=h, progress=not args.json)
    if args.json:
        print(json.dumps(s))
        return 0
    what = "reused" if s["reused"] else f"wrote in {s['seconds']:.1f} s"
    print(f"demo dataset {s['root']}: {len(s['classes'])} classes, {s['videos']} videos "
          f"({s['train']} train in groups {s['train_groups'][0]}-{s['train_groups'][-1]}, "
          f"{s['test']} test in groups {s['test_groups'][0]}-{s['test_groups'][-1]}), {what}")
    return 0
