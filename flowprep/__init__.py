"""flowprep: videos -> TV-L1 optical flow -> [0, 255] -> JPEG -> HDF5 shards, with RGB frames beside the flow.

Index convention (the one place it is defined; docs/FORMAT.md repeats it):
a video of N decoded frames 0..N-1 gives N RGB frames ``rgb[t]`` and N-1 forward flows
``flow[t]`` = motion from frame t to frame t+1, for t = 0..N-2.  ``flow[t][y, x] = (dx, dy)`` in pixels of
the stored frame size, such that ``frame[t](y, x) ~ frame[t+1](y + dy, x + dx)``; dx > 0 is motion to the
right, dy > 0 is motion down.

Public API (the CLI is a thin layer over these):
    extract_video      one video -> an in-memory ``VideoRecord`` (encoded JPEGs + quantization parameters)
    extract_dataset    a whole dataset -> shards in an output folder, resumable, on a runner of your choice
                       (LocalRunner: local processes, GpuRunner: one per GPU, DaskRunner: a cluster)
    open_shards        read an output folder: float flow in pixels, RGB frames, metadata
"""
from __future__ import annotations

__version__ = "0.3.0"

from flowprep.base import moved as _moved  # noqa: E402
from flowprep.codecs.quantize import QuantConfig, dequantize_flow, quantize_flow  # noqa: E402
from flowprep.errors import FlowprepError, SettingsMismatchError, ShardError, VideoDecodeError  # noqa: E402
from flowprep.store.format import FORMAT_VERSION  # noqa: E402

_moved.install()  # 0.2's module paths (flowprep.quantize, ...) forward to their new homes until 0.4

# name -> module; heavy submodules (storage, runners) load on first use so that `import flowprep` stays fast
_LAZY = {
    "extract_video": "flowprep.extraction.extract", "ExtractConfig": "flowprep.extraction.config",
    "extract_dataset": "flowprep.extraction.batch", "open_shards": "flowprep.store.reader",
    "ShardSet": "flowprep.store.reader", "ShardWriter": "flowprep.store.writer", "make_runner": "flowprep.runners",
    "LocalRunner": "flowprep.runners.local", "GpuRunner": "flowprep.runners.gpus",
    "DaskRunner": "flowprep.runners.dask_cluster", "list_videos": "flowprep.datasets.listing",
    "VideoTask": "flowprep.datasets.listing",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flowprep' has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (tab completion listed none of them)
    return sorted({*globals(), *_LAZY})


__all__ = [
    "__version__", "FORMAT_VERSION", "FlowprepError", "VideoDecodeError", "ShardError", "SettingsMismatchError",
    "QuantConfig", "quantize_flow", "dequantize_flow", *_LAZY,
]
