"""``python -m train`` runs the ``twostream`` command."""
import sys

from train.cli import main

sys.exit(main())
