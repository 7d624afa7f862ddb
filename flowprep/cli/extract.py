"""``flowprep extract``: a dataset folder or a list of videos -> flow and RGB JPEGs in HDF5 shards."""
from __future__ import annotations

import argparse
import os
import sys

from flowprep.base.defaults import default_of
from flowprep.cli import folder
from flowprep.cli.solver_args import add_solver_arguments, solver_config_from_args
from flowprep.codecs.quantize import BITS, DEFAULT_BOUND, QuantConfig
from flowprep.codecs.video import Resize, parse_size
from flowprep.datasets import DATASETS
from flowprep.datasets.listing import list_videos, read_video_list, shown
from flowprep.extraction.config import VIDEOS_PER_SHARD, ExtractConfig
from flowprep.runners.watchdog import STALL_S


def _layouts() -> str:
    # --dataset's help, from the table: a dataset added there is described too
    by_path = ", ".join(n for n, d in DATASETS.items() if not d.by_stem)
    by_stem = ", ".join(n for n, d in DATASETS.items() if d.by_stem)
    return (f"layout of --root: {by_path}: <root>/<class>/<video>, keyed by that path; {by_stem}: every video "
            "anywhere below --root, keyed by its file stem (Kinetics': <youtube_id>_<start:06d>_<end:06d>)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep extract``."""
    src = p.add_argument_group("input")
    src.add_argument("--dataset", choices=list(DATASETS), default="folder", help=_layouts())
    src.add_argument("--root", help="the dataset folder; keys are video paths relative to it, without extension")
    src.add_argument("--split-dir", metavar="DIR",
                     help=f"--dataset {' or '.join(n for n, d in DATASETS.items() if d.annotated_keys)}: the folder of "
                          "its split files (Kinetics: train.csv, validate.csv or val.csv, test.csv): annotated clips "
                          "with no file are counted and listed in OUT/reports/missing.txt")
    src.add_argument("--list", dest="list_file", metavar="FILE",
                     help="a text file of video paths (relative to --root if given, else to the file); "
                          "UCF-101 train/test lists work as they are")
    p.add_argument("--out", required=True, type=folder, help="output folder for the shards and run reports")
    p.add_argument("--jobs", type=int, default=None,
                   help=f"worker processes, one video chunk each (default: all cores, here {os.cpu_count() or 1}; "
                        "with --scheduler: chunks in flight, default the cluster's threads; not used with --devices: "
                        "one per GPU)")
    where = p.add_argument_group("where the work runs").add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on a Dask cluster, e.g. tcp://host:8786 (--out must be shared storage seen at "
                            "the same path by every worker; see docs/SCALE.md)")
    where.add_argument("--devices", metavar="IDS",
                       help="one worker per GPU: 'all' or a list such as 0,1 (positions in CUDA_VISIBLE_DEVICES)")
    q = p.add_argument_group("quantization and JPEG")
    mode = q.add_mutually_exclusive_group()
    mode.add_argument("--bound", type=float, default=default_of(QuantConfig, "bound"),
                      help="clip flow to +-BOUND pixels and map it linearly to 0..255, 0 -> 128 (--bits 12: 0..4095, "
                           "0 -> 2048)")
    mode.add_argument("--adaptive", action="store_true",
                      help="store each frame's own range instead of a fixed bound: nothing is clipped")
    q.add_argument("--quality", type=int, default=default_of(ExtractConfig, "quality"),
                   help="JPEG quality of the flow images")
    q.add_argument("--bits", type=int, choices=BITS, default=default_of(QuantConfig, "bits"),
                   help="bits per flow code: 12 stores 12-bit JPEGs (half the rebuild error at about the same bytes "
                        "with --quality 50, but a 2x slower decode, and only flowprep or imagecodecs read them; "
                        "needs `pip install imagecodecs`); see benchmarks/README.md (bench_quality)")
    q.add_argument("--rgb-quality", type=int, default=default_of(ExtractConfig, "rgb_quality"),
                   help="JPEG quality of the RGB frames")
    q.add_argument("--no-rgb", action="store_true", help="do not store RGB frames")
    r = p.add_argument_group("frame size").add_mutually_exclusive_group()
    r.add_argument("--short-side", type=int,
                   help="resize so the shorter side has this many pixels, keeping the aspect, the longer one rounded "
                        "to the nearest pixel (320x240 -> 341x256) (default: keep the size; kinetics: 256, as its "
                        "frames come in mixed sizes; 0 keeps the size)")
    r.add_argument("--size", help="resize to WIDTHxHEIGHT, e.g. 340x256 (TSN's size), 342x256 (kinetics-i3d's flow "
                                  "of 320x240 videos)")
    _add_run_arguments(p)
    p.add_argument("--retry-failed", action="store_true",
                   help="try again the videos that failed or decoded only in part in earlier runs (a video whose "
                        "file changed since is extracted again without it)")
    p.add_argument("--strict-decode", action="store_true", default=default_of(ExtractConfig, "strict_decode"),
                   help="fail a video whose decoding stops early (default: keep the frames that decoded, flagged "
                        "as partial in the shard, `flowprep info` and the run report)")
    p.add_argument("--backward", action="store_true", default=default_of(ExtractConfig, "backward"),
                   help="also compute and store the backward flow of every pair (frame t+1 -> frame t): twice the "
                        "solver's work; `python -m train fit --stacking bidirectional` needs it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_solver_arguments(p)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """How the batch is cut up and watched."""
    p.add_argument("--videos-per-shard", type=int, default=VIDEOS_PER_SHARD,
                   help="videos per shard file; a kill loses at most this many videos per worker")
    p.add_argument("--stall-timeout", type=float, default=STALL_S, metavar="SECONDS",
                   help="stop a worker that makes no progress for this long (a decoder, GPU or file system that "
                        "hangs) and fail the video it was on; the batch goes on (0: never; --jobs 1, or a single "
                        "video, works in this process, unwatched)")


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    """The ExtractConfig the flags describe (ValueError on a bad combination)."""
    quant = QuantConfig(mode="adaptive" if args.adaptive else "fixed",
                        bound=DEFAULT_BOUND if args.adaptive else args.bound, bits=args.bits)
    short = args.short_side
    if short is None and args.size is None and getattr(args, "dataset", None) in DATASETS:
        short = DATASETS[args.dataset].short_side  # the dataset's own default (Kinetics' mixed sizes: 256)
    resize = Resize(short_side=short or None, size=parse_size(args.size) if args.size else None)
    return ExtractConfig(solver=solver_config_from_args(args), quant=quant, quality=args.quality,
                         rgb=not args.no_rgb, rgb_quality=args.rgb_quality, resize=resize,
                         strict_decode=getattr(args, "strict_decode", default_of(ExtractConfig, "strict_decode")),
                         backward=getattr(args, "backward", default_of(ExtractConfig, "backward")))


def videos_from_args(args: argparse.Namespace) -> tuple[list, tuple[str, ...]]:
    """(the videos --list or --root/--dataset name, the annotated Kinetics clips with no file)."""
    if args.list_file:
        videos = read_video_list(args.list_file, args.root)
    elif args.root:
        videos = list_videos(args.dataset, args.root)
    else:
        raise ValueError("give --root (a dataset folder) or --list (a file of video paths)")
    missing: tuple[str, ...] = ()
    if args.split_dir:
        annotated = DATASETS[args.dataset].annotated_keys
        if annotated is None:
            names = " or ".join(n for n, d in DATASETS.items() if d.annotated_keys)
            raise ValueError(f"--split-dir is for --dataset {names} (its CSVs say which clips should exist)")
        have = {v.key for v in videos}
        missing = tuple(sorted(annotated(args.split_dir) - have))
    return videos, missing


def runner_from_args(args: argparse.Namespace):
    """The runner --jobs, --devices or --scheduler name (flowprep.runners.make_runner)."""
    from flowprep.runners import make_runner

    devices = None
    if getattr(args, "devices", None):
        from flowprep.runners.gpus import parse_devices, visible_devices
        devices = parse_devices(args.devices, visible_devices())
    return make_runner(jobs=args.jobs, devices=devices, scheduler=getattr(args, "scheduler", None))


def run(args: argparse.Namespace) -> int:
    """Extract; exit 0 when the output is clean, 1 when a video in it failed or decoded only in part, or an
    annotated clip has no file (the report says which)."""
    from flowprep.extraction.batch import extract_dataset

    config = config_from_args(args)  # settings first: a bad flag is refused before a large dataset is listed
    videos, missing = videos_from_args(args)
    runner = runner_from_args(args)
    # Ctrl-C, or SIGTERM (Slurm's warning before a kill), ends in one line of flowprep.cli: how far it got
    report = extract_dataset(videos, args.out, config, runner=runner, videos_per_shard=args.videos_per_shard,
                             retry_failed=args.retry_failed, show_progress=not args.no_progress, missing=missing,
                             stall_s=args.stall_timeout or None)
    _print_report(report, args.out)
    return 0 if report.clean else 1


def _print_report(report, out: str) -> None:
    print(f"{report.videos_processed} videos extracted in {report.seconds:.1f} s "
          f"({report.videos_ok} ok, of them {report.videos_partial} partial; {report.videos_failed} failed; "
          f"{report.videos_already_done} already done); {report.pairs} flow pairs, "
          f"{report.pairs_per_second:.2f} pairs/s" + (" (each pair's flow both ways: --backward)"
                                                       if report.settings.get("backward") else ""))
    for f in report.failures:
        print(f"  FAILED {shown(f['key'])}: {shown(f['reason'])} ({shown(f['source'])})", file=sys.stderr)
    for v in report.partial:
        print(f"  PARTIAL {shown(v['key'])}: {shown(v['reason'])}; its {v['frames']} decoded frames are kept",
              file=sys.stderr)
    if report.annotated_missing:
        print(f"  MISSING {report.annotated_missing} annotated clip(s) have no file: listed in "
              f"{os.path.join(out, report.missing_list)}", file=sys.stderr)
    if report.report_file:
        print(f"report: {os.path.join(out, report.report_file)}")
    if report.failed_in_output:
        print(f"{len(report.failed_in_output)} video(s) in {out} failed; `flowprep info {out}` lists them "
              "(--retry-failed tries them again)", file=sys.stderr)
    if report.partial_in_output:
        print(f"{len(report.partial_in_output)} video(s) in {out} decoded only in part (their decoded frames are "
              f"kept); `flowprep info {out}` lists them (a file fetched again whole is extracted again by the same "
              "command)", file=sys.stderr)
