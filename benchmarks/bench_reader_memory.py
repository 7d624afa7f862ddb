"""A DataLoader worker's memory and time against the videos it reads: the reader's per-process cache of handles.

An open video holds about 140 KB inside HDF5 (its datasets' headers and indexes); the reader kept the handles of
4,096 videos per process, about 560 MB per worker once a shuffled epoch had touched that many (a scale hunt,
2026-12-07). Now it keeps 256. This script writes folders of tiny videos (3 frames of 32x24, 16 per shard, with
the project's ShardWriter), then in fresh processes reads every video twice (two epochs, each shuffled) through
``TrainClips`` (the trainer's path) with each cache size, and prints the resident memory added and the time per
sample of each epoch. Two sizes: 3,200 videos (200 shards: every file stays open, and the old cache holds every
video by the second epoch: its best case) and 13,320 (UCF-101's count, 833 shards: files are closed past 256,
and their handles with them), both with 256 files kept open, as that comparison was made (with 32, few handles
outlive their file). Targets: at 3,200, ours <= 0.6x the reference's memory; at 13,320, ours no slower than 1.1x
its second epoch. The price, printed too: at 3,200 the old cache's second epoch is faster.

The second comparison: the files a reader keeps open (``_MAX_OPEN``), 256 as it was against ours. Closing an
HDF5 file scans every object the process holds open (h5py's ``File.close``, then ``H5Fclose``): 2.5 ms a close
with 256 files open, 0.3 ms with 32, and a shuffled epoch over UCF-101's 833 shards misses the open set on most
samples (a soak hunt, 2026-12-07). Target at 13,320: ours <= 0.6x the reference's time per sample and <= 0.3x
its memory; the price at 3,200 (200 shards, all open under 256) is printed.

    .venv/bin/python benchmarks/bench_reader_memory.py [--videos 3200 13320] [--only handles|files] [--quick]
    (about 7 min for both)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REFERENCE, OURS = 4096, None  # the cache as it was; None: the reader's own (_HANDLE_CACHE, _MAX_OPEN)
REFERENCE_OPEN = 256  # the files a reader kept open, as it was

_READ = """
import json, random, sys, time
import flowprep.store.reader as reader
from flowprep.loading.clips import DataConfig, TrainClips, load_items
if sys.argv[2] != "None":
    reader._HANDLE_CACHE = int(sys.argv[2])
if sys.argv[3] != "None":
    reader._MAX_OPEN = int(sys.argv[3])
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
shards = reader.open_shards(sys.argv[1])
items = load_items(shards, [(k, 0) for k in shards.keys()])
ds = TrainClips(shards, items, DataConfig(stream="temporal", flow_length=1, crop_size=16), compact=True)
ds.batch([0])
before, out = rss(), {"cache": reader._HANDLE_CACHE, "open": reader._MAX_OPEN}
for epoch in (1, 2):
    order = list(range(len(items)))
    random.Random(epoch).shuffle(order)
    t0 = time.perf_counter()
    for j in range(0, len(order), 64):
        ds.batch(order[j:j + 64])
    out[f"ms{epoch}"] = (time.perf_counter() - t0) / len(order) * 1e3
