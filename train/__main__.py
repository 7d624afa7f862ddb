"""``python -m train`` runs the ``twostream`` command."""
import sys

from flowprep.base import interrupts

interrupts.install()  # before torch loads (2-3 s): a SIGTERM then ended the run silently, exit 143
from train.cli import main  # noqa: E402

sys.exit(main())
