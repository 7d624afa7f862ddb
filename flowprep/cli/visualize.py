"""``flowprep visualize SHARD_DIR_OR_VIDEO --video NAME --out DIR``: colour-wheel PNGs of flow."""
from __future__ import annotations

import argparse
from pathlib import Path

from flowprep.cli.solver_args import add_solver_arguments, solver_config_from_args
from flowprep.errors import FlowprepError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep visualize``."""
    p.add_argument("source", metavar="SHARD_DIR_OR_VIDEO", help="an output folder of `flowprep extract`, or a video")
    p.add_argument("--video", metavar="NAME", help="the video's key in the shards (e.g. ApplyEyeMakeup/v_x_g01_c01; "
                   "the name without extension works too); for a video file, the prefix of the PNGs")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    p.add_argument("--max-flows", type=int, default=16, help="draw at most this many flows")
    p.add_argument("--every", type=int, default=1, help="draw every k-th flow")
    p.add_argument("--max-flow", type=float, default=None,
                   help="motion (px) shown at full colour (default: the largest motion drawn)")
    add_solver_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Draw the flows and print where they went."""
    from flowprep.quality.colorwheel import max_motion
    from flowprep.quality.visualize import from_shards, from_video, write_pngs
    from flowprep.solvers import make_solver

    src = Path(args.source)
    if src.is_dir():
        key, flows, frames, idx = from_shards(args.source, args.video, args.every, args.max_flows)
    elif src.is_file():
        flows, frames, idx = from_video(args.source, make_solver(solver_config_from_args(args)),
                                        args.every, args.max_flows)
        key = args.video or src.stem
    else:
        raise FlowprepError(f"{args.source}: no such output folder or video")
    paths = write_pngs(flows, frames, idx, args.out, key, args.max_flow)
    scale = args.max_flow if args.max_flow is not None else max_motion(flows)
    print(f"wrote {len(paths)} PNGs of {key} to {args.out} (full colour at {scale:.2f} px; key: colorwheel.png)")
    return 0
