"""The ``flowprep`` command: one verb per module of this package, each with ``add_arguments(parser)`` and
``run(args) -> int``. Library modules never parse arguments: each verb calls the same functions as the Python
API, and this package is the only one that imports argparse (with the trainer's ``train.cli``)."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys

from flowprep import __version__
from flowprep.base import interrupts
from flowprep.errors import FlowprepError
from flowprep.solvers.torch_cache import use_compile_cache

# verb -> (module, one-line help). Modules load only when their verb runs, so `flowprep --help` is fast.
VERBS: dict[str, tuple[str, str]] = {
    "extract": ("flowprep.cli.extract", "videos -> TV-L1 flow + RGB as JPEG in HDF5 shards (resumable, parallel)"),
    "info": ("flowprep.cli.info", "what is in an output folder: videos, frames, bytes, settings, failures"),
    "export": ("flowprep.cli.export", "shards -> denseflow, TSN or mmaction2 folders of JPEGs, with their lists"),
    "import": ("flowprep.cli.import_", "denseflow, TSN (also zipped), mmaction2 or Feichtenhofer folders -> shards"),
    "quality": ("flowprep.cli.quality", "what JPEG quantization costs in EPE and saves in bytes"),
    "evaluate-gt": ("flowprep.cli.evaluate_gt",
                    "a solver's EPE and angular error against Middlebury .flo ground truth"),
    "visualize": ("flowprep.cli.visualize", "colour-wheel PNGs of flow from a shard or a video"),
    "verify": ("flowprep.cli.verify", "find truncated or corrupt shards and videos; --repair re-extracts only those"),
    "make-demo": ("flowprep.cli.make_demo", "write the bundled demo dataset (UCF-101 layout, colour x motion)"),
}


DESCRIPTION = ("Optical flow for two-stream action recognition: videos -> TV-L1 flow and RGB frames as JPEG in HDF5 "
               "shards, checked, exported and imported; `python -m train` trains on them. `flowprep VERB --help` "
               "says more.")


def folder(text: str) -> str:
    """argparse type of a folder a verb writes: an empty path ('' from an unset shell variable) meant the current
    folder, whose tmp/ then became the run's staging folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path would mean the current folder; give the folder's path "
                                         "(is a shell variable unset?)")
    return text


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help unless it already names its default or has none worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        nothing = any(action.default is x for x in (None, False, argparse.SUPPRESS))  # by identity: 0 == False
        if "default" in h or nothing or not action.option_strings or action.nargs == 0:  # a switch says it
            return h
        return h + " (default: %(default)s)"


def build_parser(verbs: dict[str, tuple[str, str]] = VERBS) -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per available verb."""
    p = argparse.ArgumentParser(prog="flowprep", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"flowprep {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb, (module, help_) in verbs.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:  # this verb is not built yet in this checkout
                continue
            raise
        sp = sub.add_parser(verb, help=help_, description=help_,
                            formatter_class=DefaultsHelpFormatter)
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def parse_verb_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, but an unknown option is refused by its verb's parser, with that verb's usage: the
    top-level parser's said `usage: flowprep VERB ...`, as if the verb had not been understood."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        verbs.choices[args.verb].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _interrupted(e: BaseException | None) -> bool:
    """Whether a KeyboardInterrupt is in ``e``'s chain (an error raised while a Ctrl-C was being handled)."""
    while e is not None:
        if isinstance(e, KeyboardInterrupt):
            return True
        e = e.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowprep`` console script; returns the exit status."""
    # FFmpeg's own messages about broken streams would reach the user raw, and OpenCV's warning that FFmpeg could
    # not open a file; each video's reason says what is wrong. Set before the verbs' modules import cv2.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    args = parse_verb_args(build_parser(), argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    use_compile_cache()  # the command owns its process: compiled kernels persist across runs (and its workers)
    old = interrupts.install()  # Slurm's SIGTERM stops every verb as cleanly as Ctrl-C (repair died with no word)
    try:
        return _run_verb(args)
    finally:
        interrupts.restore(old)


def os_error_line(e: OSError) -> str:
    """An OSError as one line that says what to do (a FileNotFoundError of ours has its own words)."""
    if not e.filename:
        return str(e) if isinstance(e, FileNotFoundError) else f"{e.strerror or e} (check the paths given, and that " \
            "the disk has room; finished work is kept, run the same command again)"
    if isinstance(e, (FileExistsError, NotADirectoryError)):  # `--out file.txt`: "File exists" read as the opposite
        return f"{e.filename}: a file is where a folder must be: give a folder's path (new, or an earlier run's)"
    name = e.filename2 or e.filename  # a rename's: its destination, not our temporary name
    if isinstance(e, IsADirectoryError):
        return f"{name}: a folder is where a file must be written: move it away, or give another path"
    return (f"{name}: {e.strerror or e} (check that the path exists, is writable and has room; finished work "
            "is kept, run the same command again)")


def flush_or_drop() -> None:
    """Flush stdout now, or, where its reader is gone with the same signal (Slurm's SIGTERM to every process of a
    job), drop what it holds: CPython's own flush at exit failed and turned a stop's status into 120."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        drop_stdout()


def drop_stdout() -> None:
    """Point stdout's file descriptor at /dev/null: what Python still holds for a reader that is gone goes there."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


def _run_verb(args: argparse.Namespace) -> int:
    """Run the verb; every error a user can fix is one line on stderr and an exit status."""
    try:
        status = int(args._run(args) or 0)
        interrupts.check()  # a Ctrl-C dropped where it landed (a __del__, a weakref callback) is not exit 0
        sys.stdout.flush()  # a reader that has gone shows here, where it is handled, not at exit
        return status
    except (FlowprepError, ValueError) as e:
        print(f"flowprep {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError as e:  # `flowprep info --all | head`: the reader has what it wanted; end quietly
        drop_stdout()  # no second error when Python flushes
        # but a Ctrl-C that also ended the reader (`extract ... | tee log`): the command stopped, and exit 0 made
        # run_pipeline.sh record an interrupted extraction as finished
        return interrupts.exit_status() if _interrupted(e) else 0 if args.verb == "info" else 1
    except OSError as e:  # permissions, a full disk, a vanished mount: say which file and what to check
        print(f"flowprep {args.verb}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # a batch's says what it kept
        with contextlib.suppress(OSError):  # stderr's reader gone with the same Ctrl-C (`| tee log`)
            print(f"flowprep {args.verb}: {str(e) or 'interrupted'}", file=sys.stderr)
        flush_or_drop()
        return interrupts.exit_status()  # 130 Ctrl-C, 143 SIGTERM, ...: a requeue script tells a stop by it


if __name__ == "__main__":
    sys.exit(main())
