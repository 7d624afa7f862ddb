"""Colour-wheel PNGs of flow (``flowprep visualize``).

From an output folder of ``flowprep extract`` the stored (rebuilt) flow of one video is drawn; from a video
file its flow is computed with the solver flags. Each PNG is the RGB frame t beside the Middlebury colour
coding of flow t (frame t -> t+1); all PNGs of a run share one colour scale (the largest motion drawn, or
``--max-flow``), so colours compare across frames. ``colorwheel.png`` is the key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from flowprep.codecs.images import file_part, write_png
from flowprep.codecs.video import iter_frames, to_gray
from flowprep.errors import FlowprepError
from flowprep.quality.colorwheel import flow_to_rgb, max_motion, wheel_legend
from flowprep.solvers import Solver


def side_by_side(flow: np.ndarray, frame_rgb: np.ndarray | None, max_flow: float) -> np.ndarray:
    """(H, W', 3) uint8 RGB: the frame (when given) beside the colour-coded (2, H, W) flow."""
    coded = flow_to_rgb(flow, max_flow)
    if frame_rgb is None:
        return coded
    if frame_rgb.shape[:2] != coded.shape[:2]:
        frame_rgb = cv2.resize(frame_rgb, (coded.shape[1], coded.shape[0]), interpolation=cv2.INTER_AREA)
    return np.hstack([frame_rgb, coded])


def write_pngs(flows: np.ndarray, frames: np.ndarray | None, indices: Sequence[int], out: str | Path,
               prefix: str, max_flow: float | None = None) -> list[Path]:
    """Write one PNG per flow plus ``colorwheel.png``; return the paths.

    Args:
        flows: (T, 2, H, W) flow in pixels.
        frames: (T, H, W, 3) uint8 RGB frames t of each flow, or None to draw the flow alone.
        indices: the flow index t of each entry (used in the file names).
        out: the folder.
        prefix: file-name prefix (made safe for file systems).
        max_flow: colour scale; None: the largest motion over all flows.
    """
    if max_flow is not None and not (np.isfinite(max_flow) and max_flow > 0):  # NaN: an IndexError in the wheel
        raise ValueError(f"the colour scale (--max-flow) must be a finite speed > 0 pixels, got {max_flow}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scale = max(max_motion(flows), 1e-6) if max_flow is None else float(max_flow)
    safe = file_part(prefix) or "video"
    paths = []
    for i, t in enumerate(indices):
        img = side_by_side(flows[i], None if frames is None else frames[i], scale)
        path = out / f"{safe}_flow_{int(t):05d}.png"
        write_png(path, img)
        paths.append(path)
    write_png(out / "colorwheel.png", wheel_legend())
    return paths


def _indices(n_flows: int, every: int, most: int) -> list[int]:
    if every < 1 or most < 1:
        raise ValueError("--every and --max-flows must be at least 1")
    return list(range(0, n_flows, every))[:most]


def _by_file_name(keys: list[str], name: str) -> str | None:
    """The one key whose last part is ``name`` (no extension, any case): 'v_x' finds 'Class/v_x'."""
    stem = Path(name.replace("\\", "/")).stem.lower()
    hits = [k for k in keys if k.rsplit("/", 1)[-1].lower() == stem]
    if len(hits) > 1:
        raise FlowprepError(f"--video {name} matches {len(hits)} videos ({', '.join(hits[:5])}); give the full key")
    return hits[0] if hits else None


def from_shards(root: str, name: str | None, every: int, most: int) -> tuple[str, np.ndarray, np.ndarray | None, list]:
    """(key, flows, RGB frames or None, indices) of one video in an output folder."""
    from flowprep.store.reader import open_shards  # the storage package only when needed
    shards = open_shards(root)
    if not name:
        raise ValueError(f"{root} is an output folder: say which video with --video NAME "
                         f"(e.g. {', '.join(shards.keys()[:3]) or 'none extracted yet'})")
    key = shards.resolve(name) or _by_file_name(shards.keys(None), name)
    if key is None:
        raise FlowprepError(f"{root}: no video {name!r}; `flowprep info {root}` lists them "
                            f"(e.g. {', '.join(shards.keys()[:3])})")
    meta = shards.meta(key)
    if meta.status != "ok":
        raise FlowprepError(f"{root}: video {key} failed at extraction ({meta.reason}); it has no flow to draw")
    idx = _indices(meta.flows, every, most)
    frames = shards.rgb(key, idx) if shards.has_rgb else None
    return key, shards.flow(key, idx), frames, idx


def from_video(path: str, solver: Solver, every: int, most: int) -> tuple[np.ndarray, np.ndarray, list]:
    """(flows, RGB frames, indices) computed from a video, decoding only as far as needed."""
    _indices(1, every, most)  # validates the counts
    flows, frames, idx = [], [], []
    prev = None
    for t, frame in enumerate(iter_frames(path)):
        if prev is not None and (t - 1) % every == 0:  # flow t-1 goes from the previous frame to this one
            flows.append(solver.compute(to_gray(prev)[None], to_gray(frame)[None])[0])
            frames.append(cv2.cvtColor(prev, cv2.COLOR_BGR2RGB))
            idx.append(t - 1)
            if len(idx) == most:
                break
        prev = frame
    if not idx:
        raise FlowprepError(f"{path}: no frame pair to draw")
    return np.stack(flows), np.stack(frames), idx
