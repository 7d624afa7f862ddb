"""PyTorch datasets over flowprep shards, for any training loop: spatial samples (one RGB frame) and temporal
samples (L stacked flows), in training (``TrainClips``) and in the paper's test protocol (``EvalClips``).

The shards are read through a ``ShardSet`` (built before the DataLoader forks; it opens its HDF5 files lazily
in each worker). This module decides only which flows, which crop and which flip; what they do to the pixels
is ``flowprep.loading.augment``'s, and how flow is stacked ``flowprep.loading.stacking``'s.

Randomness is a pure function of (seed, epoch, sample index), so a resumed run, any number of workers and
any number of DDP ranks see the same crops and flips for the same sample.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from flowprep.base.moved import forward
from flowprep.errors import ShardError
from flowprep.loading import augment as T
from flowprep.loading.stacking import STACKINGS, stack_parts, trajectory_stack
from flowprep.store import format as F
from flowprep.store.reader import ShardSet

STREAMS = ("spatial", "temporal")
log = logging.getLogger("flowprep")


@dataclass(frozen=True)
class DataConfig:
    """How samples are cut from the shards (the paper's values by default)."""

    stream: str = "temporal"
    flow_length: int = 10  # L: flows per stack, 2L input channels
    crop_size: int = 224
    mean_subtract: bool = True  # each displacement field minus its own mean vector (camera motion)
    multi_scale: bool = False
    flip: bool = True
    seed: int = 0
    test_frames: int = 25
    test_crops: int = 10  # 1 (centre), 2 (centre + flip), 5 (corners + centre) or 10 (and their flips)
    rgb_jitter: float = T.RGB_JITTER_STD  # std of AlexNet's PCA colour jitter of spatial training frames (0: off)
    # "optical" (Eq. 1), "trajectory" (Eq. 2) or "bidirectional" (L/2 backward, L/2 forward flows; shards made
    # with --backward), in training and at test time
    stacking: str = "optical"

    def __post_init__(self) -> None:
        for name in ("flow_length", "crop_size", "test_frames", "test_crops", "seed"):
            value = getattr(self, name)  # 2.5 was taken: in_channels said 5.0 where samples had 6 channels
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"DataConfig.{name} must be a whole number, got {value!r}")
        if self.seed < 0:  # numpy's "expected non-negative integer" came from the first sample
            raise ValueError(f"DataConfig.seed must be 0 or more, got {self.seed}")
        if self.stream not in STREAMS:
            raise ValueError(f"unknown stream {self.stream!r}; choose one of {', '.join(STREAMS)}")
        if self.stacking not in STACKINGS:
            raise ValueError(f"unknown stacking {self.stacking!r}; choose one of {', '.join(STACKINGS)}")
        if self.test_crops not in (1, 2, 5, 10):
            raise ValueError(f"--test-crops must be 1, 2, 5 or 10, got {self.test_crops}")
        if self.stacking == "bidirectional" and self.flow_length % 2:
            raise ValueError(f"bi-directional stacking takes L/2 backward and L/2 forward flows: --flow-length must "
                             f"be even, got {self.flow_length}")
        for flag, value, least in (("--flow-length", self.flow_length, 1), ("--crop-size", self.crop_size, 8),
                                   ("--test-frames", self.test_frames, 1)):  # named: one message said all three
            if value < least:
                raise ValueError(f"{flag} must be {least} or more, got {value}")

    @property
    def in_channels(self) -> int:
        """3 for RGB, 2L for a flow stack."""
        return 3 if self.stream == "spatial" else 2 * self.flow_length


@dataclass(frozen=True)
class VideoItem:
    """One video of a split, with what the shard says about it."""

    key: str
    label: int
    frames: int
    flows: int
    height: int
    width: int
    task: int = 0  # which dataset's head (multi-task training)
    source: int | None = None  # which ShardSet holds it (None: the task's; added classes: another dataset's)

    @property
    def shards_index(self) -> int:
        """The position of its ShardSet among a TrainClips' sources."""
        return self.task if self.source is None else self.source


