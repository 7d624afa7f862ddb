"""``flowprep quality``: what the JPEG shards cost in accuracy and save in bytes, on the user's own data.

    flowprep quality VIDEO_OR_DATASET [--sample 50] [--quality 75,85,90,95,100] [--bound 10,15,20,30]
                     [--adaptive] [--bits 8,12] [--report out/quality] [--json]
    flowprep quality --shards OUT_DIR --sample 100

Raw flow is computed for sampled frame pairs (a progress bar counts them), every setting is applied to it,
and the report says, per setting, the rebuild error, the clipped share, the bytes and the UCF-101 projection.
With ``--shards`` the raw flow is recomputed from the source videos the shards name, with the algorithm,
parameters and resizing the shards were written with, and the flow the shards hold is compared with it too.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from flowprep.cli_common import add_solver_arguments, solver_config_from_args
from flowprep.datasets import VIDEO_EXTENSIONS, VideoTask, list_videos, read_video_list
from flowprep.errors import FlowprepError, VideoDecodeError
from flowprep.quality import (EPE_TARGET, QualityReport, choose_videos, compute_raw_flows, evaluate,
                              evaluate_stored, settings_grid, shard_resize, shard_setting, spread_indices)
from flowprep.solvers import Solver, SolverConfig, make_solver
from flowprep.video import Resize, parse_size, probe

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep quality``."""
    p.add_argument("source", nargs="?", metavar="VIDEO_OR_DATASET",
                   help="a video, a dataset folder (<class>/<video> or videos directly in it), or a text list "
                        "of video paths")
    p.add_argument("--shards", metavar="OUT_DIR", help="an output folder of `flowprep extract`: recompute raw flow "
                   "from its source videos (with the algorithm, parameters and resizing stored in the shards; "
                   "--algo and the TV-L1 flags are ignored) and also measure what the shards hold")
    p.add_argument("--sample", type=int, default=50, help="frame pairs to sample (spread over up to this many "
                   "videos, evenly within each)")
    p.add_argument("--quality", default="75,85,90,95,100", help="JPEG qualities to try, comma-separated")
    p.add_argument("--bound", default="10,15,20,30", help="fixed bounds (px) to try, comma-separated")
    p.add_argument("--adaptive", action="store_true", help="also try adaptive mode (each frame's own range)")
    p.add_argument("--bits", default="8", help="bits per flow code to try, comma-separated: 8, 12 or 8,12 (12-bit "
                   "JPEG needs imagecodecs; try qualities 30-70 there)")
    p.add_argument("--epe-target", type=float, default=EPE_TARGET,
                   help="mean rebuild EPE (px) the recommended setting must stay under")
    p.add_argument("--seed", type=int, default=0, help="seed for picking videos of a dataset")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--short-side", type=int, default=None, help="resize frames so the short side is this")
    g.add_argument("--size", type=parse_size, default=None, help="resize frames to WIDTHxHEIGHT")
    p.add_argument("--report", metavar="DIR", help="write quality.json, quality.csv, summary.md and PNGs here")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    add_solver_arguments(p)


def _parse_list(text: str, kind: type, flag: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated numbers, e.g. {flag} 90,95; got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} is empty")
    return values


def find_videos(source: str) -> list[VideoTask]:
    """The videos a VIDEO_OR_DATASET argument names: one file, a text list, or a folder."""
    p = Path(source)
    if p.is_dir():
        try:
            return list_videos("folder", p)
        except FlowprepError:
            flat = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            if flat:
                return [VideoTask(f.stem, str(f)) for f in flat]
            raise FlowprepError(f"{source}: no videos in the folder or in its <class>/ sub-folders") from None
    if not p.exists():
        raise FlowprepError(f"{source}: no such video, folder or list; give a video, a dataset folder, "
                            "a text list of videos, or --shards OUT_DIR")
    if p.suffix.lower() == ".txt":
        return read_video_list(p)
    return [VideoTask(p.stem, str(p))]


def _flow_count(path: str) -> int:
    return max(probe(path).frame_count - 1, 0)


