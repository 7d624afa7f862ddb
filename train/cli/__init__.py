"""python -m train (installed also as twostream): fit, test, fuse and tabulate two-stream ConvNets on flowprep shards.

    python -m train fit  --shards DIR --dataset ucf101 --split 1 --stream temporal [--arch cnn_m_2048] --out runs/t
    python -m train test --shards DIR --checkpoint runs/t/best.pt [--subset test|train]
    python -m train fuse --scores runs/s/scores.npz runs/t/scores.npz --method avg|svm
    torchrun --nproc-per-node 8 -m train fit ...
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys

try:  # torch loads here, 2-3 s: a Ctrl-C meanwhile was a traceback
    from flowprep.base import interrupts
    from flowprep.base.durable import is_disk_full
    from flowprep.cli import DefaultsHelpFormatter, flush_or_drop, os_error_line, parse_verb_args
    from flowprep.datasets.splits import SplitError
    from flowprep.errors import FlowprepError, ShardError
    from train.cli import evaluate, fit, fuse, table
except KeyboardInterrupt:
    from flowprep.base.interrupts import exit_status, handled
    handled()  # else CPython may end the process with SIGINT, not 130
    _main = getattr(sys.modules.get("__main__"), "__spec__", None)
    print(f"{'python -m train' if getattr(_main, 'name', '') == 'train.__main__' else 'twostream'}: interrupted",
          file=sys.stderr)
    raise SystemExit(exit_status()) from None

PROG = "twostream"  # the installed command's name; `python -m train` passes its own (messages say what was typed)

# verb -> (module with add_arguments and run, help)
VERBS = {
    "fit": (fit, "train the spatial or temporal ConvNet on a split of the shards"),
    "test": (evaluate, "score videos with the paper's 25 frames x 10 crops; writes scores.npz"),
    "fuse": (fuse, "fuse the streams' scores by averaging or a linear SVM"),
    "table": (table, "the paper's tables from a pipeline run: results.json, each row beside the paper's figure"),
}


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per verb."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (mod, help_) in VERBS.items():
        sp = sub.add_parser(verb, help=help_, description=help_, formatter_class=DefaultsHelpFormatter)
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def worker_error(e: BaseException) -> str | None:
    """One line for an error raised in a DataLoader worker, or None for any other error.

    The loader re-raises a worker's exception in the main process with the worker's whole traceback as its
    message (70 lines with the HDF5 library's frames for a damaged shard); the last line is what the worker said, e.g.
    "runs/shards/shard-00003.h5 (video v_x): flow_x[12] fails its CRC-32 check ...".
    """
    text = str(e)
    if "DataLoader worker" not in text or "Original Traceback" not in text:
        return None
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1].strip()
    kind, _, said = last.partition(": ")
    known = kind.rsplit(".", 1)[-1] in ("ShardError", "FlowprepError", "SplitError", "CheckpointError")
    return f"{said} (in a data loader worker)" if known else f"{last} (in a data loader worker)"


def disk_full_error(args: argparse.Namespace) -> str:
    """One line for a write that found no room (torch reports a checkpoint cut short as "unexpected pos", its
    cause being the disk): what was written before is whole (every file is replaced atomically)."""
    where = getattr(args, "out", None) or "the output folder"
    return (f"no room left on the disk of {where} ({os.strerror(errno.ENOSPC)}): free some space and run the same "
            "command again; the files written before are whole" + (" (fit resumes from its last checkpoint)"
                                                                   if args.verb == "fit" else ""))


def peer_gone(e: BaseException) -> str | None:
    """One line for a collective that failed because another process of the torchrun job stopped (its own
    message says why), or None: the survivor printed a 25-line gloo traceback that looked like the cause."""
    if int(os.environ.get("WORLD_SIZE", 1)) < 2 or not isinstance(e, RuntimeError):
        return None
    gone = ("Connection closed by peer", "Connection reset by peer", "remote process exited", "Broken pipe")
    if not any(g in str(e) for g in gone):  # not every DistBackendError: NCCL's own errors are the cause
        return None
    return ("another process of this torchrun job stopped (its own message says why); run the same command again"
            " (fit resumes from its last checkpoint)")


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Entry point of ``twostream`` / ``python -m train`` (``prog``: the command as typed, for its messages);
    returns the exit status. Under torchrun only rank 0 logs and says the errors every rank meets alike (settings,
    splits, a Ctrl-C); an error of one rank's own (its data, its peer gone) is said by that rank, named."""
    args = parse_verb_args(build_parser(prog), argv)
    rank = int(os.environ.get("RANK", 0))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if rank == 0 else logging.ERROR,
                        format="%(levelname)s %(message)s")

    def say(line: object, own: bool = False) -> None:
        if rank == 0 or own:
            print(f"{prog} {args.verb}: error: {f'rank {rank}: ' if rank else ''}{line}", file=sys.stderr)

    old = interrupts.install()  # a scheduler's SIGTERM stops a run as a Ctrl-C does
    try:
        status = int(args._run(args) or 0)
        interrupts.check()  # a Ctrl-C dropped where it landed (a DataLoader's weakref callback) is not exit 0
        return status
    except (FlowprepError, SplitError, ValueError, FileNotFoundError) as e:
        # settings, splits, checkpoints (ValueErrors) are met by every rank alike; a shard, a file or a worker's
        # error may be one rank's own: said by that rank
        say(worker_error(e) or e, own=not isinstance(e, ValueError) or isinstance(e, ShardError))
        return 2
    except (OSError, RuntimeError) as e:
        line = disk_full_error(args) if is_disk_full(e) else (worker_error(e) or peer_gone(e)) if isinstance(
            e, RuntimeError) else (
            os_error_line(e) if e.filename else  # permissions, a vanished mount, a file where a folder must be
            f"{type(e).__name__}: {e} (finished work is kept; run the same command again)")  # a network error
        if line is None:
            raise
        say(line, own=True)
        return 2
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # stderr's reader gone with the same Ctrl-C (`| tee log`)
            if rank == 0:
                print(f"{prog} {args.verb}: interrupted", file=sys.stderr)
        flush_or_drop()
        return interrupts.exit_status()
    finally:
        interrupts.restore(old)
        from train.distributed import cleanup
        cleanup()