def load_items(shards: ShardSet, pairs: Sequence[tuple[str, int]] | Mapping[str, int], task: int = 0
               ) -> list[VideoItem]:
    """Read frame counts and sizes of (key, label) pairs (or a {key: label} mapping) from the shards.

    Raises:
        ShardError: a video that failed at extraction (0 frames: it failed later, inside a loader worker).
    """
    text = isinstance(pairs, (str, bytes))
    pairs = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)  # zip() and generators: once
    if text or any(not (isinstance(p, (tuple, list)) and len(p) == 2) for p in pairs):
        raise TypeError("load_items takes (key, label) pairs or a {key: label} mapping, e.g. [('Class/v_1', 0)]")
    items = []
    for key, label in pairs:
        m = shards.meta(key)
        if m.status != F.OK:
            raise ShardError(m.shard, f"the video failed at extraction ({m.reason}) and has no frames to train "
                             "on; leave it out (ShardSet.keys() lists the videos that are ok)", key)
        items.append(VideoItem(key, int(label), m.frames, m.flows, m.height, m.width, task))
    shards.close()  # no open handle may cross the DataLoader's fork
    return items


def check_items(sources: Sequence[ShardSet], items: Sequence[VideoItem], config: DataConfig) -> None:
    """Refuse, when a dataset is built, samples its first batch would fail on inside a loader worker: a crop
    larger than a video's frames, bidirectional stacks from a folder without backward flow, spatial samples from
    one without RGB. Videos with fewer flows than a stack holds are said (their stacks repeat the last flow)."""
    short = [it for it in items if it.flows < config.flow_length] if config.stream == "temporal" else []
    if short:
        least = min(short, key=lambda it: it.flows)
        log.warning("%d of %d videos hold fewer than L = %d flows (e.g. %s: %d): their stacks repeat the last flow; a "
                    "smaller flow_length (--flow-length) avoids it", len(short), len(items), config.flow_length,
                    least.key, least.flows)
    if items:
        small = min(items, key=lambda it: min(it.height, it.width))
        if config.crop_size > min(small.height, small.width):
            T.check_fits(small.height, small.width, config.crop_size)  # its message: what size fits
    for src in {min(it.shards_index, len(sources) - 1) for it in items}:  # EvalClips: one ShardSet, any task
        if config.stream == "temporal" and config.stacking == "bidirectional":
            sources[src].require_backward("bidirectional stacking")
        if config.stream == "spatial" and not sources[src].has_rgb:
            raise ShardError(str(sources[src].root), "holds no RGB frames (extracted with --no-rgb), which the "
                                                     "spatial stream reads: use stream='temporal', or extract RGB")


def evenly_spaced(count: int, num: int) -> np.ndarray:
    """``num`` positions in [0, count): the centres of ``num`` equal segments (repeats if count < num)."""
    return ((np.arange(num) + 0.5) * max(count, 1) / num).astype(np.int64)


def num_positions(item: VideoItem, config: DataConfig) -> int:
    """How many frames (spatial) or stack starts (temporal, flows - L + 1; at least 1) a video offers."""
    if config.stream == "spatial":
        return item.frames
    return max(item.flows - config.flow_length + 1, 1)


def flow_indices(item: VideoItem, start: int, config: DataConfig) -> np.ndarray:
    """Flows start..start+L-1 of a stack; videos shorter than L flows repeat their last flow."""
    return stack_parts("optical", start, config.flow_length, item.flows)[0][1]


def _box(box: T.Box) -> tuple[int, int, int, int]:
    return box.y, box.x, box.h, box.w


