"""Temporal-stream loading speed: shards through flowprep.loading vs a denseflow folder read with Pillow.

All loaders read the SAME JPEG bytes (flow codes of L = 10 flows, 340x256, quality 95) and produce the same
training sample: a random 224x224 crop of a (2L, 224, 224) float32 stack in pixels with a random flip that
negates dx. Ours reads the HDF5 shard through ``flowprep.ShardSet`` (``flowprep.loading.TrainClips``) as ``fit``
does: whole batches, the flow as uint8 codes plus a 256-entry table per plane until ``to_pixels`` makes the
float32 pixels, timed here in the main process on the CPU (on a GPU that lookup runs there). The reference is
what the public two-stream trainers do, as tsn-pytorch's dataset and transforms do it: one file per flow component
(``flow_x_00001.jpg``) opened with ``PIL.Image.open(...).convert('L')``, GroupRandomCrop (PIL crop),
GroupRandomHorizontalFlip(is_flow=True) (PIL transpose, ImageOps.invert of the x images), Stack,
ToTorchFormatTensor and a per-channel normalisation (here to pixels). A second, leaner Pillow loader (numpy crop
and flip, one vectorised rescale) is printed beside it for scale. Samples per second are timed with 0, 1 and 2
DataLoader workers, best of 3 runs each (interleaved); the target is >= 3x the reference (issue 18; 2x in
issue 5; exit status 1 when missed). The CPU milliseconds per sample of the main process and its workers
together are printed beside it: with 2 workers on 2 cores the rate is CPU-bound, and CPU time is what other
jobs on the machine move least.

    .venv/bin/python benchmarks/bench_loader.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from flowprep.codecs.jpeg import encode_bgr, encode_gray  # noqa: E402
from flowprep.codecs.quantize import DEFAULT_BOUND, QuantConfig, quantize_flow  # noqa: E402
from flowprep.loading import DataConfig, TrainClips, load_items, make_loader, to_pixels  # noqa: E402
from flowprep.store.reader import open_shards  # noqa: E402
from flowprep.store.record import VideoRecord  # noqa: E402
from flowprep.store.writer import ShardWriter  # noqa: E402

TARGET = 3.0  # issue 18: >= 3x tsn-pytorch's samples/s at 0, 1 and 2 workers
W, H, L, CROP, BOUND = 340, 256, 10, 224, DEFAULT_BOUND


def smooth_flow(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(frames-1, 2, H, W) float32 smooth random flow (a few pixels), like TV-L1 output on real video."""
    coarse = rng.normal(scale=3.0, size=(frames - 1, 2, 6, 8)).astype(np.float32)
    return np.stack([[cv2.resize(c, (W, H), interpolation=cv2.INTER_CUBIC) for c in f] for f in coarse])


def build(root: Path, videos: int, frames: int) -> list[str]:
    """Write the same JPEGs into a shard and into denseflow folders; returns the video keys."""
    rng = np.random.default_rng(0)
    keys = []
    with ShardWriter(root / "shards" / "shard-00000.h5", {"bench": True}) as writer:
        for v in range(videos):
            key = f"Bench/v_{v:03d}"
            codes, params, clipped = quantize_flow(smooth_flow(rng, frames), QuantConfig("fixed", BOUND))
            fx = [encode_gray(c[0], 95) for c in codes]
            fy = [encode_gray(c[1], 95) for c in codes]
            rgb = [encode_bgr(np.full((H, W, 3), 128, np.uint8), 95)] * frames
            writer.add(VideoRecord(key=key, source="bench", width=W, height=H, frames=frames, rgb=rgb,
                                   flow_x=fx, flow_y=fy, quant=params, clipped=clipped))
            folder = root / "denseflow" / key
            folder.mkdir(parents=True, exist_ok=True)
            for t, (x, y) in enumerate(zip(fx, fy)):  # denseflow names: 1-based, one file per component
                (folder / f"flow_x_{t + 1:05d}.jpg").write_bytes(x)
                (folder / f"flow_y_{t + 1:05d}.jpg").write_bytes(y)
            keys.append(key)
    return keys


