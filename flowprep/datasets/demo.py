"""The bundled demo dataset: six action classes in which appearance and motion each tell part of the story.

Each video shows a textured disc over a textured background, filmed by a camera that pans slowly. A class is a
*motion program* and a *colour*:

=================  =========================================  ===========
class              motion program (two movements, in order)    disc colour
=================  =========================================  ===========
RiseFallRed        up for the first half, then down            red
FallRiseRed        down, then up                               red
GrowShrinkGreen    zooming in, then out                        green
ShrinkGrowGreen    zooming out, then in                        green
RiseFallBlue       up, then down                               blue
FallRiseBlue       down, then up                               blue
=================  =========================================  ===========

What each stream can know, by construction:

* **One frame** (the spatial stream) sees the colour, which is the class's in 85% of the videos (``CUE``; the
  others take another class's colour), and nothing of the motion: position, size and angle have (nearly) the
  same distribution in the two classes of a colour. It can tell the colour pair, not the class within it.
* **One flow field** (L = 1) sees a movement, but the two programs of a pair are made of the same movements in
  the opposite order (rise-fall and fall-rise both hold as many up as down fields): it can tell translation
  from zoom, no more.
* **A stack of ten flows** (L = 10, the paper's) always spans the switch in the middle of the video, so it sees
  the order and tells the four programs apart; RiseFallRed and RiseFallBlue (and FallRise*) differ only in
  speed, red faster than blue over overlapping ranges (``SPEEDS``): motion tells them apart only in part.
* **Both streams** (fusion) know the program, the colour (in 85% of the videos) and the speed: the class.

So the spatial net is above chance (about 42%: the right pair, half the time the right class), the temporal net
well above it (up to about 80%: the programs, and red from blue by speed when the speeds do not overlap), a
one-flow temporal net much worse (about 40%: no order), and their fusion above both, the shape of the paper's
Tables 1 and 3. The camera's pan (up to half a
pixel per frame, random per video) is what mean subtraction removes. The layout is UCF-101's:
``<root>/<Class>/v_<Class>_gXX_cYY.avi`` with ``classInd.txt``, ``trainlist01.txt`` and ``testlist01.txt`` at
the root; test groups come first (g01..), train and test groups are disjoint; ``demo.json`` is written last and
marks a finished dataset, so a second run with the same settings reuses it.

``small=True`` makes the companion dataset of the paper's Table 2 (``SMALL_CLASSES``): the four programs, one
class each, at speeds the demo covers, 2 training videos per class. Trained on alone, 8 videos teach the
programs in part (about 70-75%); a net that learnt them on the demo's 108 videos, fine-tuned, or trained on both
at once (added classes, multi-task), tells them apart (94-100%): a small dataset gains from a large one.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flowprep.base.durable import replacing, write_text
from flowprep.codecs.video import opencv_can_name
from flowprep.errors import FlowprepError

# program -> (attribute it moves, direction of the first movement); the second movement is the opposite one
PROGRAMS: dict[str, tuple[str, int]] = {"RiseFall": ("y", -1), "FallRise": ("y", +1), "GrowShrink": ("scale", +1),
                                        "ShrinkGrow": ("scale", -1)}
COLOURS = {"Red": 0.0, "Green": 120.0, "Blue": 240.0, "Yellow": 60.0, "Purple": 285.0}  # hue in degrees
# vertical speed (pixels per frame at 64 px) of each colour's classes: red ones rise and fall faster than blue ones,
# with overlapping ranges, so that motion tells red from blue in part (and one frame not at all); the small
# dataset's yellow ones within the demo's range (slower ones were what the demo's trunk had not seen: Table 2's
# joint training missed them and fine-tuning did not, data/README.md)
SPEEDS = {"Red": (1.05, 1.6), "Green": (1.0, 1.4), "Blue": (0.75, 1.3), "Yellow": (0.8, 1.5), "Purple": (1.0, 1.4)}
# class -> (program, colour)
CLASSES: dict[str, tuple[str, str]] = {
    "RiseFallRed": ("RiseFall", "Red"), "FallRiseRed": ("FallRise", "Red"),
    "GrowShrinkGreen": ("GrowShrink", "Green"), "ShrinkGrowGreen": ("ShrinkGrow", "Green"),
    "RiseFallBlue": ("RiseFall", "Blue"), "FallRiseBlue": ("FallRise", "Blue"),
}
# The small companion dataset (``make-demo --small``; Table 2's HMDB-51 to the demo's UCF-101): the same four
# motion programs, one class each, in colours of its own, with few training videos (see SMALL_DEFAULTS)
SMALL_CLASSES: dict[str, tuple[str, str]] = {
    "RiseFallYellow": ("RiseFall", "Yellow"), "FallRiseYellow": ("FallRise", "Yellow"),
    "GrowShrinkPurple": ("GrowShrink", "Purple"), "ShrinkGrowPurple": ("ShrinkGrow", "Purple"),
}
_ALL = {**CLASSES, **SMALL_CLASSES}  # (the demo's classes first: their videos do not depend on the small ones)
CUE = 0.85  # the share of videos whose disc has its class's colour
# the small dataset's split, by default (make-demo --small): 2 training videos per class, 12 test videos (with 3
# training videos, training on it alone reached 100% on one seed in three: nothing left to gain; docs/DEMO.md)
SMALL_DEFAULTS = {"train_groups": 1, "test_groups": 6, "clips": 2}
MARKER = "demo.json"
VERSION = 3  # 1: six classes that differ only in motion; 2: appearance and motion each tell part; 3: the small
# dataset's speeds within the demo's


@dataclass(frozen=True)
class DemoConfig:
    """What the demo dataset looks like; the same config and seed always give the same files."""

    seed: int = 0
    train_groups: int = 6
    test_groups: int = 4
    clips: int = 3  # clips per group and class
    frames: int = 17  # odd: the switch between the two movements is the middle frame
    width: int = 64
    height: int = 64
    fps: float = 25.0
    small: bool = False  # the small companion dataset (SMALL_CLASSES) instead of the demo's six classes

    def __post_init__(self) -> None:
        if self.train_groups < 1 or self.test_groups < 1 or self.clips < 1:
            raise ValueError("need at least one train group, one test group and one clip per group")
        if self.train_groups + self.test_groups > 99 or self.clips > 99:
            raise ValueError("UCF-101 names hold two digits: at most 99 groups and 99 clips")
        if self.seed < 0:  # numpy's generators take none (a traceback, and a class folder left behind)
            raise ValueError(f"the seed must be a whole number >= 0, got {self.seed}")
        if self.frames < 3:
            raise ValueError(f"need at least 3 frames per video, got {self.frames}")
        if self.width < 32 or self.height < 32:
            raise ValueError(f"frames must be at least 32x32, got {self.width}x{self.height}")

    @property
    def classes(self) -> dict[str, tuple[str, str]]:
        """This dataset's classes: class -> (program, colour)."""
        return SMALL_CLASSES if self.small else CLASSES

    @property
    def groups(self) -> int:
        """All groups: test groups 1..test_groups, then the train groups."""
        return self.train_groups + self.test_groups


