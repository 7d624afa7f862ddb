"""The GPU check: every claim about CUDA, measured in one run that fits a 15-minute lease (issue 14).

    benchmarks/gpu_check.sh --prepare            # here, once: copy the data it needs into .gpu_check/ (ignored)
    benchmarks/gpu_check.sh OUTDIR               # on the GPU machine (the checkout, no install, no network)
    benchmarks/gpu_check.sh OUTDIR --dry-run     # anywhere: what needs no CUDA, and what it would skip

The GPU machine gets the working tree but not ../shared, and its Python has torch (CUDA), triton,
torchvision, numpy, h5py, joblib, tqdm, scikit-learn, pillow and opencv-python-headless only. ``--prepare``
therefore copies the Middlebury pairs and the real UCF-101 clip from ../shared/data into .gpu_check/data, and
pytest (pure Python, with its dependencies) from this venv into .gpu_check/site; carry ``.gpu_check`` with the
working tree (the device tool's ``carry``). Compiled kernels are cached in .gpu_cache/ (ignored, not carried),
so a second run on the same machine compiles nothing.

Checks, in this order, each with its figures (OUTDIR/gpu_check.json and OUTDIR/gpu_check.md, rewritten after
each one, so a run cut short still leaves what it measured): the CUDA tests (``-m gpu``); flow on CUDA against
the CPU (torch backend, same parameters) on the Middlebury pairs and the UCF clip (mean |difference| <= 0.01
px); pairs/s at 320x240 at batch 1, 8, 32, 64 and the backend's own, eager and compiled, with peak memory
against the model and host syncs per batch (target >= 1,000 pairs/s); ``flowprep extract`` end to end on
>= 2,000 pairs against the bare solver on the same pairs (target >= 0.8x); one temporal epoch with AMP on the
demo shards, and the same under ``torchrun --nproc-per-node 1`` (NCCL).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # flowprep and the check's modules, run from anywhere
from gpu_check_flow import CLIP, SEQUENCES  # noqa: E402  (what is copied is what the checks read)

from flowprep.base.durable import write_json, write_text  # noqa: E402

# gpu_check_pipeline.CHECKS by name, known without importing torch
CHECK_NAMES = ("check_tests", "check_equivalence", "check_kernels", "check_throughput", "check_profile", "check_cucim",
               "check_jpeg", "check_extract", "check_training")

SHARED = Path(os.environ.get("FLOWPREP_SHARED_DATA") or REPO.parent / "shared" / "data")
PREPARED = REPO / ".gpu_check"
PURE_PYTHON = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py.py", "pytest_timeout.py")
DEFAULT_BUDGET = 450  # seconds for all checks: 7.5 of the 8 minutes, the rest for start-up and the summary


def prepare(dest: Path = PREPARED, shared: Path = SHARED) -> dict:
    """Copy what the check needs and the GPU machine lacks into ``dest`` (data/ and site/); returns a manifest.

    Raises:
        FileNotFoundError: a reference file is missing from ``shared``.
    """
    data, site = dest / "data", dest / "site"
    files = [Path("middlebury") / s / f for s in SEQUENCES for f in ("frame10.png", "frame11.png", "flow10.flo")]
    files.append(CLIP)
    for rel in files:
        src = shared / rel
        if not src.is_file():
            raise FileNotFoundError(f"{src}: reference file missing (see ../shared/data/README.md)")
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, data / rel)
    site.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in PURE_PYTHON:
        src = _site_packages() / name
        if src.is_dir():
            shutil.copytree(src, site / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            copied.append(name)
        elif src.is_file():
            shutil.copyfile(src, site / name)
            copied.append(name)
    manifest = {"data": [str(f) for f in files], "site": copied,
                "bytes": sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _site_packages() -> Path:
    import pytest
    return Path(pytest.__file__).resolve().parents[1]


class Summary:
    """The check's results, written to OUTDIR as JSON and Markdown after every check."""

    def __init__(self, out: Path, dry_run: bool, budget: float):
        self.out, self.t0 = out, time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        self.data = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "dry_run": dry_run,
                     "budget_s": budget, "host": platform.node(), "python": platform.python_version(),
                     "cpus": os.cpu_count(), "checks": []}

    def device(self, info: dict) -> None:
        """Record the GPU (name, memory, torch and CUDA versions)."""
        self.data.update(info)
        self.write()

    def add(self, result: dict) -> None:
        """Record one check's result and rewrite the files."""
        self.data["checks"].append(result)
        self.write()

    def write(self) -> None:
        """gpu_check.json and gpu_check.md."""
        self.data["seconds"] = round(time.perf_counter() - self.t0, 1)
        # atomically: a lease that ends mid-write leaves the previous, whole files
        write_json(self.out / "gpu_check.json", self.data, fsync=False, indent=1, default=str, sort_keys=False)
        write_text(self.out / "gpu_check.md", markdown(self.data), fsync=False)


