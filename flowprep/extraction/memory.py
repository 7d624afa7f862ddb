"""How much host memory extracting a video takes, and whether this machine (or its container) has it: a video
whose frames no memory here holds fails before it is decoded, named, with the fix."""
from __future__ import annotations

import os

from flowprep.errors import FlowprepError
from flowprep.solvers import BYTES_PER_PIXEL


def check_fits(width: int, height: int, bytes_per_pixel: int) -> None:
    """Refuse, before decoding, frames whose flow no memory here holds: a 16000x16000 video took 17 GB in decoded
    segments before its first pair (the OOM killer, the driver's own process with --jobs 1)."""
    need = width * height * bytes_per_pixel
    if need > (have := physical_memory()):
        raise FlowprepError(f"its frames are {width}x{height}: their flow needs about {_size(need)}, more than this "
                            f"machine's {_size(have)}; extract it smaller (--short-side 256)")


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def host_bytes_per_pixel(segment: int, queued: int, solver) -> int:
    """Host memory per pixel of a frame: the segments queued for the solver, the one being cut and its stacked
    copy (gray, a byte each), and a CPU solver's pair (BYTES_PER_PIXEL; a GPU's is on the GPU)."""
    on_gpu = str(solver.describe().get("device", "cpu")).startswith("cuda")
    return (queued + 2) * (segment + 1) + (0 if on_gpu else BYTES_PER_PIXEL)


def physical_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's (cgroup) limit where lower."""
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):  # v2, v1
        try:
            text = open(limit).read().strip()
        except OSError:
            continue
        if text.isdigit():
            have = min(have, int(text))
    return have
