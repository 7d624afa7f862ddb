"""The GPU check's peer (issue 14): RAPIDS cuCIM's GPU TV-L1 (``cucim.skimage.registration.optical_flow_tvl1``)
on our data, printed beside ours; a comparison, not a target. ``check_cucim`` runs, in a subprocess (its CUDA
memory apart from torch's): ``python benchmarks/gpu_check_peer.py --data DIR --out FILE.json [--device cuda|cpu]
[--budget S] [--scale F]``: EPE on the 5 Middlebury pairs (full size) at cuCIM's defaults and at ``MATCHED`` (the
setting whose mean EPE is closest to ours), and pairs/s on 320x240 pairs of the UCF-101 clip, one pair at a time
(cuCIM has no batch). The GPU machine has no network: ``prepare_peer`` downloads the cucim-cu13 wheel here into
.gpu_check/whl, and the script installs it into /tmp/flowprep-peer-site there if ``import cucim`` fails.
``--device cpu`` runs the same code with scikit-image (the code cuCIM ports: same algorithm, API and defaults)
on small frames, to test it without a GPU."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # flowprep and the check's modules, run from anywhere
from gpu_check_flow import SEQUENCES, Context, _result, clip_frames  # noqa: E402

from flowprep.base.durable import write_json  # noqa: E402

NAME = "cuCIM TV-L1 beside ours"
PREPARED = REPO / ".gpu_check"
PEER_SITE = Path("/tmp/flowprep-peer-site")
PACKAGE = "cucim-cu13"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
MORE_PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_24_x86_64")
MAX_BYTES = 35 * 2**20  # wheels beside the data (~21 MB) within the device tool's 64 MiB carry
# distributions the GPU machine's python already has (cucim's requirements met there as they are)
ON_GPU_MACHINE = frozenset({"click", "cupy-cuda13x", "lazy-loader", "numpy", "scipy", "scikit-image",
                            "opencv-python-headless"})
NOT_NEEDED = {"nvidia-nvimgcodec-cu13": "image decoding for cucim.clara only; cucim.skimage never imports it"}

# ours, torch TV-L1 at OpenCV's default parameters, full size (benchmarks/TVL1.md)
OURS_EPE = {"Dimetrodon": 0.1795, "Grove2": 0.1566, "RubberWhale": 0.1562, "Urban2": 3.5742, "Venus": 0.3061}
OURS_MEAN_EPE = 0.8745
DEFAULTS: dict = {}  # cuCIM's own: attachment 15, tightness 0.3, num_warp 5, num_iter 10, tol 1e-4
# The setting whose 5-sequence mean EPE is closest to ours, found on the CPU with scikit-image 0.26.0 (the same
# code as cuCIM 26.10's, float32 both; only the array library differs), full size, over SWEEP (2 min 51 s here):
#   python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install numpy scikit-image opencv-python-headless
#   PYTHONPATH=$PWD /tmp/skvenv/bin/python benchmarks/gpu_check_peer.py --device cpu --scale 1 --sweep \
#       --data ../shared/data --out /tmp/peer-sweep.json --budget 1800
# mean EPE (Dimetrodon Grove2 RubberWhale Urban2 Venus): defaults (warp 5, iter 10) 0.3910 (0.238 0.232 0.268
# 0.666 0.551); warp 1 iter 10 0.8761 (0.430 0.274 0.358 2.505 0.815); ours 0.8745 (0.180 0.157 0.156 3.574 0.306);
# next: warp 3 iter 3 0.8091; warp 5 iter 1, 2: 1.3052, 0.7325 (num_warp had to move). Urban2 makes the match:
# cuCIM's factor-2 pyramid follows its large motion; on the other 4 cuCIM is worse than ours at every setting
# tried (their mean: 0.3223 defaults, 0.4690 matched, 0.2909 at warp 10 iter 50; ours 0.1996).
MATCHED = {"num_warp": 1, "num_iter": 10}
SWEEP = tuple({"num_warp": w, "num_iter": i} for w in (1, 2, 3, 5) for i in (1, 2, 3, 5, 10, 20))
WINDOW_S = {"cuda": 10.0, "cpu": 1.0}  # timing window per setting (the CPU only tests the code)
MAX_PAIRS = {"cuda": 100_000, "cpu": 8}
PEER_BUDGET = 60.0  # seconds for the script, wheel install included
KEEP_FOR_LATER = {"cuda": 120.0, "cpu": 0.0}  # of ctx.left(), for the checks after this one (extract, training)
TIMING_NOTE = ("pairs/s: one pair at a time on {size} pairs of the UCF-101 clip, host->device copy of both "
               "uint8 frames and device->host copy of the float32 flow included (as for ours), the device "
               "synchronized before the clock is read, the first call excluded (CuPy compiles its kernels)")


class PeerSkipped(Exception):
    """Nothing to measure with (no wheel, or no scikit-image to simulate with)."""


def _norm(requirement: str) -> str:
    """The distribution name of a requirement, normalized (``Lazy_Loader>=0.4`` -> ``lazy-loader``)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else requirement


