"""``python -m flowprep`` is the ``flowprep`` command."""
import sys

from flowprep.cli import main

sys.exit(main())