print(json.dumps({**out, "mb": rss() - before}))
"""


def write_folder(out: Path, videos: int, per: int = 16) -> None:
    """``videos`` tiny videos in shards of ``per``, as a run writes them (settings, index)."""
    from flowprep.codecs.jpeg import encode_bgr, encode_gray
    from flowprep.codecs.quantize import QuantConfig, quantize_flow
    from flowprep.datasets.listing import VideoTask
    from flowprep.extraction.config import ExtractConfig
    from flowprep.solvers import SolverConfig
    from flowprep.store import format as F
    from flowprep.store.record import VideoRecord
    from flowprep.store.settings import bind_settings
    from flowprep.store.workspace import append_index
    from flowprep.store.writer import ShardWriter

    identity = ExtractConfig(solver=SolverConfig(algo="dis", backend="opencv", device="cpu")).identity()
    bind_settings(out, identity, empty=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 24, 32, 3), dtype=np.uint8)
    codes, params, clipped = quantize_flow(rng.normal(0, 2, (2, 2, 24, 32)), QuantConfig())
    base = dict(source="", fps=25.0, width=32, height=24, source_width=32, source_height=24, frames=3,
                rgb=[encode_bgr(f, 95) for f in rgb], flow_x=[encode_gray(c[0], 95) for c in codes],
                flow_y=[encode_gray(c[1], 95) for c in codes], quant=params, clipped=clipped, source_bytes=1)
    for s, first in enumerate(range(0, videos, per)):
        tasks = [VideoTask(f"c{i % 50:02d}/v{i:06d}", f"/data/c{i % 50:02d}/v{i:06d}.avi")
                 for i in range(first, min(videos, first + per))]
        with ShardWriter(out / F.shard_name(s), {**identity, "flowprep_version": "bench"}) as w:
            for t in tasks:
                w.add(VideoRecord(key=t.key, **base))
        append_index(out, F.shard_name(s), tasks)


def read(folder: Path, cache: int | None, files: int | None = None) -> dict:
    p = subprocess.run([sys.executable, "-c", _READ, str(folder), str(cache), str(files)], capture_output=True,
                       text=True, check=True)
    return json.loads(p.stdout.splitlines()[-1])


def _handles_table(rows: dict, small: int, large: int) -> bool:
    print(f"{'videos':>7}  {'handles kept':<18}{'memory added (MB)':>18}{'ms/sample, epoch 1':>20}{'epoch 2':>9}"
          f"   (files kept open: {REFERENCE_OPEN})")
    for n, pair in rows.items():
        for name, r in zip(("reference", "ours"), pair):
            label = f"{name} ({r['cache']})"
            print(f"{n:>7}  {label:<18}{r['mb']:>18.0f}{r['ms1']:>20.2f}{r['ms2']:>9.2f}")
    mem = rows[small][1]["mb"] / max(rows[small][0]["mb"], 1e-9)
    speed = rows[large][1]["ms2"] / rows[large][0]["ms2"]
    ok_mem, ok_speed = mem <= 0.6, speed <= 1.1
    print(f"memory at {small:,}: ours/reference {mem:.2f} (target <= 0.6: {'met' if ok_mem else 'MISSED'}); epoch 2 at "
          f"{large:,}: {speed:.2f}x (target <= 1.1: {'met' if ok_speed else 'MISSED'}); the price, epoch 2 at "
          f"{small:,}: {rows[small][1]['ms2'] / rows[small][0]['ms2']:.2f}x")
    return ok_mem and ok_speed


def _files_table(rows: dict, small: int, large: int) -> bool:
    print(f"{'videos':>7}  {'files kept open':<18}{'memory added (MB)':>18}{'ms/sample, epoch 1':>20}{'epoch 2':>9}")
    for n, pair in rows.items():
        for name, r in zip(("reference", "ours"), pair):
            label = f"{name} ({r['open']})"
            print(f"{n:>7}  {label:<18}{r['mb']:>18.0f}{r['ms1']:>20.2f}{r['ms2']:>9.2f}")
    ref, ours = rows[large]
    speed, mem = ours["ms2"] / ref["ms2"], ours["mb"] / max(ref["mb"], 1e-9)
    ok = speed <= 0.6 and mem <= 0.3
    print(f"at {large:,}: ms/sample, epoch 2, ours/reference {speed:.2f} (target <= 0.6), memory {mem:.2f} (target "
          f"<= 0.3): {'met' if ok else 'MISSED'}; the price, epoch 2 at {small:,}: "
          f"{rows[small][1]['ms2'] / rows[small][0]['ms2']:.2f}x")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, nargs=2, default=[3200, 13320], metavar=("FITS", "UCF101"))
    p.add_argument("--only", choices=("handles", "files"), help="one of the two comparisons (default: both)")
    p.add_argument("--quick", action="store_true", help="800 and 1,600 videos: a smoke run, not a measurement")
    args = p.parse_args(argv)
    small, large = (800, 1600) if args.quick else args.videos
    handles, files = {}, {}
    for n in (small, large):
        with tempfile.TemporaryDirectory() as tmp:
            write_folder(Path(tmp), n)
            if args.only != "files":
                # under the files cap the comparison was made with: with 32 open, few handles outlive their file
                handles[n] = read(Path(tmp), REFERENCE, REFERENCE_OPEN), read(Path(tmp), OURS, REFERENCE_OPEN)
            if args.only != "handles":
                files[n] = read(Path(tmp), OURS, REFERENCE_OPEN), read(Path(tmp), OURS)
    ok = True
    if handles:
        ok = _handles_table(handles, small, large) and ok
    if files:
        if handles:
            print()
        ok = _files_table(files, small, large) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