class PillowFolderClips(Dataset):
    """The baseline: a TSN-style loader over denseflow folders, decoding each flow JPEG with Pillow."""

    def __init__(self, root: Path, keys: list[str], flows: int, seed: int = 0):
        self.root, self.keys, self.flows, self.seed = root, keys, flows, seed

    def __len__(self) -> int:
        return len(self.keys)

    def choices(self, i: int) -> tuple[int, int, int, bool, Path]:
        """Sample i's stack start, crop corner, flip and folder (the same for every loader)."""
        rng = np.random.default_rng([self.seed, i])
        start = int(rng.integers(self.flows - L + 1))
        y0, x0 = int(rng.integers(H - CROP + 1)), int(rng.integers(W - CROP + 1))
        return start, y0, x0, bool(rng.random() < 0.5), self.root / self.keys[i]

    def __getitem__(self, i: int):
        start, y0, x0, flip, folder = self.choices(i)
        planes = []
        for t in range(start + 1, start + L + 1):
            for comp in ("x", "y"):
                img = Image.open(folder / f"flow_{comp}_{t:05d}.jpg").convert("L")
                a = np.asarray(img)[y0:y0 + CROP, x0:x0 + CROP]
                planes.append(a[:, ::-1] if flip else a)
        stack = np.stack(planes).astype(np.float32) * (2 * BOUND / 255.0) - BOUND * 128 / 127.5
        if flip:
            stack[0::2] = -stack[0::2]
        return torch.from_numpy(np.ascontiguousarray(stack)), 0, 0


