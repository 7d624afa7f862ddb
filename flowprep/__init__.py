"""flowprep: videos -> TV-L1 optical flow -> [0, 255] -> JPEG -> HDF5 shards, with RGB frames beside the flow.

Index convention (the one place it is defined; docs/FORMAT.md repeats it):
a video of N decoded frames 0..N-1 gives N RGB frames ``rgb[t]`` and N-1 forward flows
``flow[t]`` = motion from frame t to frame t+1, for t = 0..N-2.  ``flow[t][y, x] = (dx, dy)`` in pixels of
the stored frame size, such that ``frame[t](y, x) ~ frame[t+1](y + dy, x + dx)``; dx > 0 is motion to the
right, dy > 0 is motion down.

Public API (the CLI is a thin layer over these):
    extract_video      one video -> an in-memory ``VideoRecord`` (encoded JPEGs + quantization parameters)
    extract_dataset    a whole dataset -> shards in an output folder, resumable and parallel
    open_shards        read an output folder: float flow in pixels, RGB frames, metadata
"""
from __future__ import annotations

__version__ = "0.1.0"

FORMAT_VERSION = 1

from flowprep.errors import FlowprepError, VideoDecodeError, ShardError, SettingsMismatchError  # noqa: E402
from flowprep.quantize import QuantConfig, quantize_flow, dequantize_flow  # noqa: E402


def __getattr__(name: str):
    # Heavy submodules (h5py, joblib) load on first use so that `import flowprep` stays fast.
    if name in ("extract_video", "ExtractConfig"):
        from flowprep import extract
        return getattr(extract, name)
    if name == "extract_dataset":
        from flowprep.batch import extract_dataset
        return extract_dataset
    if name in ("open_shards", "ShardSet", "ShardWriter"):
        from flowprep import shard
        return getattr(shard, name)
    raise AttributeError(f"module 'flowprep' has no attribute {name!r}")


__all__ = [
    "__version__", "FORMAT_VERSION", "FlowprepError", "VideoDecodeError", "ShardError", "SettingsMismatchError",
    "QuantConfig", "quantize_flow", "dequantize_flow",
    "extract_video", "extract_dataset", "ExtractConfig", "open_shards", "ShardSet", "ShardWriter",
]
