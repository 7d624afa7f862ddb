"""``flowprep import``: flow extracted by other tools -> shards (the JPEG bytes are kept as they are)."""
from __future__ import annotations

import argparse
import sys

from flowprep.base.defaults import default_of
from flowprep.cli import folder
from flowprep.codecs.quantize import QuantConfig
from flowprep.interchange import DEFAULT_ZERO_CODE, IMPORT_FORMATS, IMPORT_VIDEOS_PER_SHARD


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep import``."""
    p.add_argument("--format", choices=IMPORT_FORMATS, default="denseflow",
                   help="denseflow / tsn: <video>/flow_x_%%05d.jpg, flow_y_%%05d.jpg, img_%%05d.jpg (from 0 or 1, "
                        "found from the files); tsn-zip: <video>/flow_x.zip, flow_y.zip, img.zip; feichtenhofer: "
                        "u/<video>/frame%%06d.jpg, v/..., jpegs_256/...; mmaction2: rawframes/ and its annotation "
                        "lists (keys and labels from the lists)")
    p.add_argument("in_dir", help="the folder of that layout")
    p.add_argument("shards_dir", type=folder, help="where to write the shards")
    p.add_argument("--bound", type=float, default=default_of(QuantConfig, "bound"),
                   help="the bound the flow was quantized with (ignored where flowprep_quant.json is present)")
    p.add_argument("--zero-code", type=float, default=DEFAULT_ZERO_CODE,
                   help="the code of zero flow: 127.5 for dense_flow, denseflow and gpu_flow (they round "
                        "255 * (v + B) / 2B), 127 for mmaction2's Python extractor (it truncates), 128 for flowprep")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--videos-per-shard", type=int, default=IMPORT_VIDEOS_PER_SHARD,
                   help="videos per shard file written")
    p.add_argument("--retry-failed", action="store_true", help="try again the videos that failed in earlier runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Import; exit 1 if any video of the output folder failed (this run's or an earlier one's)."""
    from flowprep.datasets.listing import shown
    from flowprep.interchange.importing import import_folders
    from flowprep.runners import make_runner

    report, splits = import_folders(args.in_dir, args.shards_dir, args.format, bound=args.bound,
                                    zero=args.zero_code, runner=make_runner(jobs=args.jobs),
                                    videos_per_shard=args.videos_per_shard, retry_failed=args.retry_failed,
                                    show_progress=not args.no_progress)
    print(f"imported {report.videos_ok} videos into {args.shards_dir} ({report.videos_failed} failed; "
          f"{report.videos_already_done} already there)")
    for f in report.failures:
        print(f"  FAILED {shown(f['key'])}: {shown(f['reason'])}")
    if report.failed_in_output:  # exit 1 says so; a rerun that failed nothing new named nothing
        print(f"{len(report.failed_in_output)} video(s) in {args.shards_dir} failed; `flowprep info "
              f"{args.shards_dir}` lists them (--retry-failed tries them again)", file=sys.stderr)
    if splits:
        print(f"split files for the trainer in {args.shards_dir}/splits: {', '.join(splits)} "
              f"(python -m train fit --shards {args.shards_dir} --split-dir {args.shards_dir}/splits "
              f"--dataset {'kinetics' if 'train.csv' in splits else 'folder'} ...)")
    return 1 if report.failed_in_output else 0
