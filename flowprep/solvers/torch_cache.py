"""Where compiled torch kernels are kept between processes; importable without importing torch."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


CACHE_ENV = "FLOWPREP_CACHE_DIR"  # where the kernels are kept, when set
_SAID: set[Path] = set()  # the unwritable caches this process has warned of
_MADE: dict[Path, Path] = {}  # a shared fallback another user holds -> this process's own folder instead


def cache_root() -> Path:
    """flowprep's on-disk cache of compiled kernels (C and torch): ``$FLOWPREP_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/flowprep`` (``~/.cache/flowprep``), else, where that cannot be written (a read-only home:
    Kubernetes' readOnlyRootFilesystem, many HPC nodes), a folder of this user's in the temporary folder, said once.
    An unwritable home had failed every video of a run as its own fault, and kept them failed."""
    if chosen := os.environ.get(CACHE_ENV):
        return Path(chosen)
    wanted = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = Path(wanted) / "flowprep"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK | os.X_OK):
            return root
    except OSError:
        pass
    fallback = _own_folder(Path(tempfile.gettempdir()) / f"flowprep-cache-{os.getuid()}")
    if root not in _SAID:  # once a process (a library call sets no environment variable for its workers)
        _SAID.add(root)
        log.warning("%s cannot be written: compiled kernels are kept in %s (set %s or XDG_CACHE_HOME to a "
                    "writable folder to keep them)", root, fallback, CACHE_ENV)
    return fallback


def _own_folder(path: Path) -> Path:
    """``path``, made only this user's (0700); if another user made it first, a new folder of this user's: a
    library another user planted in a shared temporary folder would be loaded as the C kernel."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        if st.st_uid == os.getuid() and not st.st_mode & 0o077 and path.is_dir() and not path.is_symlink():
            return path
    except OSError:
        pass
    if path not in _MADE:  # one a process, not one a call (each call would lose the kernels compiled before)
        _MADE[path] = Path(tempfile.mkdtemp(prefix="flowprep-cache-"))
    return _MADE[path]


def compile_cache_dir() -> str:
    """The cache of compiled torch kernels: ``cache_root()/torchinductor``."""
    return str(cache_root() / "torchinductor")


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
