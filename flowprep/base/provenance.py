"""What ran: versions, machine and command line, recorded beside a run's results (extraction's report, training's
metrics) so that a result can be made again."""
from __future__ import annotations

import os
import platform
import sys


def environment() -> dict:
    """The versions, machine and command line of this run, for the report: what a result needs to be made again
    (the solver's settings are the report's ``settings``; the shards record each video's own)."""
    from flowprep import __version__

    mods = {"numpy": "numpy", "opencv": "cv2", "h5py": "h5py", "torch": "torch", "torchvision": "torchvision",
            "simplejpeg": "simplejpeg"}  # those this process loaded
    found = {name: getattr(sys.modules[m], "__version__", None) for name, m in mods.items() if m in sys.modules}
    return {"flowprep": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "command": sys.orig_argv, **found}  # as typed: python -m flowprep extract ...