def video_name(cls: str, group: int, clip: int) -> str:
    """UCF-101 style relative path of one video: ``Class/v_Class_gXX_cYY.avi``."""
    return f"{cls}/v_{cls}_g{group:02d}_c{clip:02d}.avi"


def _texture(rng: np.random.Generator, h: int, w: int, sigma: float, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """(h, w, 3) float RGB: blurred noise at two scales between two colours."""
    fine = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), sigma)
    coarse = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 4 * sigma)
    n = fine + 0.5 * coarse
    n = (n - n.min()) / max(float(n.max() - n.min()), 1e-6)
    return c0 + n[..., None] * (c1 - c0)


def _rgb(hue: float, sat: float, val: float) -> np.ndarray:
    hsv = np.array([[[(hue % 360) / 2, sat * 255, val * 255]]]).round().astype(np.uint8)  # OpenCV's hue: 0..180
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


@dataclass(frozen=True)
class _Look:
    """Everything about one video but its program: appearance, start state, rates, the camera's pan."""

    background: np.ndarray  # (H + 2m, W + 2m, 3) float RGB, m = PAN_MARGIN
    texture: np.ndarray  # (S, S, 3) float RGB, the disc's texture at scale 1
    radius: float
    mid: dict  # attribute -> its value around which the program moves it
    rate: dict  # attribute -> change per frame while it moves
    pan: tuple[float, float]  # camera motion, pixels per frame (the whole scene moves by -pan)
    colour: str  # the disc's colour (its class's in CUE of the videos)


PAN_MARGIN = 8


