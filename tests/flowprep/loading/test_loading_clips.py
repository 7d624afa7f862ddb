"""Samples from the shards: stacking order, flips that negate dx, rebuilt flow vs the extractor's, crops, samplers."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from flowprep.codecs.quantize import dequantize_flow
from flowprep.datasets.splits import load_split
from flowprep.extraction.config import ExtractConfig
from flowprep.extraction.extract import extract_video
from flowprep.loading import augment as T
from flowprep.loading.clips import DataConfig, EvalClips, TrainClips, evenly_spaced, load_items, read_flow
from flowprep.solvers import SolverConfig, make_solver
from flowprep.store.reader import open_shards
from flowprep.store.writer import ShardWriter
from train.splits import bind


def _items(motion_data, subset="train"):
    shards = open_shards(motion_data.shards)
    split = load_split("ucf101", motion_data.split_dir, 1)
    return shards, load_items(shards, bind(split.subset(subset), shards))


def test_flip_negates_x_and_mirrors():
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(3, 2, 8, 8)).astype(np.float32)  # (L, 2, H, W)
    box = T.Box(0, 0, 8, 8)
    plain, flipped = T.crop_flow(flow, box, 8, False), T.crop_flow(flow, box, 8, True)
    assert plain.shape == (6, 8, 8)
    np.testing.assert_array_equal(plain[0::2], flow[:, 0])  # x1, y1, x2, y2, ... order
    np.testing.assert_array_equal(plain[1::2], flow[:, 1])
    np.testing.assert_array_equal(flipped[0::2], -flow[:, 0, :, ::-1])  # dx negated AND mirrored
    np.testing.assert_array_equal(flipped[1::2], flow[:, 1, :, ::-1])  # dy only mirrored
    np.testing.assert_array_equal(T.flip_stack(plain), flipped)


def test_flipped_sample_of_rightward_motion_moves_left(motion_data):
    shards, items = _items(motion_data)
    item = next(it for it in items if it.key.startswith("MoveSideways")
                and motion_data.flows[it.key][:, 0].max() > 0)  # a video moving right
    cfg = DataConfig(stream="temporal", flow_length=4, crop_size=48, mean_subtract=False)
    ds = TrainClips(shards, [item], cfg)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        x = ds[0][0].numpy()
        seen.add(np.sign(x[0::2].sum()))  # the x planes: + unflipped, - flipped
        assert np.abs(x[1::2]).max() < 0.2  # no vertical motion either way
    assert seen == {1.0, -1.0}


def test_rebuilt_flow_equals_the_extractors_flow(tmp_path):
    """A real extraction (Farneback, fixed bound 20, JPEG q95) read back through the trainer's reader.

    The trainer adds nothing: its flow equals the shard's codes dequantized with the stored parameters. Against
    the solver's float flow the error is the quantization's half step plus JPEG's rare extra code: within one
    step (40/255 px) for 99.9% of the values, two steps at most, half a step on average.
    """
    h, w = 48, 64
    tex = cv2.resize(np.random.default_rng(1).integers(0, 256, (20, 24, 3)).astype(np.uint8), (w + 40, h + 40),
                     interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for t in range(8):
        vw.write(tex[10 + t:10 + t + h, 20 - 2 * t:20 - 2 * t + w])
    vw.release()

    class Recording:  # the solver, keeping the float flow it hands to the quantizer
        def __init__(self, solver):
            self.solver, self.batch_size, self.flows = solver, solver.batch_size, []

        def compute(self, a, b):
            self.flows.append(self.solver.compute(a, b))
            return self.flows[-1]

        def describe(self):
            return self.solver.describe()

    cfg = ExtractConfig(solver=SolverConfig(algo="farneback", backend="opencv"))
    solver = Recording(make_solver(cfg.solver))
    rec = extract_video(str(path), "Pan/v_pan", cfg, solver)
    with ShardWriter(tmp_path / "shards" / "shard-00000.h5", {}) as wr:
        wr.add(rec)
    shards = open_shards(tmp_path / "shards")
    item = load_items(shards, [("Pan/v_pan", 0)])[0]
    got = read_flow(shards, item, 0, DataConfig(flow_length=7, crop_size=48, mean_subtract=False), T.Box(0, 0, h, w))
    codes, params = shards.flow_codes("Pan/v_pan", range(7))
    np.testing.assert_array_equal(got, dequantize_flow(codes, params))
    np.testing.assert_array_equal(got, shards.flow("Pan/v_pan"))
    truth = np.clip(np.concatenate(solver.flows), -20, 20)
    step = params[0, 0, 0]
    assert step == pytest.approx(40 / 255)
    err = np.abs(got - truth) / step
    assert np.abs(truth).max() > 1.0  # real motion, not a trivial zero field
    assert np.quantile(err, 0.999) <= 1.0 and err.max() <= 2.0 and err.mean() <= 0.5


def test_mean_subtraction_and_multiscale_scaling(motion_data):
    shards, items = _items(motion_data)
    item = next(it for it in items if it.key.startswith("MoveDown"))
    full = T.Box(0, 0, item.height, item.width)
    sub = read_flow(shards, item, 0, DataConfig(flow_length=3, crop_size=48, mean_subtract=True), full)
    raw = read_flow(shards, item, 0, DataConfig(flow_length=3, crop_size=48, mean_subtract=False), full)
    np.testing.assert_allclose(sub.mean(axis=(2, 3)), 0, atol=1e-5)  # each field minus its own mean vector
    np.testing.assert_allclose(raw - sub, np.broadcast_to(raw.mean(axis=(2, 3), keepdims=True), raw.shape), atol=1e-5)
    # a 48-pixel window resized to 24 halves the displacements: flow stays in pixels of the network's input
    half = T.crop_flow(np.full((1, 2, 48, 48), 3.0, np.float32), full, 24, False)
    np.testing.assert_allclose(half, 1.5, rtol=1e-6)


def test_spatial_and_temporal_samples(motion_data):
    shards, items = _items(motion_data)
    for stream, channels in (("spatial", 3), ("temporal", 20)):
        cfg = DataConfig(stream=stream, flow_length=10, crop_size=32, multi_scale=True)
        ds = TrainClips(shards, items, cfg)
        x, y, task = ds[3]
        assert x.shape == (channels, 32, 32) and x.dtype == torch.float32 and y == items[3].label and task == 0
        assert np.array_equal(ds[3][0], x)  # a pure function of (seed, epoch, index)
        ds.set_epoch(1)
        assert not np.array_equal(ds[3][0], x)


def test_test_protocol_clips(motion_data):
    shards, items = _items(motion_data, "test")
    np.testing.assert_array_equal(evenly_spaced(100, 4), [12, 37, 62, 87])
    assert len(set(evenly_spaced(200, 25))) == 25 and evenly_spaced(200, 25).max() < 200
    cfg = DataConfig(stream="temporal", flow_length=4, crop_size=32, test_frames=25, test_crops=10)
    ds = EvalClips(shards, items, cfg)
    assert len(ds) == 25 * len(items)
    x, v, y = ds[26]
    assert x.shape == (10, 8, 32, 32) and v == 1 and y == items[1].label
    np.testing.assert_array_equal(x[5:], np.stack([T.flip_stack(c) for c in x[:5].numpy()]))  # 5 crops + flips
    rgb = EvalClips(shards, items, DataConfig(stream="spatial", crop_size=32, test_crops=1))[0][0]
    assert rgb.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="--crop-size"):
        EvalClips(shards, items, DataConfig(crop_size=64))[0]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("mean_subtract", [False, True])
def test_fast_crop_path_equals_the_reference_path(motion_data, flip, mean_subtract):
    """The training hot path (decode -> crop -> table into the output) gives the reference path's stack."""
    from flowprep.loading.clips import read_flow_crop
    shards, items = _items(motion_data)
    item = items[0]
    cfg = DataConfig(stream="temporal", flow_length=4, crop_size=32, mean_subtract=mean_subtract)
    for start, box in ((0, T.Box(3, 5, 32, 32)), (item.flows - 2, T.Box(0, 0, 32, 32))):  # the 2nd repeats flows
        ref = T.crop_flow(read_flow(shards, item, start, cfg, box), T.Box(0, 0, 32, 32), 32, flip)
        fast = read_flow_crop(shards, item, start, cfg, box, flip)
        assert fast.shape == ref.shape == (8, 32, 32)
        np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-5 if mean_subtract else 0)