def _stacked(shards: ShardSet, item: VideoItem, start: int, config: DataConfig, box: tuple | None, flip: bool,
             codes: np.ndarray | None = None, tables: np.ndarray | None = None) -> list[T.FlowSample]:
    # one FlowSample per direction of the stack (stack_parts), in channel order; written into consecutive planes
    # of ``codes``/``tables`` when given
    out, plane = [], 0
    for direction, idx in stack_parts(config.stacking, start, config.flow_length, item.flows):
        n = 2 * len(idx)
        out.append(T.flow_sample(shards, item.key, idx, box, flip, config.mean_subtract,
                                 codes=None if codes is None else codes[plane:plane + n],
                                 tables=None if tables is None else tables[plane:plane + n], direction=direction))
        plane += n
    return out


def read_flow(shards: ShardSet, item: VideoItem, start: int, config: DataConfig, box: T.Box) -> np.ndarray:
    """(L, 2, h, w) float32 flow in pixels of the stack at ``start`` inside ``box``, optionally mean-subtracted
    (each whole field minus its own mean vector); stacked as ``config.stacking`` says."""
    if config.stacking == "trajectory":  # trajectories need the whole fields: they leave any crop
        idx = flow_indices(item, start, config)
        whole = T.flow_sample(shards, item.key, idx).pixels().reshape(config.flow_length, 2, item.height, item.width)
        stack = trajectory_stack(whole, config.mean_subtract)
        return np.ascontiguousarray(stack[..., box.y:box.y + box.h, box.x:box.x + box.w])
    return _pixels(_stacked(shards, item, start, config, _box(box), False)).reshape(config.flow_length, 2, box.h,
                                                                                    box.w)


def read_flow_crop(shards: ShardSet, item: VideoItem, start: int, config: DataConfig, box: T.Box,
                   flip: bool) -> np.ndarray:
    """The training hot path for an S x S box: (2L, S, S) float32 stack x1, y1, x2, y2, ... in pixels, equal to
    ``crop_flow(read_flow(...))``; the crop is cut and mirrored while still uint8."""
    return _pixels(_stacked(shards, item, start, config, _box(box), flip))


def _pixels(parts: list[T.FlowSample]) -> np.ndarray:
    # (2L, h, w) float32 pixels of a stack's parts, in order (one part: no copy)
    return parts[0].pixels() if len(parts) == 1 else np.concatenate([p.pixels() for p in parts])


def empty_tensor(shape: Sequence[int], dtype: torch.dtype, shared: bool) -> torch.Tensor:
    """An uninitialised CPU tensor, allocated in shared memory when ``shared`` (as default_collate does in a
    worker; ``share_memory_()`` on a fresh tensor would allocate twice and copy)."""
    if not shared:
        return torch.empty(shape, dtype=dtype)
    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size())
    return torch.empty((0,), dtype=dtype).set_(storage).view(*shape)


def read_flow_stack(shards: ShardSet, item: VideoItem, start: int, config: DataConfig, box: T.Box,
                    flip: bool) -> np.ndarray:
    """(2L, S, S) float32 stack x1, y1, x2, y2, ... of the flows in ``box``, resized to S if needed, maybe flipped."""
    if (box.h, box.w) == (config.crop_size, config.crop_size) and config.stacking != "trajectory":
        return read_flow_crop(shards, item, start, config, box, flip)
    flow = read_flow(shards, item, start, config, box)
    return T.crop_flow(flow, T.Box(0, 0, box.h, box.w), config.crop_size, flip)


def read_frame(shards: ShardSet, item: VideoItem, index: int, config: DataConfig, box: T.Box, flip: bool,
               jitter: np.ndarray | None = None) -> np.ndarray:
    """(3, S, S) float32 normalised RGB crop of frame ``index`` (``jitter``: an RGB offset, T.rgb_jitter)."""
    return T.crop_rgb(rgb_frame(shards, item.key, index), box, config.crop_size, flip, jitter)


