"""The bundled demo dataset: six action classes that differ only in motion, written as real videos.

Each video shows a textured disc on a textured background. The class is the disc's motion: moving up, moving
down, moving sideways, rotating, zooming in, zooming out. Left and right are one class, and so are clockwise and
counter-clockwise (each video draws its direction), because the paper's protocol flips frames horizontally (in
training, and in 5 of the 10 test crops) and a flip turns left into right and clockwise into counter-clockwise:
every class here is closed under that flip, as human actions are.

Nothing but the motion depends on the class, by construction:

* Appearance (both textures, their colours, the disc's mid-video position, size and angle, the speeds and the
  directions) is drawn from a random stream seeded by (seed, group, clip) only, so the six videos of one group
  and clip share it: only their motion differs.
* Each attribute the class does not move (x, y, scale) sits at a random frame ``tau`` of the trajectory it
  would follow if it moved, so a single frame's position and size have the same distribution in every class.
* MoveUp and MoveDown, and ZoomIn and ZoomOut, are exact time reversals of each other (``v_MoveUp_g01_c01``
  played backwards is ``v_MoveDown_g01_c01``), so no single frame can tell them apart.

A spatial (one-frame) network is therefore at chance on this data, while a temporal (flow) network is not: the
paper's central finding in miniature. The layout is UCF-101's: ``<root>/<Class>/v_<Class>_gXX_cYY.avi`` with
``classInd.txt``, ``trainlist01.txt`` and ``testlist01.txt`` at the root; test groups come first (g01..) as
in UCF-101's split 1, and train and test groups are disjoint. ``demo.json`` is written last and marks a
finished dataset, so a second run with the same settings reuses it.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from flowprep.durable import replacing, write_text
from flowprep.errors import FlowprepError

# class name -> (attribute it moves, direction); attributes: x, y (pixels, y down), angle (radians, clockwise on
# screen), scale (log). Direction 0: the video's own random sign (the flip-closed classes).
MOTIONS: dict[str, tuple[str, int]] = {
    "MoveUp": ("y", -1), "MoveDown": ("y", +1), "MoveSideways": ("x", 0),
    "Rotate": ("angle", 0), "ZoomIn": ("scale", +1), "ZoomOut": ("scale", -1),
}
MARKER = "demo.json"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo dataset looks like; the same config and seed always give the same files."""

    seed: int = 0
    train_groups: int = 6
    test_groups: int = 3
    clips: int = 2  # clips per group and class
    frames: int = 17  # odd, so that a middle frame exists
    width: int = 64
    height: int = 64
    fps: float = 25.0

    def __post_init__(self) -> None:
        if self.train_groups < 1 or self.test_groups < 1 or self.clips < 1:
            raise ValueError("need at least one train group, one test group and one clip per group")
        if self.train_groups + self.test_groups > 99 or self.clips > 99:
            raise ValueError("UCF-101 names hold two digits: at most 99 groups and 99 clips")
        if self.frames < 3:
            raise ValueError(f"need at least 3 frames per video, got {self.frames}")
        if self.width < 32 or self.height < 32:
            raise ValueError(f"frames must be at least 32x32, got {self.width}x{self.height}")

    @property
    def groups(self) -> int:
        """All groups: test groups 1..test_groups, then the train groups."""
        return self.train_groups + self.test_groups


def video_name(cls: str, group: int, clip: int) -> str:
    """UCF-101 style relative path of one video: ``Class/v_Class_gXX_cYY.avi``."""
    return f"{cls}/v_{cls}_g{group:02d}_c{clip:02d}.avi"


def _texture(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """(h, w, 3) float RGB in [0, 255]: blurred noise at two scales between two random colours."""
    fine = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), sigma)
    coarse = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 4 * sigma)
    n = fine + 0.5 * coarse
    n = (n - n.min()) / max(float(n.max() - n.min()), 1e-6)  # (h, w) in [0, 1]
    # two colours at least 80 grey levels apart, so that every texture has contrast for the flow to lock onto
    lo, hi = rng.uniform(10, 95), rng.uniform(175, 245)
    c0, c1 = np.clip(lo + rng.uniform(-40, 40, 3), 0, 255), np.clip(hi + rng.uniform(-40, 40, 3), 0, 255)
    if rng.random() < 0.5:
        c0, c1 = c1, c0
    return c0 + n[..., None] * (c1 - c0)


