"""`flowprep info` against opening the folder, on 13,320 tiny videos with UCF-101's names (issue 11).

    .venv/bin/python benchmarks/bench_catalog.py [--videos N] [--frames F]

The folder is written directly with the shard writer (16 videos per shard, the extractor's default; every
video the same tiny 32x24 clip, so that only the count matters), keyed by the names of the official split
files in ../shared/data/ucf101_splits. Three timings, best of 3, on the same folder in the same run:

* reference: ``open_shards`` + ``keys()``, what every reader pays to open a folder;
* ``flowprep info`` as it is (``summarize``: one catalog per shard);
* ``flowprep info`` as it was before the catalog: every video's group and every JPEG read to count bytes (the
  path flowprep 0.1 shards, which have no catalog, still take).

Target: info <= 2x open_shards + keys.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from flowprep.codecs.jpeg import encode_bgr, encode_gray
from flowprep.codecs.quantize import QuantConfig, quantize_flow
from flowprep.datasets.splits import load_split
from flowprep.store import format as F
from flowprep.store.reader import open_shards
from flowprep.store.record import VideoRecord
from flowprep.store.shardfile import catalog_from_groups, read_header
from flowprep.store.summary import summarize
from flowprep.store.writer import ShardWriter

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ucf101_splits"
PER_SHARD = 16


def ucf101_keys() -> list[str]:
    """Every video of UCF-101 as a shard key (Class/v_Class_gXX_cYY), from the official split 1 lists."""
    split = load_split("ucf101", SPLITS, 1)
    return sorted({n.rsplit(".", 1)[0] for n, _ in split.train + split.test})


def tiny_record(frames: int) -> VideoRecord:
    """One tiny video's JPEGs (32x24, moving noise), reused for every key."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (frames, 24, 32, 3), dtype=np.uint8)
    codes, params, clipped = quantize_flow(rng.normal(0, 2, (frames - 1, 2, 24, 32)), QuantConfig())
    return VideoRecord(key="", source="", fps=25.0, width=32, height=24, source_width=32, source_height=24,
                       frames=frames, rgb=[encode_bgr(f, 95) for f in rgb],
                       flow_x=[encode_gray(c[0], 95) for c in codes], flow_y=[encode_gray(c[1], 95) for c in codes],
                       quant=params, clipped=clipped)


def write_folder(out: Path, keys: list[str], frames: int) -> None:
    base = tiny_record(frames)
    for i in range(0, len(keys), PER_SHARD):
        with ShardWriter(out / F.shard_name(i // PER_SHARD), {"jpeg_quality": 95}) as w:
            for k in keys[i:i + PER_SHARD]:
                rec = VideoRecord(**{**base.__dict__, "key": k, "source": f"/data/UCF-101/{k}.avi"})
                w.add(rec)


def info_before(out: Path) -> int:
    """What `flowprep info` did before the catalog: open every group and read every JPEG to count bytes."""
    total = 0
    for path in F.list_shards(out):
        with h5py.File(path, "r") as f:
            _, keys, _ = read_header(f, path)
            total += sum(e["bytes"] for e in catalog_from_groups(f, keys))
    return total


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=None, help="how many of UCF-101's names (default: all 13,320)")
    p.add_argument("--frames", type=int, default=6, help="frames per tiny video")
    args = p.parse_args(argv)
    if not SPLITS.is_dir():
        print(f"UCF-101 split files not found in {SPLITS}", file=sys.stderr)
        return 2
    keys = ucf101_keys()[:args.videos]
    with tempfile.TemporaryDirectory(prefix="flowprep-catalog-") as tmp:
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        write_folder(out, keys, args.frames)
        made = time.perf_counter() - t0
        ref = best_of(lambda: open_shards(out).keys())
        now = best_of(lambda: summarize(out))
        before = best_of(lambda: info_before(out))
        assert summarize(out)["videos_ok"] == len(keys) and info_before(out) == sum(
            v["bytes"] for v in summarize(out)["videos"])
    shards = -(-len(keys) // PER_SHARD)
    print(f"{len(keys)} videos with UCF-101's names in {shards} shards of {PER_SHARD} ({args.frames} frames of 32x24 "
          f"each; written in {made:.1f} s); seconds, best of 3:")
    print(f"  reference: open_shards + keys          {ref:8.3f}   1.00x")
    print(f"  flowprep info (catalogs)               {now:8.3f}   {now / ref:5.2f}x reference")
    print(f"  flowprep info before (every JPEG read) {before:8.3f}   {before / ref:5.2f}x reference, "
          f"{before / now:.1f}x info now")
    ok = now <= 2 * ref
    print(f"target: info <= 2x open_shards + keys: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