@pytest.mark.parametrize("workers", [0, 1])
def test_compact_batches_rebuild_the_samples_bit_for_bit(motion_data, workers):
    """Temporal batches travel as uint8 codes + tables and become, on the device, exactly the float samples."""

    from flowprep.loading.augment import gather_planes, to_pixels
    from flowprep.loading.loader import make_loader
    shards, items = _items(motion_data)
    cfg = DataConfig(stream="temporal", flow_length=4, crop_size=32, mean_subtract=True, seed=3)
    compact = TrainClips(shards, items, cfg, compact=True)
    compact.set_epoch(2)
    plain = TrainClips(shards, items, cfg)
    plain.set_epoch(2)
    order = [5, 0, 7, 3, 9, 1]
    batches = list(make_loader(compact, workers, batch_size=3, sampler=order))
    assert len(batches) == 2
    flips, x = 0, None
    for j, ((codes, tables), labels, tasks) in enumerate(batches):
        assert codes.dtype == torch.uint8 and codes.shape == (3, 8, 32, 32) and tables.shape == (3, 8, 256)
        assert codes.is_shared() == tables.is_shared() == (workers > 0)  # a worker's batch is sent as a handle
        previous = x
        x = to_pixels((codes, tables), torch.device("cpu"), out=previous)
        if previous is not None:  # the previous batch's buffer is reused, not reallocated
            assert x.data_ptr() == previous.data_ptr()
        assert torch.equal(gather_planes(codes, tables), x)  # the GPU's lookup is the same lookup
        for b, i in enumerate(order[3 * j:3 * j + 3]):
            ref, label, task = plain[i]
            assert torch.equal(x[b], ref), i
            assert (int(labels[b]), int(tasks[b])) == (label, task)
            flips += bool(tables[b, 0, 200] < tables[b, 0, 50])  # a flipped sample's x table is negated
    assert 0 < flips < 6  # both kinds were compared
    spatial = TrainClips(shards, items, DataConfig(stream="spatial", crop_size=32), compact=True)
    assert not spatial.compact  # RGB stays float


