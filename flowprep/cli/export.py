"""``flowprep export``: shards -> folders of JPEGs that other tools read (denseflow, TSN, mmaction2), with the
annotation lists their loaders need and the settings to give them."""
from __future__ import annotations

import argparse
import sys

from flowprep.cli import folder
from flowprep.datasets import exportable
from flowprep.datasets.splits import SPLITS
from flowprep.interchange import EXPORT_FORMATS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep export``."""
    p.add_argument("--format", choices=EXPORT_FORMATS, default="denseflow",
                   help="denseflow numbers files from 0, tsn (dense_flow) from 1, both with TSN-style lists "
                        "(<folder> <count> <label>: RGB N frames, flow N - 1); mmaction2 writes its rawframes tree "
                        "and annotation lists (RGB and flow) for --dataset")
    p.add_argument("shards_dir", help="an output folder of `flowprep extract`")
    p.add_argument("out_dir", type=folder, help="where to write <key>/flow_x_%%05d.jpg, flow_y_%%05d.jpg, "
                                                "img_%%05d.jpg and the lists (mmaction2: rawframes/ and the lists)")
    p.add_argument("--no-rgb", action="store_true", help="write flow images only (and no RGB lists)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs of batch jobs)")
    g = p.add_argument_group("lists")
    g.add_argument("--dataset", choices=exportable(), default=None,
                   help="which dataset's split files, list names and labels to use (needed with --format "
                        "mmaction2; denseflow/tsn without it: one list of every video, labelled by class folder)")
    g.add_argument("--split", type=int, choices=SPLITS, default=None,
                   help="one split's lists (default: every split whose files are there; Kinetics has one)")
    g.add_argument("--split-dir", default=None, help="the official split files (default: in or beside the shards)")


def run(args: argparse.Namespace) -> int:
    """Export; exit 0, or 1 when a video could not be read (named; the rest is exported)."""
    if args.dataset is None and (args.split is not None or args.split_dir is not None):
        given = "--split" if args.split is not None else "--split-dir"
        raise ValueError(f"{given} picks a dataset's split files: give --dataset too (without it the list holds every "
                         "video, labelled by class folder)")
    if args.format == "mmaction2":
        return _mmaction2(args)
    from flowprep.interchange.tsn_lists import export_folders

    done = export_folders(args.shards_dir, args.out_dir, args.format, args.dataset, args.split, args.split_dir,
                          rgb=not args.no_rgb, show_progress=not args.no_progress)
    print(f"exported {done.videos} videos to {args.out_dir} ({args.format} layout, numbered from {done.start})")
    if done.no_lists:
        print(f"no lists: {done.no_lists}")
    else:
        print("TSN-style lists (<folder> <count> <label>; RGB: N frames, flow: N - 1 flows):")
    for name in done.rgb_lists + done.flow_lists:
        print(f"  {name}")
    _not_listed(done.not_listed, "TSN's")
    _left_out(args.shards_dir, args.format)
    if done.not_listed and not done.listed:  # empty lists, exit 0, and commands to train on them
        print(f"flowprep export: error: every list is empty: the folders of all {len(done.not_listed)} videos of the "
              "lists hold whitespace; "
              "rename the class folders without it (e.g. air_drumming), or use --format mmaction2 --dataset kinetics "
              "for Kinetics", file=sys.stderr)
        return 1
    for line in done.usage:
        print(line)
    return _failed(done.failed, args.shards_dir)


def _failed(failed: dict[str, str], shards_dir: str) -> int:
    # videos whose stored bytes did not read, or whose folders are one on the output's file system: named (their
    # folders are not in the lists), each with its own fix; exit 1
    from flowprep.interchange.denseflow import SHARED_FOLDER

    shared = {k: why for k, why in failed.items() if SHARED_FOLDER in why}
    unread = {k: why for k, why in failed.items() if k not in shared}
    for what, group, fix in (
            ("whose shard data cannot be read", unread, f"repair the shards with `flowprep verify --repair "
                                                        f"{shards_dir}`, then export again"),
            ("whose folders are one on this file system (it ignores case or Unicode form)", shared,
             "export to a file system that tells them apart (ext4, xfs)")):
        if group:
            print(f"not exported: {len(group)} video(s) {what} (not in the lists):")
            for key, why in sorted(group.items()):
                print(f"  {key}: {why}")
            print(fix)
    return 1 if failed else 0


def _left_out(shards_dir: str, layout: str) -> None:
    # what the shards hold that the layout cannot: said, not dropped silently
    from flowprep.store.settings import holds_backward

    if holds_backward(shards_dir):
        print(f"left out: the backward flow (extracted with --backward): the {layout} layout has no place for it; "
              "the forward flow is exported")


def _not_listed(keys: list[str], whose: str) -> None:
    if keys:
        print(f"not in the lists: {len(keys)} videos whose folder holds whitespace, which {whose} annotation "
              f"lines cannot (e.g. {keys[0]})")


def _mmaction2(args: argparse.Namespace) -> int:
    from flowprep.interchange.mmaction2 import export_mmaction2

    if args.dataset is None:
        known = exportable()
        raise ValueError(f"--format mmaction2 needs --dataset {', '.join(known[:-1])} or {known[-1]} (its list names "
                         "and labels)")
    done = export_mmaction2(args.shards_dir, args.out_dir, args.dataset, args.split, args.split_dir,
                            rgb=not args.no_rgb, show_progress=not args.no_progress)
    print(f"exported {done.videos} videos to {args.out_dir} (mmaction2 rawframes, numbered from 1)")
    print("annotation lists (*_rawframes.txt: RGB, N frames; *_flow.txt: flow, N - 1 flows):")
    for name in done.lists:
        print(f"  {name}")
    _not_listed(done.not_listed, "mmaction2's")
    _left_out(args.shards_dir, "mmaction2")
    print("mmaction2 config (train and val datasets):")
    for line in done.config:
        print(f"  {line}")
    for line in done.flip:
        print(line)
    return _failed(done.failed, args.shards_dir)