def requires(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist, without those of extras (test, docs, ...)."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode("utf-8", "replace").splitlines()
    reqs = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")]
    return [r for r in reqs if "extra ==" not in r]


def _download(names: list[str], dest: Path, platforms: tuple[str, ...], pure: bool = False) -> tuple[int, str, list]:
    """pip download (no deps, wheels only) for CPython 3.12; exit code, last error line, the wheels it names."""
    where = ["--implementation", "py", "--abi", "none", "--platform", "any"] if pure else \
        ["--implementation", "cp", *[a for p in platforms for a in ("--platform", p)]]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           *where, "-d", str(dest), *names]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    saved = re.findall(r"(?:Saved|File was already downloaded) (\S+\.whl)", r.stdout)
    return r.returncode, _last_line(r.stderr), [Path(s).name for s in saved]


def _last_line(text: str) -> str:
    """The last line of pip's stderr that says something (not a warning)."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return lines[-1] if lines else ""


def prepare_peer(dest: Path = PREPARED, limit: int = MAX_BYTES) -> dict:
    """Download cucim-cu13 (CPython 3.12, manylinux x86_64) and any pure-Python requirement the GPU machine lacks
    into ``dest/whl``; return the manifest (also written to whl/peer_manifest.json): files, bytes, requires,
    or ``skipped`` and why (download failed, or the wheels too large to travel)."""
    whl = dest / "whl"
    whl.mkdir(parents=True, exist_ok=True)
    rc, err, saved = _download([PACKAGE], whl, PLATFORMS)
    if rc:  # a newer release may be built for a newer glibc only
        rc, err, saved = _download([PACKAGE], whl, PLATFORMS + MORE_PLATFORMS)
    if rc or not saved:  # what an earlier preparation left stays
        return _manifest(whl, skipped=f"pip download {PACKAGE} failed: {err or 'no wheel'}")
    reqs = requires(whl / saved[0])
    extra = sorted({_norm(r) for r in reqs} - ON_GPU_MACHINE - set(NOT_NEEDED))
    rc, err, more = _download(extra, whl, (), pure=True) if extra else (0, "", [])
    size = sum((whl / n).stat().st_size for n in saved + more)
    skipped = f"{', '.join(extra)}: no pure-Python wheel ({err})" if rc else "" if size <= limit else \
        f"wheels are {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB that fit beside the data in the carry"
    for stale in whl.glob("*.whl"):  # two cuCIM versions would make the offline install fail
        if skipped or stale.name not in saved + more:
            stale.unlink()
    if skipped:
        return _manifest(whl, skipped=skipped, requires=reqs)
    return _manifest(whl, files=sorted(saved + more), bytes=size, requires=reqs, downloaded_beyond_cucim=extra,
                     not_needed=NOT_NEEDED)


def _manifest(whl: Path, **fields) -> dict:
    """Write and return the manifest (check_cucim's dry run reads why a wheel is missing from it)."""
    write_json(whl / "peer_manifest.json", fields, fsync=False, indent=1, sort_keys=False)
    return fields


def wheel_state(wheels: Path) -> tuple[list[Path], str]:
    """The prepared wheels and, when there are none, why (the manifest's reason, or "not prepared")."""
    found, manifest = sorted(wheels.glob("*.whl")), wheels / "peer_manifest.json"
    reason = json.loads(manifest.read_text()).get("skipped", "") if manifest.is_file() else ""
    if not found:
        reason = reason or f"no cuCIM wheel in {wheels}: run `benchmarks/gpu_check.sh --prepare` (needs PyPI)"
    return found, reason


@dataclass
class Peer:
    """The TV-L1 under test and how frames reach its device and the flow comes back."""

    name: str
    device_name: str
    tvl1: Callable
    to_device: Callable
    to_host: Callable
    sync: Callable


def to_uv(flow_vu: np.ndarray) -> np.ndarray:
    """scikit-image / cuCIM flow is (row, col) = (v, u) per axis; flowprep's and .flo's is (u, v)."""
    return np.ascontiguousarray(flow_vu[::-1])


def _import_cucim(wheels: Path) -> None:
    """Make ``import cucim`` work: the machine's own, else the carried wheel installed into PEER_SITE."""
    try:
        import cucim  # noqa: F401
        return
    except ImportError:
        pass
    found, reason = wheel_state(wheels)
    if not found:
        raise PeerSkipped(reason)
    if not (PEER_SITE / "cucim" / "__init__.py").is_file():  # a second run on the same machine reuses it
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--target",
               str(PEER_SITE), *map(str, found)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if r.returncode:
            raise RuntimeError(f"pip install {found[0].name} failed: {_last_line(r.stderr)}")
    sys.path.insert(0, str(PEER_SITE))
    importlib.invalidate_caches()


def load_peer(device: str, wheels: Path) -> Peer:
    """cuCIM on the GPU, or scikit-image on the CPU (to test this script); PeerSkipped if neither is there."""
    if device == "cpu":
        try:
            import skimage
            from skimage.registration import optical_flow_tvl1
        except ImportError as e:
            raise PeerSkipped(f"scikit-image is not installed: nothing to simulate cuCIM with ({e})") from None
        return Peer(f"scikit-image {skimage.__version__} (CPU stand-in for cuCIM)", "cpu", optical_flow_tvl1,
                    np.asarray, np.asarray, lambda: None)
    os.environ.setdefault("CUPY_CACHE_DIR", str(REPO / ".gpu_cache" / "cupy"))  # a rerun compiles nothing
    _import_cucim(wheels)
    import cucim
    import cupy
    from cucim.skimage.registration import optical_flow_tvl1
    dev = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
    return Peer(f"cuCIM {cucim.__version__}", name.decode() if isinstance(name, bytes) else str(name),
                optical_flow_tvl1, cupy.asarray, cupy.asnumpy, dev.synchronize)


def _gt_at(gt: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Ground truth (2, H, W) at another size: nearest samples, vectors scaled (unknown values stay > 1e9)."""
    if gt.shape[1:] == tuple(shape):
        return gt
    import cv2

    from flowprep.quality.metrics import unknown_mask
    h, w = shape
    near = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_NEAREST) for c in gt])
    scaled = near * np.array([w / gt.shape[2], h / gt.shape[1]], dtype=np.float32)[:, None, None]
    return np.where(unknown_mask(near)[None], near, scaled)  # 1.7e9 x 0.25 would pass for known


def middlebury(data: Path, scale: float) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(sequence, frame10, frame11, ground truth (u, v)) for the 5 sequences, gray, scaled."""
    import cv2

    from flowprep.codecs.flo import read_flo
    from flowprep.quality.ground_truth import read_gray
    pairs = []
    for s in SEQUENCES:
        d = data / "middlebury" / s
        f0, f1 = (read_gray(d / f) if scale == 1.0 else cv2.resize(read_gray(d / f), None, fx=scale, fy=scale,
                  interpolation=cv2.INTER_AREA) for f in ("frame10.png", "frame11.png"))
        pairs.append((s, f0, f1, _gt_at(read_flo(d / "flow10.flo"), f0.shape)))
    return pairs


def flow(peer: Peer, f0: np.ndarray, f1: np.ndarray, params: dict) -> np.ndarray:
    """One pair's flow on the host as (u, v): frames copied to the device, flow copied back."""
    return to_uv(peer.to_host(peer.tvl1(peer.to_device(f0), peer.to_device(f1), **params)))


def mean_epe(peer: Peer, pairs: list, params: dict) -> list[float]:
    """EPE of each pair against its ground truth (flowprep.quality.metrics.flow_errors)."""
    from flowprep.quality.metrics import flow_errors
    return [flow_errors(flow(peer, f0, f1, params), gt)["epe"] for _, f0, f1, gt in pairs]


def rate(peer: Peer, frames: list[np.ndarray], params: dict, window: float, cap: int) -> dict:
    """pairs/s of one setting over consecutive pairs of the clip, one at a time, within ``window`` seconds."""
    t = time.perf_counter()
    flow(peer, frames[0], frames[1], params)  # the first call: CuPy compiles (or loads) its kernels
    peer.sync()
    first = time.perf_counter() - t
    n, t = 0, time.perf_counter()
    while n < 3 or (time.perf_counter() - t < window and n < cap):
        i = 1 + n % (len(frames) - 2)
        flow(peer, frames[i], frames[i + 1], params)
        n += 1
    peer.sync()
    seconds = time.perf_counter() - t
    return {"pairs_s": round(n / seconds, 2), "pairs": n, "seconds": round(seconds, 2), "first_call_s": round(first, 2)}


def sweep(peer: Peer, pairs: list, deadline: float) -> dict:
    """Mean EPE for every setting of SWEEP (how MATCHED was found), and the setting closest to ours."""
    rows = []
    for params in SWEEP:
        if deadline - time.perf_counter() < 5:
            break
        t = time.perf_counter()
        epe = mean_epe(peer, pairs, params)
        small = [e for (s, *_), e in zip(pairs, epe) if s != "Urban2"]  # the 4 small-motion sequences
        rows.append({**params, "mean_epe": round(float(np.mean(epe)), 4), "mean4_epe": round(float(np.mean(small)), 4),
                     "epe": [round(e, 4) for e in epe], "seconds": round(time.perf_counter() - t, 1)})
    best = min(rows, key=lambda r: abs(r["mean_epe"] - OURS_MEAN_EPE), default=None)
    return {"rows": rows, "closest_to_ours": best and {k: best[k] for k in ("num_warp", "num_iter", "mean_epe")}}


def measure(args: argparse.Namespace, out: dict, save: Callable[[], None]) -> list[str]:
    """EPE, then pairs/s, at each setting in turn, ``out`` saved after each step (a kill leaves what was
    measured, marked as cut short); returns notes on what was left out."""
    deadline, notes = time.perf_counter() + args.budget, []
    out["error"] = "cut short while loading the peer"
    peer = load_peer(args.device, args.wheels)
    out.update(peer=peer.name, device=peer.device_name, matched_params=dict(MATCHED))
    settings = {"default": DEFAULTS, "matched": MATCHED}
    pairs = middlebury(args.data, args.scale)
    out["epe"] = [{"sequence": s, "size": f"{f0.shape[1]}x{f0.shape[0]}"} for s, f0, _, _ in pairs]
    for key, params in settings.items():
        if deadline - time.perf_counter() < 10:
            notes.append(f"EPE at {key}: out of time")
            continue
        out["error"] = f"cut short during EPE at {key}"
        save()
        epe = mean_epe(peer, pairs, params)
        for row, e in zip(out["epe"], epe):
            row[f"epe_{key}"] = round(e, 4)
        out[f"mean_epe_{key}"] = round(float(np.mean(epe)), 4)
    if args.scale == 1.0:
        for row in out["epe"]:
            row["epe_ours"] = OURS_EPE[row["sequence"]]
    if args.sweep:
        out["sweep"] = sweep(peer, pairs, deadline)
    frames = clip_frames(args.data, scale=args.scale)
    for i, (key, params) in enumerate(settings.items()):
        window = min(WINDOW_S[args.device], (deadline - time.perf_counter() - 3) / (len(settings) - i) - 1)
        if window < 0.5:
            notes.append(f"pairs/s at {key}: out of time")
            continue
        out["error"] = f"cut short while timing {key}"
        save()
        out.setdefault("timing", {})[key] = timed = rate(peer, frames, params, window, MAX_PAIRS[args.device])
        out[f"pairs_s_{key}"] = timed["pairs_s"]
        out["frame_size"] = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
    return notes


def main(argv: list[str] | None = None) -> int:
    """Measure the peer and write the result JSON (status pass, skipped or error, never a bare traceback)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=PREPARED / "data", help="the prepared data (default %(default)s)")
    ap.add_argument("--out", type=Path, required=True, help="the result JSON")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: scikit-image, to test the code")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds for everything (default %(default)s)")
    ap.add_argument("--scale", type=float, help="frame scale (default 1 on cuda, 0.25 on cpu)")
    ap.add_argument("--wheels", type=Path, help="the carried wheels (default DATA/../whl)")
    ap.add_argument("--sweep", action="store_true", help="also the mean EPE of every setting of SWEEP")
    args = ap.parse_args(argv)
    args.scale = args.scale or (1.0 if args.device == "cuda" else 0.25)
    args.wheels = args.wheels or args.data.parent / "whl"
    out: dict = {"status": "error", "peer": None, "device": args.device, "scale": args.scale}

    def save() -> None:
        """Rewrite the result (atomically: a kill leaves the previous, whole file)."""
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, out, fsync=False, indent=1, default=str, sort_keys=False)

    try:
        notes = measure(args, out, save)
        out.update(status="pass", note="; ".join([TIMING_NOTE.format(size=out.get("frame_size", "?")), *notes]))
    except PeerSkipped as e:
        out.update(status="skipped", note=str(e))
    except Exception as e:  # import error, out of memory, ...: one line in the JSON, the traceback in the log
        msg = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
        out.update(status="error", error=msg, note=msg)
        traceback.print_exc()
    if out["status"] != "error":
        out.pop("error", None)  # the "cut short during ..." marker of a run that finished
    save()
    print(f"{out['status']}: {out.get('peer') or args.device} {out.get('note', '')[:200]} -> {args.out}")
    return 1 if out["status"] == "error" else 0


def summarize(res: dict, ours_pairs_s: float | None) -> dict:
    """The figures printed beside ours: EPE per sequence and mean, pairs/s, and ours / cuCIM where both exist."""
    f = {"peer": res.get("peer"), "GPU": res.get("device"), "EPE (Middlebury, px)": res.get("epe") or None,
         "mean EPE ours": OURS_MEAN_EPE, "mean EPE cuCIM (defaults)": res.get("mean_epe_default"),
         "mean EPE cuCIM (matched EPE)": res.get("mean_epe_matched"), "matched parameters": res.get("matched_params"),
         "ours pairs/s": ours_pairs_s}
    for key, label in (("default", "defaults"), ("matched", "matched EPE")):
        theirs = res.get(f"pairs_s_{key}")
        f[f"cuCIM pairs/s ({label})"] = theirs
        if ours_pairs_s and theirs:
            f[f"ours / cuCIM ({label})"] = round(ours_pairs_s / theirs, 2)
    return {k: v for k, v in f.items() if v is not None}


def peer_result(res: dict, ours_pairs_s: float | None, t0: float) -> dict:
    """The check's result from the script's JSON: pass when it measured (a comparison: no target)."""
    status = res.get("status") if res.get("status") in ("pass", "skipped") else "error"
    note = res.get("note", "") if status != "error" else f"{res.get('error', 'failed')}; see logs/cucim.log"
    if status == "pass" and ours_pairs_s is None:
        note += "; no pairs/s of ours to compare with (the throughput check measured none)"
    return _result(NAME, t0, status, summarize(res, ours_pairs_s), note)


def check_cucim(ctx: Context) -> dict:
    """cuCIM's GPU TV-L1 beside ours: EPE on Middlebury and pairs/s at 320x240, in a subprocess (no target)."""
    t0 = time.perf_counter()
    whl = ctx.data.parent / "whl"
    wheels, reason = wheel_state(whl)
    if ctx.dry:
        size = sum(w.stat().st_size for w in wheels) / 2**20
        have = f"wheel prepared ({', '.join(w.name for w in wheels)}, {size:.1f} MiB)" if wheels else reason
        return _result(NAME, t0, "skipped", {}, f"dry run: {have}; needs CUDA")
    if ctx.cuda and not wheels and importlib.util.find_spec("cucim") is None:
        return _result(NAME, t0, "skipped", {}, reason)
    if not ctx.cuda and importlib.util.find_spec("skimage") is None:
        return _result(NAME, t0, "skipped", {}, "simulating cuCIM on the CPU needs scikit-image, not installed")
    budget = min(PEER_BUDGET, ctx.left() - KEEP_FOR_LATER[ctx.device])
    if budget < 20:
        return _result(NAME, t0, "skipped", {}, "out of time (the rest is kept for the checks after it)")
    out = ctx.out / "cucim.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--data", str(ctx.data), "--out", str(out), "--device",
           ctx.device, "--budget", f"{budget:.0f}", "--scale", str(ctx.scale), "--wheels", str(whl)]
    r = ctx.run("cucim", cmd, budget + 60)  # + interpreter start and a call that overruns the budget
    res = json.loads(out.read_text()) if out.is_file() else {"error": f"exit {r.returncode}, no result written"}
    return peer_result(res, getattr(ctx, "ours_pairs_s", None), t0)


if __name__ == "__main__":
    sys.exit(main())
