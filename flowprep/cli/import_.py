"""``flowprep import``: denseflow/TSN folders of JPEGs -> shards (the JPEG bytes are kept as they are)."""
from __future__ import annotations

import argparse

from flowprep.interchange import FOLDER_FORMATS as FORMATS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep import``."""
    p.add_argument("--format", choices=list(FORMATS), default="denseflow",
                   help="denseflow (from 0) or tsn (from 1); the first index is found from the files either way")
    p.add_argument("in_dir", help="a folder of video folders holding flow_x_*.jpg, flow_y_*.jpg, img_*.jpg")
    p.add_argument("shards_dir", help="where to write the shards")
    p.add_argument("--bound", type=float, default=20.0,
                   help="the bound the flow was quantized with (ignored where flowprep_quant.json is present)")
    p.add_argument("--videos-per-shard", type=int, default=64, help="videos per shard file written")


def run(args: argparse.Namespace) -> int:
    """Import; exit 1 if any folder could not be read."""
    from flowprep.interchange.denseflow import import_denseflow

    r = import_denseflow(args.in_dir, args.shards_dir, bound=args.bound, videos_per_shard=args.videos_per_shard)
    print(f"imported {r['videos_ok']} videos into {args.shards_dir} ({r['videos_failed']} failed)")
    return 1 if r["videos_failed"] else 0