def markdown(d: dict) -> str:
    """The summary as Markdown: the machine, then one section per check with its figures."""
    lines = [f"# GPU check, {d.get('gpu') or 'no GPU'} ({d['started']}, {d['seconds']} s)", "",
             f"torch {d.get('torch', '?')}, CUDA {d.get('cuda', '?')}, {d['cpus']} CPUs, host {d['host']}"
             + (", **dry run**" if d["dry_run"] else ""), ""]
    for c in d["checks"]:
        lines += [f"## {c['name']}: {c['status'].upper()} ({c.get('seconds', 0):.1f} s)", ""]
        if c.get("note"):
            lines += [c["note"], ""]
        for k, v in c.get("figures", {}).items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                cols = list(v[0])
                lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                lines += ["| " + " | ".join(str(r.get(col, "")) for col in cols) + " |" for r in v]
                lines.append("")
            else:
                lines.append(f"- {k}: {v}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the checks (or --prepare); exit 0 when every check that ran passed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", type=Path, help="folder for gpu_check.json, gpu_check.md and the logs")
    ap.add_argument("--prepare", action="store_true", help="copy the data and pytest into .gpu_check/ and stop")
    ap.add_argument("--dry-run", action="store_true", help="no CUDA needed: run what does not need it, say the rest")
    ap.add_argument("--data", type=Path, default=PREPARED / "data", help="the prepared data (default %(default)s)")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds for all checks together")
    ap.add_argument("--simulate-on-cpu", action="store_true",
                    help="run the checks' own code on the CPU, small and few (to test the check, not to measure)")
    ap.add_argument("--only", default="", help="comma-separated checks to run, e.g. throughput,profile (default: all: "
                    + ", ".join(c.removeprefix("check_") for c in CHECK_NAMES) + ")")
    args = ap.parse_args(argv)
    if args.prepare:
        from gpu_check_peer import prepare_peer
        m, peer = prepare(), prepare_peer(PREPARED)
        print(f"prepared {PREPARED}: {len(m['data'])} data files, {', '.join(m['site'])}; {m['bytes'] / 1e6:.1f} MB; "
              + (f"cuCIM skipped: {peer['skipped']}" if peer.get("skipped") else
                 f"cuCIM wheel {peer['bytes'] / 1e6:.1f} MB"))
        return 0
    if args.out is None:
        ap.error("give OUTDIR (or --prepare)")
    if not (args.data / CLIP).is_file():
        ap.error(f"{args.data} holds no prepared data: run `benchmarks/gpu_check.sh --prepare` first (where "
                 "../shared/data is) and carry .gpu_check with the working tree")
    from gpu_check_pipeline import run_all

    summary = Summary(args.out, args.dry_run, args.budget)
    only = tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = set(only) - {c.removeprefix("check_") for c in CHECK_NAMES}
    if unknown:
        ap.error(f"unknown check(s) {', '.join(sorted(unknown))}; choose from the list in --help")
    ok = run_all(summary, args.data, args.out, args.budget, args.dry_run, "cpu" if args.simulate_on_cpu else "cuda",
                 only)
    print(f"summary: {args.out / 'gpu_check.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