def rgb_frame(shards: ShardSet, key: str, index: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame ``index`` of video ``key``; ShardError naming the shard and video if it does not
    decode."""
    try:
        return shards.rgb(key, [int(index)])[0]
    except ValueError as e:
        raise T.undecodable(shards, key, f"rgb image {index}", e) from None


class TrainClips(Dataset):
    """One random sample per video per visit: a random frame (spatial) or stack start (temporal), random crop, flip.

    Item i is ``(x, label, task)`` with x (3, S, S) or (2L, S, S) float32, from video ``i % len(self)``: a sampler
    that draws a video again passes ``i + k * len(self)`` for a new sample (``flowprep.loading.sampling``).
    ``batch`` builds a whole batch, each sample written straight into it (``make_loader`` reads batches so; a plain
    DataLoader, or your own collate_fn, takes samples one by one); with ``compact`` a temporal batch's x is
    ``(codes, tables)`` (see flowprep.loading.augment), turned into pixels by ``augment.to_pixels`` on the
    training device.
    """

    def __init__(self, shards: ShardSet | Sequence[ShardSet], items: list[VideoItem], config: DataConfig,
                 compact: bool = False):
        # one ShardSet per dataset (multi-task): item.task picks it
        self.sources = list(shards) if isinstance(shards, (list, tuple)) else [shards]
        if items and (need := max(it.shards_index for it in items)) >= len(self.sources):
            raise ValueError(f"items of task {need} need a ShardSet for each task 0..{need}, got "
                             f"{len(self.sources)}: pass a list of ShardSets, one per load_items(..., task=k)")
        check_items(self.sources, items, config)
        self.items = items
        self.config = config
        # in shared memory: set_epoch in the parent reaches workers that outlive an epoch (persistent_workers)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        # multi-scale boxes are resized in float, trajectories sampled in float: only fixed S x S optical-flow
        # stacks can travel as codes
        self.compact = compact and config.stream == "temporal" and not config.multi_scale \
            and config.stacking != "trajectory"
        # uint16 codes with 4096-entry tables as soon as one source holds 12-bit flow
        self.code_format = max((s.flow_code_format for s in self.sources), key=lambda f: f[1])

    builds_batches = True  # make_loader reads whole batches (``batch``)

    def __iter__(self):
        # each video once: indices past len(self) are further draws (so the sequence protocol never ended)
        return (self[i] for i in range(len(self)))

    def __deepcopy__(self, memo: dict) -> TrainClips:
        # a copy's epoch is shared memory of its own, at this epoch (copied, it was private: persistent workers of
        # the copy never saw set_epoch)
        new = TrainClips.__new__(TrainClips)
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "_epoch"}, memo))
        new._epoch = self._epoch.clone().share_memory_()
        return new

    @property
    def epoch(self) -> int:
        """The epoch whose random stream samples come from."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random stream (call before iterating; workers, persistent ones too, see it)."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.items)

    def _choose(self, i: int) -> tuple[VideoItem, int, T.Box, bool]:
        # sample i's random choices: a pure function of (seed, epoch, i); i + k * len is the video's k-th draw of
        # the epoch (loading.sampling: a sampler that repeats a video)
        item, cfg = self.items[int(i) % len(self.items)], self.config
        rng = np.random.default_rng([cfg.seed, self.epoch, int(i)])
        pos = int(rng.integers(num_positions(item, cfg)))
        box = T.random_box(item.height, item.width, cfg.crop_size, rng, cfg.multi_scale)
        return item, pos, box, bool(cfg.flip and rng.random() < 0.5)

    def _jitter(self, i: int) -> np.ndarray | None:
        # drawn from its own stream, so that the other choices stay what they were without jitter
        if not self.config.rgb_jitter:
            return None
        rng = np.random.default_rng([self.config.seed, self.epoch, int(i), 1])
        return T.rgb_jitter(rng.normal(0.0, self.config.rgb_jitter, 3))

    def _draw(self, i: int) -> int:
        # -1 is the last video, as a sequence has it; the random streams take indices of 0 or more
        if int(i) < -len(self.items):
            raise IndexError(f"TrainClips index {i} is out of range: it holds {len(self.items)} videos")
        return int(i) + (len(self.items) if int(i) < 0 else 0)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        i = self._draw(i)
        item, pos, box, flip = self._choose(i)
        if self.config.stream == "spatial":
            x = read_frame(self.sources[item.shards_index], item, pos, self.config, box, flip, self._jitter(i))
        else:
            x = read_flow_stack(self.sources[item.shards_index], item, pos, self.config, box, flip)
        return torch.from_numpy(x), item.label, item.task

    def batch(self, indices: Sequence[int]) -> tuple:
        """A collated batch ``(x, labels, tasks)``, each sample written straight into it (no stacking copy)."""
        if not self.compact:
            return default_collate([self[i] for i in indices])
        n, size = 2 * self.config.flow_length, self.config.crop_size
        # in a worker, allocated in shared memory: the queue then sends a handle, not a copy
        shared = get_worker_info() is not None
        dtype, levels = self.code_format
        codes = empty_tensor((len(indices), n, size, size), torch.uint8 if dtype == np.uint8 else torch.uint16,
                             shared)
        tables = empty_tensor((len(indices), n, levels), torch.float32, shared)
        c, t = codes.numpy(), tables.numpy()
        labels, tasks = [], []
        for b, i in enumerate(indices):
            item, pos, box, flip = self._choose(self._draw(i))
            _stacked(self.sources[item.shards_index], item, pos, self.config, _box(box), flip, codes=c[b], tables=t[b])
            labels.append(item.label)
            tasks.append(item.task)
        return (codes, tables), torch.tensor(labels), torch.tensor(tasks)


