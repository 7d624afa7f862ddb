"""The ``flowprep`` command: one verb per module, each with ``add_arguments(parser)`` and ``run(args) -> int``."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from flowprep import __version__
from flowprep.errors import FlowprepError

# verb -> (module, one-line help). Modules load only when their verb runs, so `flowprep --help` is fast.
VERBS: dict[str, tuple[str, str]] = {
    "extract": ("flowprep.extract_cli", "videos -> TV-L1 flow + RGB as JPEG in HDF5 shards (resumable, parallel)"),
    "info": ("flowprep.info", "what is in an output folder: videos, frames, bytes, settings, failures"),
    "export": ("flowprep.denseflow", "shards -> denseflow/TSN folders of flow_x/flow_y/img JPEGs"),
    "import": ("flowprep.denseflow_import", "denseflow/TSN folders -> shards"),
    "quality": ("flowprep.quality_cli", "what JPEG quantization costs in EPE and saves in bytes"),
    "evaluate-gt": ("flowprep.evaluate_gt", "a solver's EPE and angular error against Middlebury .flo ground truth"),
    "visualize": ("flowprep.visualize_cli", "colour-wheel PNGs of flow from a shard or a video"),
    "verify": ("flowprep.verify", "find truncated or corrupt shards and videos; --repair re-extracts only those"),
    "make-demo": ("flowprep.demo_data", "write the bundled motion-only demo dataset (UCF-101 layout)"),
}


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help unless it already names its default or has none worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        if ("default" in h or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings
                or action.nargs == 0):  # a switch: its name says what it does
            return h
        return h + " (default: %(default)s)"


def build_parser(verbs: dict[str, tuple[str, str]] = VERBS) -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per available verb."""
    p = argparse.ArgumentParser(prog="flowprep", description=__doc__.splitlines()[0] if __doc__ else None)
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowprep`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args._run(args) or 0)
    except (FlowprepError, ValueError, FileNotFoundError) as e:
        print(f"flowprep {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flowprep {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
