"""Peak memory of extraction against a video's length (issue 20: bounded memory).

Each row extracts one synthetic video (a textured scene panning back and forth) into one shard with
``extract_chunk``, as a worker does, in a fresh Python process, and reports the process's peak resident memory
(``VmHWM``) beside its resident memory before the extraction (imports and solver made). Rows:

* 500 and 20,000 frames at 160x120 (DIS, so that 20,000 pairs take seconds; the solver's memory does not grow
  with the length either): target 1, the long video's peak within 1.25x the short one's;
* 300 and 600 frames at 1920x1080 with DIS: 300 are enough to fill the pipeline's queues (its decoded gray
  frames, most of the memory at this size) and spill to the shard many times; 600 show that twice the length
  needs no more;
* 4 frames at 1920x1080 with TV-L1 and with DIS: what TV-L1's own working set adds at 1080p.

Target 2: a 2-hour 1080p video (216,000 frames at 30 fps) extracted with TV-L1 on a 4 GB machine, projected as
the larger 1080p peak plus TV-L1's extra working set (the length rows show that the peak does not grow with
the number of frames). Exit status 1 when a target is missed.

    .venv/bin/python benchmarks/bench_memory.py [--quick]     (about 4 min; --quick: 5,000 frames, 150/300 at 1080p)
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
LENGTH_TARGET, MACHINE_MB = 1.25, 4096
TWO_HOURS = 2 * 3600 * 30


def write_video(path: Path, frames: int, width: int, height: int) -> None:
    """A panning texture (8 px steps back and forth), MJPG: decodable by every OpenCV build."""
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur((rng.random((height + 64, width + 64)) * 255).astype(np.uint8), (0, 0), 3)
    tex = cv2.cvtColor(tex, cv2.COLOR_GRAY2BGR)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    for t in range(frames):
        x = 8 * abs(t % 16 - 8)
        out.write(np.ascontiguousarray(tex[:height, x:x + width]))
    out.release()


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (``VmHWM``: at its peak), MB (Linux /proc). The peak is not
    ``ru_maxrss``: a child's ru_maxrss starts at its parent's resident memory when it was spawned."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(video: str, algo: str, shard: str) -> None:
    """Extract one video into one shard and print the memory figures as JSON (run in a fresh process)."""
    from flowprep.datasets.listing import VideoTask
    from flowprep.extraction.config import ExtractConfig
    from flowprep.extraction.extract import _worker_solver, extract_chunk
    from flowprep.solvers import SolverConfig

    config = ExtractConfig(solver=SolverConfig(algo=algo, backend="opencv", device="cpu"))
    _worker_solver(config.solver)  # made before the baseline, as in a worker that has done one chunk
    before = rss_mb()
    t0 = time.perf_counter()
    result = extract_chunk([VideoTask("bench/v", video)], shard, config)
    peak = rss_mb("VmHWM")
    v = result.videos[0]
    print(json.dumps({"before": before, "peak": peak, "seconds": time.perf_counter() - t0, "frames": v.frames,
                      "status": v.status, "bytes": v.bytes}))


def measure(tmp: Path, frames: int, size: tuple[int, int], algo: str) -> dict:
    """One row: write the video, extract it in a fresh process, return its figures."""
    video = tmp / f"v{frames}_{size[0]}_{algo}.avi"
    write_video(video, frames, *size)
    shard = tmp / f"{video.stem}.h5"
    r = subprocess.run([sys.executable, __file__, "--child", str(video), algo, str(shard)], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"the extraction of {video.name} failed:\n{r.stderr[-2000:]}")
    video.unlink()
    shard.unlink()
    row = json.loads(r.stdout.strip().splitlines()[-1])
    if row["status"] != "ok" or row["frames"] != frames:
        raise SystemExit(f"{video.name}: extracted {row['frames']} of {frames} frames ({row['status']})")
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the rows and print the table and the two targets."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5,000 frames for the long row, 150 and 300 at 1080p")
    p.add_argument("--child", nargs=3, metavar=("VIDEO", "ALGO", "SHARD"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(*a.child)
        return 0
    long_n, hd_n = (5000, 150) if a.quick else (20000, 300)
    rows = [(500, (160, 120), "dis"), (long_n, (160, 120), "dis"), (hd_n, (1920, 1080), "dis"),
            (2 * hd_n, (1920, 1080), "dis"), (4, (1920, 1080), "dis"), (4, (1920, 1080), "tvl1")]
    print("extraction of one video into one shard, a fresh process each; resident memory in MB")
    print(f"{'frames':>7} {'size':>10} {'solver':>6} {'before':>7} {'peak':>7} {'JPEG MB':>8} {'seconds':>8}")
    got = []
    with tempfile.TemporaryDirectory() as tmp:
        for frames, size, algo in rows:
            r = measure(Path(tmp), frames, size, algo)
            got.append(r)
            print(f"{frames:>7} {size[0]:>5}x{size[1]:<4} {algo:>6} {r['before']:7.0f} {r['peak']:7.0f} "
                  f"{r['bytes'] / 2**20:8.1f} {r['seconds']:8.1f}", flush=True)
    ratio, hd_ratio = got[1]["peak"] / got[0]["peak"], got[3]["peak"] / got[2]["peak"]
    tvl1_extra = max(0.0, got[5]["peak"] - got[4]["peak"])
    hd_peak = max(got[2]["peak"], got[3]["peak"])
    projected = hd_peak + tvl1_extra
    ok1, ok2 = ratio <= LENGTH_TARGET, projected <= MACHINE_MB
    print(f"\ntarget 1: peak of {long_n} frames / peak of 500 frames = {ratio:.3f} (<= {LENGTH_TARGET}): "
          f"{'met' if ok1 else 'MISSED'}; at 1080p, {2 * hd_n} / {hd_n} frames = {hd_ratio:.3f}")
    print(f"target 2: a 2-hour 1080p video ({TWO_HOURS} frames) with TV-L1: {hd_peak:.0f} MB (1080p, DIS) + "
          f"{tvl1_extra:.0f} MB (TV-L1's working set at 1080p) = {projected:.0f} MB (<= {MACHINE_MB} MB): "
          f"{'met' if ok2 else 'MISSED'}")
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    sys.exit(main())