_FORK_SCRIPT = r'''
import cv2, numpy as np, torch
from torch.utils.data import DataLoader, Dataset
from flowprep.loading.loader import make_loader, prepare_workers, worker_init

class Decode(Dataset):  # what a loader worker does: JPEG decode and resize with OpenCV
    def __len__(self):
        return 4
    def __getitem__(self, i):
        ok, buf = cv2.imencode(".jpg", np.full((256, 340), i, np.uint8))
        return torch.from_numpy(cv2.resize(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), (224, 224)))

threads = 4  # whatever the machine's cores: a count make_loader must give back
cv2.setNumThreads(threads)
for epoch in range(4):  # the parent uses OpenCV's thread pool, then forks new workers every epoch
    cv2.GaussianBlur(np.zeros((240, 320), np.uint8), (0, 0), 2.0)  # runs on the pool's threads
    prepare_workers(1)
    assert sum(b.shape[0] for b in DataLoader(Decode(), batch_size=2, num_workers=1, worker_init_fn=worker_init)) == 4
cv2.setNumThreads(threads)
for epoch in range(4):  # make_loader: the same, and the parent's thread count given back after each fork
    cv2.GaussianBlur(np.zeros((240, 320), np.uint8), (0, 0), 2.0)
    assert sum(b.shape[0] for b in make_loader(Decode(), 1, batch_size=2)) == 4
    assert cv2.getNumThreads() == threads > 1, cv2.getNumThreads()
print("ok")
'''


def test_loader_workers_do_not_deadlock_after_the_parent_used_opencv_threads() -> None:
    """Regression: cv2.setNumThreads in a forked worker hung (OpenCV's pthreads pool is not fork-safe). And
    make_loader left the caller's OpenCV on one thread for good (README: no process-wide setting changed)."""
    import subprocess
    import sys
    try:
        r = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a DataLoader worker deadlocked after the parent had used OpenCV's thread pool")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


class _WhoRead(torch.utils.data.Dataset):
    """Reads a sample, then reports which process did and which process the reader's HDF5 handles belong to."""

    def __init__(self, clips: TrainClips):
        self.clips = clips

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        import os
        self.clips[i]
        shards = self.clips.sources[0]
        return os.getpid(), shards._pid, len(shards._files)


def test_hdf5_files_are_opened_in_each_worker_not_before_the_fork(motion_data):
    import os

    from torch.utils.data import DataLoader

    from flowprep.loading.loader import prepare_workers
    shards, items = _items(motion_data)
    assert not shards._files  # load_items closes what it opened: no handle is open at the fork
    clips = TrainClips(shards, items, DataConfig(stream="temporal", flow_length=4, crop_size=32))
    clips[0]
    assert shards._files and shards._pid == os.getpid()  # the parent now holds its own handle
    prepare_workers(1)
    rows = list(DataLoader(_WhoRead(clips), batch_size=None, num_workers=1))
    for pid, owner, files in rows:
        assert pid != os.getpid() and owner == pid and files == 1  # the worker opened its own file