class EvalClips(Dataset):
    """The paper's test protocol: ``test_frames`` evenly spaced positions per video, ``test_crops`` crops each.

    Item j is (video j // test_frames, position j % test_frames) and returns ``(x, video index, label)`` with
    x (crops, C, S, S); the scorer averages softmax over crops and positions per video.
    """

    def __init__(self, shards: ShardSet, items: list[VideoItem], config: DataConfig):
        check_items([shards], items, config)
        self.shards = shards
        self.items = items
        self.config = config

    def __len__(self) -> int:
        return len(self.items) * self.config.test_frames

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int, int]:
        cfg = self.config
        if not -len(self) <= int(j) < len(self):  # -1 gave "video -1"
            raise IndexError(f"EvalClips index {j} is out of range: it holds {len(self)} (videos x test_frames)")
        v, k = divmod(int(j) % len(self), cfg.test_frames)
        item = self.items[v]
        pos = int(evenly_spaced(num_positions(item, cfg), cfg.test_frames)[k])
        boxes = T.five_boxes(item.height, item.width, cfg.crop_size)
        boxes = boxes[4:] if cfg.test_crops in (1, 2) else boxes
        flips = (False, True) if cfg.test_crops in (2, 10) else (False,)
        if cfg.stream == "spatial":
            frame = rgb_frame(self.shards, item.key, pos)
            crops = [T.crop_rgb(frame, b, cfg.crop_size, f) for f in flips for b in boxes]
        else:
            full = T.Box(0, 0, item.height, item.width)
            flow = read_flow(self.shards, item, pos, cfg, full)  # read and decode once for all crops
            stack = flow.reshape(-1, item.height, item.width)  # (2L, H, W): x1, y1, x2, y2, ...
            crops = [stack[:, b.y:b.y + b.h, b.x:b.x + b.w] for b in boxes]
            crops += [T.flip_stack(c) for c in crops] if len(flips) == 2 else []
        return torch.from_numpy(np.stack(crops)), v, item.label


# make_loader and its helpers lived here (and train.data, flowprep 0.2's module, forwards here): they still read
def __getattr__(name: str):
    return forward("flowprep.loading.loader", "flowprep.loading.clips",
                   {"make_loader", "collated", "prepare_workers", "worker_init"}, name)
