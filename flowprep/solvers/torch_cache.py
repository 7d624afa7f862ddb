"""Where compiled torch kernels are kept between processes; importable without importing torch."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def compile_cache_dir() -> str:
    """flowprep's on-disk cache of compiled kernels: ``$XDG_CACHE_HOME/flowprep/torchinductor``."""
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(xdg) / "flowprep" / "torchinductor")


def use_compile_cache() -> str:
    """Point torch's compile cache at ``compile_cache_dir()`` for this process and its workers, unless the user
    chose one (TORCHINDUCTOR_CACHE_DIR); returns the directory in use. Process-wide: the CLI calls it."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is not None and "torch" in sys.modules:
        # torch writes its default (/tmp/torchinductor_<user>, wiped with /tmp) into the env once it compiles:
        # that one is replaced, a directory the user chose is kept
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
        if os.path.abspath(current) == os.path.abspath(default_cache_dir()):
            current = None
    if current is None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = current = compile_cache_dir()
    return current
