"""``flowprep export``: shards -> folders of flow_x/flow_y/img JPEGs (denseflow from 0, TSN from 1)."""
from __future__ import annotations

import argparse

from flowprep.interchange import FOLDER_FORMATS as FORMATS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep export``."""
    p.add_argument("--format", choices=list(FORMATS), default="denseflow",
                   help="denseflow numbers files from 0, tsn (dense_flow) from 1")
    p.add_argument("shards_dir", help="an output folder of `flowprep extract`")
    p.add_argument("out_dir", help="where to write <key>/flow_x_%%05d.jpg, flow_y_%%05d.jpg, img_%%05d.jpg")
    p.add_argument("--no-rgb", action="store_true", help="write flow images only")


def run(args: argparse.Namespace) -> int:
    """Export; exit 0."""
    from flowprep.interchange.denseflow import export_denseflow

    n = export_denseflow(args.shards_dir, args.out_dir, start=FORMATS[args.format], rgb=not args.no_rgb)
    print(f"exported {n} videos to {args.out_dir} ({args.format} layout, numbered from {FORMATS[args.format]})")
    return 0