def _look(cfg: DemoConfig, cls: str, group: int, clip: int, textures: bool = True) -> _Look:
    rng = np.random.default_rng([cfg.seed, group, clip, list(_ALL).index(cls)])
    w, h, m = cfg.width, cfg.height, min(cfg.width, cfg.height)
    radius = float(rng.uniform(0.17, 0.23) * m)
    rate = {"y": float(rng.uniform(*SPEEDS[_ALL[cls][1]])) * m / 64, "scale": float(rng.uniform(0.065, 0.085))}
    margin = 0.3 * m
    mid = {"x": float(rng.uniform(margin, w - margin)), "y": float(rng.uniform(margin, h - margin)),
           "angle": float(rng.uniform(0, 2 * math.pi)), "scale": float(rng.uniform(-0.15, 0.15))}
    speed, direction = float(rng.uniform(0, 0.5)), float(rng.uniform(0, 2 * math.pi))
    own = _ALL[cls][1]
    colours = dict.fromkeys(c for _, c in cfg.classes.values())  # this dataset's colours, in order
    colour = own if rng.random() < CUE else str(rng.choice([c for c in colours if c != own]))
    background = texture = np.zeros((0, 0, 3))
    if textures:
        grey = rng.uniform(0, 360)  # a background of any hue, washed out: it says nothing
        background = _texture(rng, h + 2 * PAN_MARGIN, w + 2 * PAN_MARGIN, float(rng.uniform(1.2, 2.5)),
                              _rgb(grey, 0.15, rng.uniform(0.1, 0.35)), _rgb(grey, 0.15, rng.uniform(0.65, 0.95)))
        hue = COLOURS[colour] + rng.uniform(-12, 12)
        size = int(math.ceil(2 * radius * math.exp(0.8))) + 4
        texture = _texture(rng, size, size, float(rng.uniform(0.8, 1.4)), _rgb(hue, 0.9, rng.uniform(0.35, 0.5)),
                           _rgb(hue, rng.uniform(0.5, 0.8), rng.uniform(0.85, 1.0)))
    return _Look(background, texture, radius, mid, rate, (speed * math.cos(direction), speed * math.sin(direction)),
                 colour)


def _state(look: _Look, cls: str, t: int, frames: int) -> dict:
    """The disc's x, y, angle and log-scale in frame t, and the camera's offset."""
    moved, sign = PROGRAMS[_ALL[cls][0]]
    half = (frames - 1) / 2
    bump = half - abs(t - half)  # 0 -> half -> 0: the first movement, then the second back
    centre = half * half / (2 * half + 1) if half else 0.0  # bump's mean over the video: excursions centred
    state = {a: look.mid[a] for a in ("x", "y", "angle", "scale")}
    state[moved] += sign * look.rate[moved] * (bump - centre)
    state["pan"] = (look.pan[0] * (t - half), look.pan[1] * (t - half))
    return state


def _render(look: _Look, state: dict) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the disc over the background with an anti-aliased edge, the camera panned."""
    bh, bw = look.background.shape[:2]
    h, w = bh - 2 * PAN_MARGIN, bw - 2 * PAN_MARGIN
    px, py = state["pan"]  # the camera moves by +pan: the scene by -pan
    shift = np.array([[1.0, 0.0, PAN_MARGIN + px], [0.0, 1.0, PAN_MARGIN + py]])
    back = cv2.warpAffine(look.background.astype(np.float32), shift, (w, h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    s = math.exp(state["scale"])
    cx, cy, th = state["x"] - px, state["y"] - py, state["angle"]
    c = (look.texture.shape[0] - 1) / 2
    cos, sin = math.cos(th) / s, math.sin(th) / s
    a = np.array([[cos, sin], [-sin, cos]])
    m = np.hstack([a, (np.array([c, c]) - a @ np.array([cx, cy]))[:, None]])
    disc = cv2.warpAffine(look.texture.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip(0.5 - (np.hypot(xx - cx, yy - cy) - look.radius * s), 0.0, 1.0)[..., None]
    return np.clip(np.rint(back * (1 - alpha) + disc * alpha), 0, 255).astype(np.uint8)


def _check_class(cls: str) -> None:
    if cls not in _ALL:
        raise ValueError(f"unknown demo class {cls!r}; choose one of {', '.join(_ALL)}")


def trajectory(cfg: DemoConfig, cls: str, group: int, clip: int) -> list[dict]:
    """The disc's state in each frame of one demo video: x, y (in the scene), radius (pixels), angle (radians),
    scale (log), the camera's pan offset, and the disc's colour."""
    _check_class(cls)
    look = _look(cfg, cls, group, clip, textures=False)
    states = [_state(look, cls, t, cfg.frames) for t in range(cfg.frames)]
    return [{**s, "radius": look.radius * math.exp(s["scale"]), "colour": look.colour} for s in states]


def render_video(cfg: DemoConfig, cls: str, group: int, clip: int) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of one demo video, before video encoding."""
    _check_class(cls)
    look = _look(cfg, cls, group, clip)
    return np.stack([_render(look, _state(look, cls, t, cfg.frames)) for t in range(cfg.frames)])