@dataclass(frozen=True)
class _Look:
    """Everything about one (group, clip) except the motion: shared by every class."""

    background: np.ndarray  # (H, W, 3) float RGB
    texture: np.ndarray  # (S, S, 3) float RGB, the disc's texture at scale 1
    radius: float  # disc radius at scale 1, pixels
    mid: dict  # attribute -> value in the middle frame
    rate: dict  # attribute -> change per frame when the class moves it
    tau: dict  # attribute -> the frame whose value a still attribute keeps
    sign: dict  # attribute -> direction of the flip-closed classes (+1 or -1)


def _look(cfg: DemoConfig, group: int, clip: int, textures: bool = True) -> _Look:
    rng = np.random.default_rng([cfg.seed, group, clip])
    w, h = cfg.width, cfg.height
    m = min(w, h)
    radius = float(rng.uniform(0.16, 0.22) * m)
    speed = float(rng.uniform(1.0, 1.5)) * m / 64  # pixels per frame at 64 px
    rate = {"x": speed, "y": speed, "angle": math.radians(float(rng.uniform(5.0, 8.0))),
            "scale": float(rng.uniform(0.045, 0.065))}
    margin = 0.2 * m  # the disc's centre stays this far inside the frame in the middle frame
    mid = {"x": float(rng.uniform(margin, w - margin)), "y": float(rng.uniform(margin, h - margin)),
           "angle": float(rng.uniform(0, 2 * math.pi)), "scale": 0.0}
    tau = {a: int(rng.integers(0, cfg.frames)) for a in ("x", "y", "scale")}
    sign = {a: int(rng.choice((-1, 1))) for a in ("x", "angle")}
    background = texture = np.zeros((0, 0, 3))
    if textures:  # drawn last, so that trajectories need not make them
        size = int(math.ceil(2 * radius)) + 4
        background = _texture(rng, h, w, sigma=float(rng.uniform(1.2, 2.5)))
        texture = _texture(rng, size, size, sigma=float(rng.uniform(0.8, 1.4)))
    return _Look(background, texture, radius, mid, rate, tau, sign)


def _state(look: _Look, cls: str, t: int, frames: int) -> dict:
    """The disc's x, y, angle and log-scale in frame t of a video of class cls."""
    moved, sign = MOTIONS[cls]
    sign = sign or look.sign[moved]
    half = (frames - 1) / 2
    state = {}
    for a in ("x", "y", "angle", "scale"):
        if a == moved:
            state[a] = look.mid[a] + sign * look.rate[a] * (t - half)
        elif a == "angle":
            state[a] = look.mid[a]  # the angle is already uniform on the circle
        else:
            state[a] = look.mid[a] + look.rate[a] * (look.tau[a] - half)
    return state


def _render(look: _Look, state: dict) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the disc drawn over the background with an anti-aliased edge."""
    h, w = look.background.shape[:2]
    s = math.exp(state["scale"])
    cx, cy, th = state["x"], state["y"], state["angle"]
    c = (look.texture.shape[0] - 1) / 2
    # frame pixel p -> texture pixel q = R(-th) (p - centre) / s + c  (the inverse map warpAffine wants)
    cos, sin = math.cos(th) / s, math.sin(th) / s
    a = np.array([[cos, sin], [-sin, cos]])
    m = np.hstack([a, (np.array([c, c]) - a @ np.array([cx, cy]))[:, None]])
    disc = cv2.warpAffine(look.texture.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot(xx - cx, yy - cy) - look.radius * s
    alpha = np.clip(0.5 - dist, 0.0, 1.0)[..., None]
    out = look.background * (1 - alpha) + disc * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _check_class(cls: str) -> None:
    if cls not in MOTIONS:
        raise ValueError(f"unknown demo class {cls!r}; choose one of {', '.join(MOTIONS)}")


def trajectory(cfg: DemoConfig, cls: str, group: int, clip: int) -> list[dict]:
    """The disc's state in each frame of one demo video: x, y, radius (pixels), angle (radians), scale (log)."""
    _check_class(cls)
    look = _look(cfg, group, clip, textures=False)
    states = [_state(look, cls, t, cfg.frames) for t in range(cfg.frames)]
    return [{**s, "radius": look.radius * math.exp(s["scale"])} for s in states]


