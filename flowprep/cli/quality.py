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

from flowprep.cli.solver_args import add_solver_arguments, solver_config_from_args
from flowprep.codecs.video import Resize, parse_size
from flowprep.quality.compression import EPE_TARGET, SAMPLE_PAIRS, settings_grid

log = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:  # argparse prints an ArgumentTypeError's words ("invalid parse_size value" for a ValueError's)
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep quality``."""
    p.add_argument("source", nargs="?", metavar="VIDEO_OR_DATASET",
                   help="a video, a dataset folder (<class>/<video> or videos directly in it), or a text list "
                        "of video paths")
    p.add_argument("--shards", metavar="OUT_DIR", help="an output folder of `flowprep extract`: recompute raw flow "
                   "from its source videos (with the algorithm, parameters, resizing and backend stored in the "
                   "shards; --algo and the TV-L1 flags are ignored, --backend other than auto is used) and also "
                   "measure what the shards hold")
    p.add_argument("--sample", type=int, default=SAMPLE_PAIRS, help="frame pairs to sample (spread over up to this "
                   "many videos, evenly within each)")
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
    g.add_argument("--size", type=_size, default=None, help="resize frames to WIDTHxHEIGHT")
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


def run(args: argparse.Namespace) -> int:
    """Sample raw flow, measure every setting, print and optionally write the report."""
    from flowprep.quality.report import format_table
    from flowprep.quality.sampling import measure_shards, measure_videos

    if (args.source is None) == (args.shards is None):
        raise ValueError("give either VIDEO_OR_DATASET or --shards OUT_DIR (exactly one)")
    settings = settings_grid(_parse_list(args.bound, float, "--bound"),
                             _parse_list(args.quality, int, "--quality"), args.adaptive,
                             _parse_list(args.bits, int, "--bits"))
    common = dict(sample=args.sample, seed=args.seed, epe_target=args.epe_target)
    if args.shards is not None:
        report, fields = measure_shards(args.shards, settings, args.backend, args.device, args.batch_size, **common)
    else:
        report, fields = measure_videos(args.source, settings, solver_config_from_args(args),
                                        Resize(short_side=args.short_side, size=args.size), **common)
    if args.report:
        from flowprep.quality.report import write_report
        paths = write_report(report, args.report, fields)
        log.info("wrote %d files to %s", len(paths), args.report)
    print(json.dumps(report.to_dict()) if args.json else format_table(report))
    if args.shards is not None and not args.json:
        from flowprep.store.settings import holds_backward
        if holds_backward(args.shards):
            print("the shards also hold backward flow (--backward), quantized and JPEG-encoded with the same "
                  "settings: measured here on the forward flow, which it mirrors")
    return 0
