"""``flowprep make-demo``: write the bundled motion-only demo dataset (UCF-101 layout)."""
from __future__ import annotations

import argparse
import json

from flowprep.datasets.demo import SMALL_DEFAULTS, DemoConfig, make_demo_dataset


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``flowprep make-demo``."""
    d = DemoConfig()
    p.add_argument("--out", default="data/sample", help="dataset root to write")
    p.add_argument("--small", action="store_true",
                   help="the small companion dataset instead (four classes with the demo's motion programs, "
                        f"{SMALL_DEFAULTS['train_groups'] * SMALL_DEFAULTS['clips']} training videos each unless "
                        "told otherwise): the paper's Table 2, multi-task learning")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed: same seed and flags, same files")
    p.add_argument("--train-groups", type=int, help=f"groups in the training split (default {d.train_groups}; "
                                                    f"--small: {SMALL_DEFAULTS['train_groups']})")
    p.add_argument("--test-groups", type=int, help=f"groups in the test split, g01.. (default {d.test_groups}; "
                                                   f"--small: {SMALL_DEFAULTS['test_groups']})")
    p.add_argument("--clips", type=int, help=f"clips per group and class (default {d.clips}; --small: "
                                             f"{SMALL_DEFAULTS['clips']})")
    p.add_argument("--frames", type=int, default=d.frames, help="frames per video")
    p.add_argument("--size", default=f"{d.width}x{d.height}", help="frame size WIDTHxHEIGHT")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    """Write (or reuse) the demo dataset and print what is there."""
    from flowprep.codecs.video import parse_size
    w, h = parse_size(args.size)
    base = SMALL_DEFAULTS if args.small else {k: getattr(DemoConfig(), k) for k in SMALL_DEFAULTS}
    split = {k: base[k] if getattr(args, k) is None else getattr(args, k) for k in SMALL_DEFAULTS}
    s = make_demo_dataset(args.out, seed=args.seed, frames=args.frames, width=w, height=h, progress=not args.json,
                          small=args.small, **split)
    if args.json:
        print(json.dumps(s))
        return 0
    what = "reused" if s["reused"] else f"wrote in {s['seconds']:.1f} s"
    print(f"demo dataset {s['root']}: {len(s['classes'])} classes, {s['videos']} videos "
          f"({s['train']} train in groups {s['train_groups'][0]}-{s['train_groups'][-1]}, "
          f"{s['test']} test in groups {s['test_groups'][0]}-{s['test_groups'][-1]}), {what}")
    return 0
