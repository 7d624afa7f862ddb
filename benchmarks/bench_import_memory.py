"""Peak memory of `flowprep import` against a video's length: one very long video folder, bounded.

Each row writes one denseflow folder (flow_x/flow_y/img JPEGs at 320x240, a textured scene shifting by a few
pixels, so every file is a real JPEG of typical size) and imports it into one shard with ``ImportWork``, as an
import worker does, in a fresh Python process; it reports the process's peak resident memory (``VmHWM``)
beside its memory before the import. Each length is imported twice in the same run: as `flowprep import` does
now (a video's images go to the shard in pieces of ``SPILL_BYTES``) and, as the reference, the whole video held
in memory until it is written (what import did before, and what denseflow-style loaders do).

Target: the long video's peak within 1.25x the short one's (the same target as bench_memory.py's for
extraction), and the shards of both ways identical to the byte in their JPEGs. Exit status 1 when missed.

    .venv/bin/python benchmarks/bench_import_memory.py [--quick]   (about 20 s; --quick: 3,000 flows, 5 s)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from bench_memory import rss_mb  # noqa: E402  (this script's folder is on the path)

LENGTH_TARGET = 1.25
WHOLE = 1 << 62  # spill_bytes that never spills: the reference, the whole video held in memory


def write_folder(folder: Path, flows: int, width: int = 320, height: int = 240) -> int:
    """A denseflow folder of ``flows`` flows and flows + 1 frames; returns its JPEG bytes."""
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur((rng.random((height + 32, width + 32, 3)) * 255).astype(np.uint8), (0, 0), 2)
    folder.mkdir(parents=True)
    blobs = [cv2.imencode(".jpg", np.ascontiguousarray(tex[s:s + height, s:s + width]))[1].tobytes()
             for s in range(16)]  # 16 distinct frames, cycled: every file is read and held as its own bytes
    gray = [cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(tex[s:s + height, s:s + width]),
                                              cv2.COLOR_BGR2GRAY))[1].tobytes() for s in range(16)]
    total = 0
    for t in range(flows + 1):
        names = [("img", blobs[t % 16])] + ([("flow_x", gray[t % 16]), ("flow_y", gray[(t + 8) % 16])]
                                            if t < flows else [])
        for name, data in names:
            (folder / f"{name}_{t:05d}.jpg").write_bytes(data)
            total += len(data)
    return total


def child(folder: str, shard: str, spill_bytes: str) -> None:
    """Import one folder into one shard and print the memory figures as JSON (run in a fresh process)."""
    from flowprep.datasets.listing import VideoTask
    from flowprep.interchange.importing import ImportWork
    from flowprep.runners import Chunk

    work = ImportWork("denseflow", spill_bytes=int(spill_bytes))
    before = rss_mb()
    t0 = time.perf_counter()
    result = work(Chunk(0, (VideoTask("bench/v", folder),), shard))
    peak = rss_mb("VmHWM")
    v = result.videos[0]
    print(json.dumps({"before": before, "peak": peak, "seconds": time.perf_counter() - t0, "flows": v.flows,
                      "status": v.status, "reason": v.reason, "bytes": v.bytes}))


def measure(folder: Path, shard: Path, spill_bytes: int) -> dict:
    """Import ``folder`` in a fresh process; its figures."""
    r = subprocess.run([sys.executable, __file__, "--child", str(folder), str(shard), str(spill_bytes)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"the import of {folder.name} failed:\n{r.stderr[-2000:]}")
    row = json.loads(r.stdout.strip().splitlines()[-1])
    if row["status"] != "ok":
        raise SystemExit(f"{folder.name}: {row['status']} ({row['reason']})")
    return row


def same_jpegs(a: Path, b: Path) -> bool:
    """Whether two shards hold the same video with the same JPEG bytes and parameters."""
    from flowprep.store.shardfile import read_records

    ra, rb = next(read_records(a, ["bench/v"])), next(read_records(b, ["bench/v"]))
    return (ra.rgb, ra.flow_x, ra.flow_y, ra.quant.tolist()) == (rb.rgb, rb.flow_x, rb.flow_y, rb.quant.tolist())


def main(argv: list[str] | None = None) -> int:
    """Run the rows and print the table, the ratio to the reference and the target."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3,000 flows for the long row instead of 12,000")
    p.add_argument("--child", nargs=3, metavar=("FOLDER", "SHARD", "SPILL_BYTES"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(*a.child)
        return 0
    lengths = (300, 3000 if a.quick else 12000)
    print("import of one denseflow video folder (320x240) into one shard, a fresh process each; resident MB")
    print(f"{'flows':>6} {'JPEG MB':>8} {'before':>7} {'peak: ours':>11} {'whole video':>12} {'ratio':>6} "
          f"{'seconds':>8}")
    peaks, same = [], True
    with tempfile.TemporaryDirectory() as tmp:
        for flows in lengths:
            folder = Path(tmp) / f"v{flows}"
            size = write_folder(folder, flows)
            ours = measure(folder, Path(tmp) / f"ours{flows}.h5", _spill_bytes())
            ref = measure(folder, Path(tmp) / f"whole{flows}.h5", WHOLE)
            same &= same_jpegs(Path(tmp) / f"ours{flows}.h5", Path(tmp) / f"whole{flows}.h5")
            peaks.append(ours["peak"])
            print(f"{flows:>6} {size / 2**20:8.1f} {ours['before']:7.0f} {ours['peak']:11.0f} {ref['peak']:12.0f} "
                  f"{ref['peak'] / ours['peak']:5.2f}x {ours['seconds']:8.1f}", flush=True)
    ratio = peaks[1] / peaks[0]
    ok = ratio <= LENGTH_TARGET and same
    print(f"\ntarget: peak of {lengths[1]} flows / peak of {lengths[0]} flows = {ratio:.3f} (<= {LENGTH_TARGET}), "
          f"and the same shard both ways ({'yes' if same else 'NO'}): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


def _spill_bytes() -> int:
    from flowprep.store.writer import SPILL_BYTES

    return SPILL_BYTES


if __name__ == "__main__":
    sys.exit(main())