def test_to_pixels_reuses_out_only_when_it_fits():
    from flowprep.loading.augment import to_pixels
    codes = torch.randint(0, 256, (2, 4, 5, 5), dtype=torch.uint8)
    tables = torch.randn(2, 4, 256)
    fresh = to_pixels((codes, tables), torch.device("cpu"))
    same = torch.full((2, 4, 5, 5), 7.0)
    assert to_pixels((codes, tables), torch.device("cpu"), out=same) is same and torch.equal(same, fresh)
    smaller = torch.zeros(1, 4, 5, 5)  # e.g. the last, shorter batch's buffer: not used
    out = to_pixels((codes, tables), torch.device("cpu"), out=smaller)
    assert out is not smaller and torch.equal(out, fresh) and not smaller.any()
    assert to_pixels((codes, tables), torch.device("cpu"), out=torch.zeros(2, 4, 5, 5, dtype=torch.float64)) \
        .dtype == torch.float32


def _twelve_bit_shards(root):
    """Four motion videos as a 12-bit shard (its settings say so, as `flowprep extract --bits 12` writes them)."""
    from flowprep.codecs.quantize import QuantConfig
    from flowprep.store.format import shard_name
    from flowprep.store.writer import ShardWriter

    from twostream_synth import make_record, motion_video
    rng = np.random.default_rng(5)
    recs = []
    q = QuantConfig("fixed", 20.0, 12)
    for i in range(4):
        video, flow = motion_video(rng, i % 4, 12, 48)
        recs.append(make_record(f"C{i % 4}/v{i}", video, flow, quant=q))
    with ShardWriter(root / shard_name(0), {"quantization": q.to_dict()}) as w:
        for r in recs:
            w.add(r)
    return open_shards(root)


@pytest.mark.parametrize("workers", [0, 1])
def test_trainer_reads_12_bit_shards_bit_for_bit_in_compact_batches(tmp_path, workers):
    """12-bit shards: uint16 codes + 4096-entry tables, equal to the float samples and to flowprep's flow."""
    pytest.importorskip("imagecodecs")

    from flowprep.loading.augment import gather_planes, to_pixels
    from flowprep.loading.clips import read_flow
    from flowprep.loading.loader import make_loader
    shards = _twelve_bit_shards(tmp_path)
    items = load_items(shards, [(k, 0) for k in shards.keys()])
    cfg = DataConfig(stream="temporal", flow_length=4, crop_size=32, mean_subtract=True, seed=1)
    compact, plain = TrainClips(shards, items, cfg, compact=True), TrainClips(shards, items, cfg)
    assert compact.code_format == (np.uint16, 4096)
    batches = list(make_loader(compact, workers, batch_size=2, sampler=[0, 1, 2, 3]))
    for j, ((codes, tables), _, _) in enumerate(batches):
        assert codes.dtype == torch.uint16 and tables.shape == (2, 8, 4096)
        x = to_pixels((codes, tables), torch.device("cpu"))
        assert torch.equal(gather_planes(codes.view(torch.int16), tables), x)
        for b in range(2):
            assert torch.equal(x[b], plain[2 * j + b][0])
    # and the float path rebuilds the stored flow (the trainer's pixels are flowprep's dequantized flow)
    flow = read_flow(shards, items[0], 0, DataConfig(stream="temporal", flow_length=4, mean_subtract=False),
                     T.Box(0, 0, 48, 48))
    np.testing.assert_array_equal(flow, shards.flow(items[0].key, range(4)))


def test_videos_shorter_than_a_stack_are_said_once_when_the_dataset_is_built(motion_data, caplog):
    """A stack longer than a video repeats its last flow (as TSN's loaders do); it did so silently."""
    shards, items = _items(motion_data)  # 12 frames: 11 flows each
    with caplog.at_level("WARNING", logger="flowprep"):
        TrainClips(shards, items, DataConfig(stream="temporal", flow_length=11, crop_size=32))
        TrainClips(shards, items, DataConfig(stream="spatial", flow_length=12, crop_size=32))
        assert not caplog.records
        EvalClips(shards, items[:3], DataConfig(stream="temporal", flow_length=12, crop_size=32))
    assert len(caplog.records) == 1
    assert f"3 of 3 videos hold fewer than L = 12 flows (e.g. {items[0].key}: 11)" in caplog.text
    assert "--flow-length" in caplog.text


def test_a_worker_stays_quiet_when_its_parent_stops_mid_transfer(capsys):
    """multiprocessing's resource_sharer thread printed a BrokenPipe traceback under a stopped fit's interrupt
    line; the worker's hook drops a lost parent's connection errors and prints anything else."""
    import sys

    from flowprep.loading.loader import worker_init

    before = sys.excepthook
    try:
        worker_init(0)
        for err in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(), EOFError()):
            sys.excepthook(type(err), err, None)
        assert capsys.readouterr().err == ""
        sys.excepthook(ValueError, ValueError("a real error"), None)
        assert "ValueError: a real error" in capsys.readouterr().err
    finally:
        sys.excepthook = before
