"""``python -m train`` runs the ``twostream`` command, its messages naming ``python -m train``."""
import sys

from flowprep.base import interrupts

# While the modules load (torch: 2-3 s) a Ctrl-C or SIGTERM is only remembered: raised inside torch's C++ init it
# aborted the process (pybind11's "terminate called"), and before this a SIGTERM ended it silently (exit 143).
interrupts.install(defer=True)
PROG = "python -m train"
from train.cli import main  # noqa: E402

if interrupts.pending():
    print(f"{PROG}: interrupted", file=sys.stderr)
    raise SystemExit(interrupts.exit_status())
sys.exit(main(prog=PROG))