def render_video(cfg: DemoConfig, cls: str, group: int, clip: int) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of one demo video, before video encoding."""
    _check_class(cls)
    look = _look(cfg, group, clip)
    return np.stack([_render(look, _state(look, cls, t, cfg.frames)) for t in range(cfg.frames)])


def _write_avi(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write RGB frames as MJPG in AVI, atomically (no fsync: the demo is made again in seconds)."""
    h, w = frames.shape[1:3]
    with replacing(path, fsync=False, keep_extension=True) as tmp:  # OpenCV picks the container from ".avi"
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), True)
        if not writer.isOpened():
            raise FlowprepError(f"{tmp}: OpenCV cannot write MJPG/AVI here (is the folder writable?)")
        try:
            for f in frames:
                writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()


def make_demo_dataset(out_dir: str | os.PathLike, seed: int = 0, train_groups: int = 6, test_groups: int = 3,
                      clips: int = 2, frames: int = 17, width: int = 64, height: int = 64,
                      progress: bool = False) -> dict:
    """Write the demo dataset into out_dir (UCF-101 layout), or reuse it if it is already there.

    Args:
        out_dir: the dataset root to write.
        seed: everything is a function of it and the other settings.
        train_groups, test_groups: groups of each split (test groups are g01..); disjoint by construction.
        clips: clips per group and class.
        frames, width, height: frames per video and their size.
        progress: show a progress bar.
    Returns:
        a summary: root, classes, counts, settings, seconds, and whether an existing dataset was reused.
    Raises:
        FlowprepError: out_dir holds a demo made with other settings, or a video cannot be written.
    """
    cfg = DemoConfig(seed=seed, train_groups=train_groups, test_groups=test_groups, clips=clips, frames=frames,
                     width=width, height=height)
    root = Path(out_dir)
    marker = root / MARKER
    if marker.is_file():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("config") == asdict(cfg):
            return {**done, "reused": True}
        raise FlowprepError(f"{root} holds a demo dataset made with other settings ({done.get('config')}); "
                            "delete that folder or choose another --out")
    t0 = time.perf_counter()
    classes = list(MOTIONS)
    jobs = [(c, g, k) for g in range(1, cfg.groups + 1) for k in range(1, cfg.clips + 1) for c in classes]
    from tqdm import tqdm
    for cls, g, k in tqdm(jobs, desc="demo videos", unit="video", disable=not progress):
        path = root / video_name(cls, g, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_avi(path, render_video(cfg, cls, g, k), cfg.fps)
    test = [(c, g, k) for c, g, k in jobs if g <= cfg.test_groups]
    train = [(c, g, k) for c, g, k in jobs if g > cfg.test_groups]
    index = {c: i + 1 for i, c in enumerate(classes)}
    write_text(root / "classInd.txt", "".join(f"{i} {c}\n" for c, i in index.items()))
    write_text(root / "trainlist01.txt", "".join(f"{video_name(c, g, k)} {index[c]}\n" for c, g, k in sorted(train)))
    write_text(root / "testlist01.txt", "".join(f"{video_name(c, g, k)}\n" for c, g, k in sorted(test)))
    summary = {"root": str(root), "classes": classes, "videos": len(jobs), "train": len(train), "test": len(test),
               "train_groups": list(range(cfg.test_groups + 1, cfg.groups + 1)),
               "test_groups": list(range(1, cfg.test_groups + 1)),
               "config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 2)}
    write_text(marker, json.dumps(summary, indent=1) + "\n")
    return {**summary, "reused": False}