class TSNStyleFolderClips(PillowFolderClips):
    """The reference: tsn-pytorch's flow pipeline (PIL crop, PIL flip + invert of x, Stack, ToTorchFormatTensor,
    per-channel normalisation), on the same files and with the same random choices as the other loaders."""

    def __getitem__(self, i: int):
        start, y0, x0, flip, folder = self.choices(i)
        group = []
        for t in range(start + 1, start + L + 1):  # TSNDataSet._load_image for modality 'Flow'
            group.append(Image.open(folder / f"flow_x_{t:05d}.jpg").convert("L"))
            group.append(Image.open(folder / f"flow_y_{t:05d}.jpg").convert("L"))
        group = [img.crop((x0, y0, x0 + CROP, y0 + CROP)) for img in group]  # GroupRandomCrop
        if flip:  # GroupRandomHorizontalFlip(is_flow=True)
            group = [img.transpose(Image.FLIP_LEFT_RIGHT) for img in group]
            for j in range(0, len(group), 2):
                group[j] = ImageOps.invert(group[j])
        stack = np.concatenate([np.expand_dims(x, 2) for x in group], axis=2)  # Stack
        x = torch.from_numpy(stack).permute(2, 0, 1).contiguous().float().div(255)  # ToTorchFormatTensor
        # GroupNormalize, with mean and std chosen so that the output is in pixels like the other loaders'
        # (invert maps code q to 255 - q, so a flipped x plane is centred on 127, not 128: TSN's off-by-one)
        for t in x:
            t.sub_(128 / 255).mul_(255 * 2 * BOUND / 255)
        return x, 0, 0


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far (Linux /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate(dataset: Dataset, n: int, workers: int, batch: int = 8) -> tuple[float, float]:
    """Samples per second over ``n`` samples (after one warm-up batch that starts the workers), each batch
    ending as a (B, 2L, 224, 224) float32 tensor in pixels in the main process; and the CPU milliseconds per
    sample of the main process and its workers together (the figure that noise from other jobs moves least)."""
    index = np.arange(n + batch) % len(dataset)
    # as `fit` builds it: ours collates whole batches itself, the flow as uint8 codes until to_pixels
    loader = make_loader(dataset, workers, batch_size=batch, sampler=index.tolist())
    cpu = torch.device("cpu")
    main0 = sum(os.times()[:2])
    it = iter(loader)
    pids = [w.pid for w in getattr(it, "_workers", [])]  # private, but only read here (0 where it changes)
    next(it)
    t0, seen, pixels, done = time.perf_counter(), 0, None, 0
    for x, _, _ in it:
        # ours: the table lookup, timed here (on a GPU it runs there), into the last batch's buffer as fit does
        x = pixels = to_pixels(x, cpu, out=pixels)
        assert x.shape[1:] == (2 * L, CROP, CROP) and x.dtype == torch.float32
        seen += x.shape[0]
        if seen + 2 * batch > n:  # the workers' CPU, read while they live (they stop after the last batch)
            done = sum(process_cpu(p) for p in pids)
    elapsed = time.perf_counter() - t0
    spent = sum(os.times()[:2]) - main0 + done
    return seen / elapsed, 1e3 * spent / (seen + batch)


def decode_bound(root: Path, keys: list[str], c_ours: float, c_ref: float) -> None:
    """Print why whole-image (and crop) decoding cannot reach TARGET with 2 workers: the CPU milliseconds per
    sample the target allows against what 20 decodes cost, in full and with no inverse DCT at all (libjpeg-turbo
    at 1/8 scale decodes the entropy-coded data and only the DC terms: the floor any crop decoder stays above,
    since Huffman data cannot be skipped without restart markers)."""
    files = sorted((root / "denseflow" / keys[0]).glob("flow_*.jpg"))[:2 * L]
    data = [np.frombuffer(f.read_bytes(), np.uint8) for f in files]

    def per_image(flag: int, runs: int = 50) -> float:
        t0 = time.perf_counter()
        for _ in range(runs):
            for d in data:
                cv2.imdecode(d, flag)
        return (time.perf_counter() - t0) / (runs * len(data)) * 1e3

    full, floor = per_image(cv2.IMREAD_GRAYSCALE), per_image(cv2.IMREAD_REDUCED_GRAYSCALE_8)
    allowed = c_ref / TARGET
    best = c_ours - 2 * L * (full - floor)
    print(f"\nwith 2 workers {TARGET:g}x allows {allowed:.2f} CPU ms per sample; ours {c_ours:.2f}, of which "
          f"{2 * L} decodes {2 * L * full:.2f} ({full * 1e3:.0f} us each, cv2.imdecode)")
    print(f"entropy decoding alone (1/8 scale, no inverse DCT) {floor * 1e3:.0f} us per image: even a decoder "
          f"that skipped every inverse DCT would leave ours at {best:.2f} ms ({c_ref / best:.2f}x); decoding the "
          f"224x224 crop skips {1 - CROP * CROP / (W * H):.0%} of the blocks' inverse DCTs, at most "
          f"{2 * L * (full - floor) * (1 - CROP * CROP / (W * H)):.2f} ms")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer samples (noisier)")
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3, help="runs per loader and worker count; the best is kept")
    a = p.parse_args(argv)
    n = a.samples or (64 if a.quick else 320)
    videos, frames = 8, 40
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keys = build(root, videos, frames)
        shards = open_shards(root / "shards")
        items = load_items(shards, [(k, 0) for k in keys])
        ours = TrainClips(shards, items, DataConfig(stream="temporal", flow_length=L, crop_size=CROP,
                                                    mean_subtract=False), compact=True)
        ref = TSNStyleFolderClips(root / "denseflow", keys, frames - 1)
        lean = PillowFolderClips(root / "denseflow", keys, frames - 1)
        print(f"temporal samples/s, L={L} ({2 * L} JPEGs each), {W}x{H} -> {CROP}x{CROP}, {n} samples, "
              f"batch 8, best of {a.repeat} runs, {os.cpu_count()} CPUs (shared: timings are noisy)")
        print(f"{'workers':>7} {'shards (ours)':>14} {'TSN-style (ref)':>16} {'ratio':>6} {'lean Pillow':>12} "
              f"{'ratio':>6}   CPU ms/sample: {'ours':>5} {'ref':>5} {'ratio':>6}")
        worst = float("inf")
        for workers in (0, 1, 2):
            # best of --repeat runs each, interleaved, as timeit does: the machine is shared, and the best
            # run is the one least disturbed by other jobs (the same rule for every loader)
            best = {"ref": (0.0, 0.0), "lean": (0.0, 0.0), "ours": (0.0, 0.0)}
            for _ in range(a.repeat):
                for name, ds in (("ref", ref), ("lean", lean), ("ours", ours)):
                    best[name] = max(best[name], rate(ds, n, workers))
            (r_ref, c_ref), (r_lean, _), (r_ours, c_ours) = best["ref"], best["lean"], best["ours"]
            worst = min(worst, r_ours / r_ref)
            print(f"{workers:>7} {r_ours:14.1f} {r_ref:16.1f} {r_ours / r_ref:5.2f}x {r_lean:12.1f} "
                  f"{r_ours / r_lean:5.2f}x   {'':>14}{c_ours:5.1f} {c_ref:5.1f} {c_ref / c_ours:5.2f}x")
        decode_bound(root, keys, c_ours, c_ref)  # the 2-worker row's CPU figures
        print(f"\ntarget >= {TARGET:g}x the reference's samples/s at every worker count: "
              f"{'met' if worst >= TARGET else 'MISSED'} (worst {worst:.2f}x)")
    return 0 if worst >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