def _write_avi(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write RGB frames as MJPG in AVI, atomically (no fsync: the demo is made again in seconds)."""
    h, w = frames.shape[1:3]
    with replacing(path, fsync=False, keep_extension=True) as tmp, tempfile.TemporaryDirectory() as scratch:
        # OpenCV picks the container from ".avi", and crashes on a name that is not UTF-8: written elsewhere then
        target = str(tmp) if opencv_can_name(str(tmp)) else os.path.join(scratch, "video.avi")
        writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), True)
        if not writer.isOpened():
            raise FlowprepError(f"{tmp}: OpenCV cannot write MJPG/AVI here (is the folder writable?)")
        try:
            for f in frames:
                writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        if target != str(tmp):
            shutil.move(target, tmp)


def _remove_demo(root: Path, done: dict) -> None:
    """Delete what an earlier make_demo_dataset wrote in ``root``: its lists, its marker and the class folders it
    names that hold nothing but demo videos of that class (the marker is a file anyone can edit: a class named
    ``..`` removed the folder above --out)."""
    classes = done.get("classes")
    for cls in classes if isinstance(classes, list) else []:
        folder = root / str(cls)
        if _is_demo_class(folder, str(cls)):
            shutil.rmtree(folder)
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt", MARKER):
        (root / name).unlink(missing_ok=True)


def _is_demo_class(folder: Path, cls: str) -> bool:
    # a plain name below the root whose folder holds only this class's videos (and their temporary files)
    if not cls or cls in (".", "..") or "/" in cls or "\\" in cls or folder.is_symlink() or not folder.is_dir():
        return False
    return all(e.is_file() and e.name.startswith(f"v_{cls}_g") for e in folder.iterdir())


def _read_marker(marker: Path) -> dict:
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        done = e
    if not isinstance(done, dict):
        raise FlowprepError(f"{marker} cannot be read ({done if isinstance(done, Exception) else 'not an object'}): "
                            "delete that file (and the demo beside it), or choose another --out")
    return done


def make_demo_dataset(out_dir: str | os.PathLike, *, progress: bool = False, **settings: Any) -> dict:
    """Write the demo dataset into out_dir (UCF-101 layout), or reuse it if it is already there.

    Args:
        out_dir: the dataset root to write.
        progress: show a progress bar.
        settings: ``DemoConfig``'s fields (seed, train_groups, test_groups, clips, frames, width, height, small;
            each defaults to DemoConfig's): everything is a function of them. The small companion dataset
            (``small``) takes few train groups, e.g. SMALL_DEFAULTS.
    Returns:
        a summary: root, classes, counts, settings, seconds, and whether an existing dataset was reused.
    A demo made here earlier with other settings (or by another version) is replaced.

    Raises:
        FlowprepError: out_dir holds other files than a demo's, or a video cannot be written.
        TypeError: a setting DemoConfig has not.
    """
    cfg = DemoConfig(**settings)
    root = Path(out_dir)
    marker = root / MARKER
    if marker.is_file():
        done = _read_marker(marker)
        config = done.get("config")
        # (a marker written before ``small`` existed is of the six-class demo)
        same = isinstance(config, dict) and {"small": False, **config} == asdict(cfg) \
            and done.get("classes") == list(cfg.classes)
        if same and done.get("version") == VERSION and done.get("complete", True):
            return {**done, "reused": True}
        _remove_demo(root, done)  # a demo this function wrote (or began), other settings or of another version
    elif root.exists() and any(root.iterdir()):
        raise FlowprepError(f"{root} is not empty and holds no demo dataset ({MARKER}); choose another --out")
    t0 = time.perf_counter()
    classes = list(cfg.classes)
    root.mkdir(parents=True, exist_ok=True)  # the marker first: a run stopped part-way is replaced by the next
    write_text(marker, json.dumps({"version": VERSION, "classes": classes, "config": asdict(cfg), "complete": False}))
    jobs = [(c, g, k) for g in range(1, cfg.groups + 1) for k in range(1, cfg.clips + 1) for c in classes]
    from flowprep.base.progress import progress_bar
    for cls, g, k in progress_bar(jobs, show=progress, desc="demo videos", unit="video"):
        path = root / video_name(cls, g, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_avi(path, render_video(cfg, cls, g, k), cfg.fps)
    test = [(c, g, k) for c, g, k in jobs if g <= cfg.test_groups]
    train = [(c, g, k) for c, g, k in jobs if g > cfg.test_groups]
    index = {c: i + 1 for i, c in enumerate(classes)}
    write_text(root / "classInd.txt", "".join(f"{i} {c}\n" for c, i in index.items()))
    write_text(root / "trainlist01.txt", "".join(f"{video_name(c, g, k)} {index[c]}\n" for c, g, k in sorted(train)))
    write_text(root / "testlist01.txt", "".join(f"{video_name(c, g, k)}\n" for c, g, k in sorted(test)))
    summary = {"version": VERSION, "root": str(root), "classes": classes, "videos": len(jobs), "train": len(train),
               "test": len(test),
               "train_groups": list(range(cfg.test_groups + 1, cfg.groups + 1)),
               "test_groups": list(range(1, cfg.test_groups + 1)),
               "config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 2)}
    write_text(marker, json.dumps(summary, indent=1) + "\n")
    return {**summary, "reused": False}
