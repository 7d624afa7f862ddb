"""``flowprep verify OUT [--repair]``: find every truncated or corrupt shard and video; re-extract only those."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from flowprep.base.defaults import default_of
from flowprep.solvers import BACKENDS, SolverConfig
from flowprep.store.isolated import STALL_S


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep verify``."""
    p.add_argument("out", help="an output folder of `flowprep extract`")
    p.add_argument("--repair", action="store_true",
                   help="remove what is damaged and extract (`flowprep import` output: import) those videos again")
    p.add_argument("--jobs", type=int, default=None, help="worker processes for --repair (default: all cores)")
    p.add_argument("--device", default=default_of(SolverConfig, "device"),
                   help="device for --repair's flow solver: auto, cpu, cuda[:N]")
    p.add_argument("--backend", default=default_of(SolverConfig, "backend"), choices=("auto", *BACKENDS),
                   help="flow backend for --repair")
    p.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    p.add_argument("--stall-timeout", type=stall_seconds, default=STALL_S, metavar="SECONDS",
                   help="call a shard damaged when reading it makes no progress for this long (damaged bytes can "
                        "send HDF5 into an endless loop); 0: wait for ever")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def stall_seconds(text: str) -> float:
    """--stall-timeout: 0 (wait for ever) or a finite number of seconds above 0 (-1 called every shard damaged)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value == 0 or 0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 (wait for ever) or a number of seconds above 0")
    return value


def _print_findings(out: str, f) -> None:
    whole = f.damaged_whole  # their videos were not checked
    distinct = len({k for name, keys in f.keys_of.items() if name not in whole for k in keys})
    print(f"{out}: {f.shards} shards, {f.videos} videos checked" + (f" ({distinct} distinct: a video extracted again "
          "is stored again, the newest read)" if 0 < distinct < f.videos else ""))
    for problem in f.folder:
        print(f"  DAMAGED {problem}")
    for d in f.damage:
        what = f"{d.shard} (video {d.key})" if d.key else d.shard
        print(f"  DAMAGED {what}: {d.reason}")
    damaged = {d.key for d in f.damage}
    for k in f.missing:
        if k not in damaged:
            print(f"  MISSING {k}: published earlier, held by no readable shard now")


def run(args: argparse.Namespace) -> int:
    """Print what is damaged (and repair it with --repair); exit 0 when the folder ends up clean."""
    from flowprep.store.staging import STAGING_DIR, leftover_bytes
    from flowprep.store.workspace import RunLock, is_output_folder, writer

    if not args.repair or not is_output_folder(Path(args.out)):  # no lock file left in a folder not ours
        if who := writer(args.out):
            print(f"{args.out} is being written now ({who}): what is checked is the part done so far")
        elif left := leftover_bytes(args.out):  # a killed run's unfinished chunks: disk the user may look for
            print(f"note: {os.path.join(args.out, STAGING_DIR)} holds {left / 1e6:.1f} MB a stopped run left (chunks "
                  "it had not finished); the next `flowprep extract` into this folder keeps the finished ones and "
                  "deletes the rest", file=sys.stderr)
        return _verify(args, None)
    # the lock first: a repair acting on findings made before another run changed the folder moved a healthy new
    # shard aside, or extracted videos again from sources replaced since
    with RunLock(Path(args.out), "verify --repair", advice="then run verify --repair again") as lock:
        return _verify(args, lock)


def _verify(args: argparse.Namespace, lock: object) -> int:
    # verify (and repair, under ``lock``: the folder's RunLock, held) one folder; the exit status
    from flowprep.extraction.repair import is_imported, repair
    from flowprep.interchange.importing import reimport
    from flowprep.runners import make_runner
    from flowprep.store.verify import verify_folder

    f = verify_folder(args.out, stall_s=args.stall_timeout, show_progress=not args.no_progress)
    if args.json and not args.repair:
        print(json.dumps({"shards": f.shards, "videos": f.videos, "missing": f.missing, "folder": f.folder,
                          "damage": [d.__dict__ for d in f.damage]}, indent=2))
    else:
        _print_findings(args.out, f)
    if f.clean:
        print("OK: every shard reads and every checksum matches")
        return 0
    if not args.repair:
        print(f"{len(f.missing)} video(s) to {'import' if is_imported(f.identity) else 'extract'} again"
              f"{', and the folder files above to rewrite' if f.folder else ''}: run `flowprep verify {args.out} "
              "--repair`")
        return 1
    report = repair(args.out, f, runner=make_runner(jobs=args.jobs), backend=args.backend, device=args.device,
                    reimport=reimport, lock=lock)
    after = verify_folder(args.out, stall_s=args.stall_timeout, show_progress=not args.no_progress)
    again = "imported" if is_imported(f.identity if f.identity is not None else after.identity) else "extracted"
    print(f"repaired: {report.videos_processed} video(s) {again} again "
          f"({report.videos_failed} failed); folder is {'clean' if after.clean else 'STILL DAMAGED'}")
    return 0 if after.clean and report.videos_failed == 0 else 1
