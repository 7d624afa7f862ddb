"""``python -m train`` runs the ``twostream`` command."""
import sys

from flowprep.base import interrupts

interrupts.install()  # before torch loads (2-3 s): a SIGTERM then ended the run silently, exit 143
try:
    from train.cli import main
except KeyboardInterrupt:  # a Ctrl-C or SIGTERM while the modules load
    print("twostream: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

sys.exit(main())