def gather(plan: list[tuple[str, str, list[int]]], solver: Solver, resize: Resize, bar: tqdm) -> tuple[list, list]:
    """Raw flow for a plan of (name, video path, flow indices); a video that fails is logged and skipped."""
    fields, samples = [], []
    for name, path, indices in plan:
        try:
            for t, f in compute_raw_flows(path, indices, solver, resize, progress=bar.update):
                fields.append(f)
                samples.append((name, t))
        except VideoDecodeError as e:
            if len(plan) == 1:
                raise
            log.warning("skipped %s: %s", name, e.reason)
    return fields, samples


def run(args: argparse.Namespace) -> int:
    """Sample raw flow, measure every setting, print and optionally write the report."""
    if (args.source is None) == (args.shards is None):
        raise ValueError("give either VIDEO_OR_DATASET or --shards OUT_DIR (exactly one)")
    settings = settings_grid(_parse_list(args.bound, float, "--bound"),
                             _parse_list(args.quality, int, "--quality"), args.adaptive,
                             _parse_list(args.bits, int, "--bits"))
    shards = None
    if args.shards is not None:
        from flowprep.shard import open_shards  # h5py only when needed
        shards = open_shards(args.shards)
        keys = shards.keys()
        if not keys:
            raise FlowprepError(f"{args.shards}: no successfully extracted video to sample")
        flow_id = shards.settings.get("flow", {})
        config = SolverConfig(algo=flow_id.get("algo", "tvl1"), backend=args.backend, device=args.device,
                              params=flow_id.get("params", {}), batch_size=args.batch_size)
        resize = shard_resize(shards.settings)
        plan = []
        for key, n in choose_videos(keys, args.sample, args.seed):
            meta = shards.meta(key)
            if not Path(meta.source).is_file():
                raise FlowprepError(f"{meta.source}: the source video of {key} is not there; `quality --shards` "
                                    "recomputes raw flow from the original videos, so they must be reachable")
            plan.append((key, meta.source, spread_indices(meta.flows, n)))
        source = str(args.shards)
    else:
        config = solver_config_from_args(args)
        resize = Resize(short_side=args.short_side, size=args.size)
        tasks = find_videos(args.source)
        by_name = {t.key: t.path for t in tasks}
        plan = [(k, by_name[k], spread_indices(_flow_count(by_name[k]), n))
                for k, n in choose_videos(list(by_name), args.sample, args.seed)]
        source = str(args.source)
    solver = make_solver(config)
    with tqdm(total=sum(len(p[2]) for p in plan), unit="pair", desc="raw flow", file=sys.stderr) as bar:
        fields, samples = gather(plan, solver, resize, bar)
    if not fields:
        raise FlowprepError(f"{source}: no frame pair could be decoded")
    report = evaluate(fields, settings, source=source, solver=solver.describe(), samples=samples,
                      epe_target=args.epe_target)
    if shards is not None:
        report.stored = evaluate_stored(shards, samples, fields, shard_setting(shards.settings))
    if args.report:
        from flowprep.quality_report import write_report
        paths = write_report(report, args.report, fields)
        log.info("wrote %d files to %s", len(paths), args.report)
    print(json.dumps(report.to_dict()) if args.json else format_table(report))
    return 0


def format_table(report: QualityReport) -> str:
    """The human-readable summary printed by default."""
    head = f"{'setting':<22}{'EPE mean':>10}{'EPE p95':>10}{'clipped%':>10}{'bytes/pair':>12}{'ratio':>8}{'UCF GB':>8}"
    rows = [head]
    front = {r.name for r in report.pareto}
    for r in report.results + ([report.stored] if report.stored else []):
        mark = " *" if r.name in front else ""
        rows.append(f"{r.name:<22}{r.epe_mean:>10.4f}{r.epe_p95:>10.4f}{100 * r.clipped_fraction:>10.3f}"
                    f"{r.bytes_per_pair:>12.0f}{r.ratio:>8.1f}{r.projected_gb:>8.1f}{mark}")
    rec = report.recommended
    rows += ["(* = Pareto front)",
             f"recommended: {rec.name} (mean EPE {rec.epe_mean:.4f} px, {rec.bytes_per_pair:.0f} bytes/pair, "
             f"{rec.ratio:.1f}x; UCF-101: 2.48 M pairs at 320x240 -> {rec.projected_gb:.1f} GB of JPEG "
             f"against 1.52 TB of float32)"]
    if rec.epe_mean > report.epe_target:
        rows.append(f"note: no setting reached the target mean EPE <= {report.epe_target:g} px")
    return "\n".join(rows)
