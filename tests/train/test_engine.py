"""Training: the loss falls, resume is bit-exact on the CPU, and 2-process gloo DDP matches one process."""
from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from train import evaluate
from train import fit as train_mod
from train.config import FitConfig, TaskSpec
from train.engine import load_checkpoint
from train.fit import fit


def _cfg(motion_data, out, **kw) -> FitConfig:
    base = dict(shards=str(motion_data.shards), split_dir=str(motion_data.split_dir), stream="temporal", arch="tiny",
                crop_size=40, flow_length=4, batch_size=8, lr=0.05, dropout=0.0, num_workers=0, val_frames=0,
                progress=False, out=str(out), milestones=(0.8,), device="cpu")
    return FitConfig(**{**base, **kw})


def test_a_few_steps_make_the_loss_fall(motion_data, tmp_path):
    fit(_cfg(motion_data, tmp_path, epochs=10, val_frames=1, val_every=4, lr=0.1))
    log = json.loads((tmp_path / "metrics.json").read_text())["epochs"]
    assert len(log) == 10 and log[0]["samples"] == 32
    assert [i for i, r in enumerate(log) if "val_clip_top1" in r] == [3, 7, 9]  # every 4th epoch and the last
    assert log[-1]["train_loss"] < 0.5 * log[0]["train_loss"]
    assert log[-1]["val_clip_top1"] > 0.5  # chance is 0.25
    assert log[-1]["lr"] == pytest.approx(0.01)  # the step schedule dropped the rate 10x at 80% of the run
    assert log[7]["lr"] == pytest.approx(0.1)  # its steps 29-32 trained at 0.1: the drop comes after step 32
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    assert {"best.pt", "checkpoint.pt", "metrics.json"} <= set(os.listdir(tmp_path))


def test_resume_continues_bit_exactly(motion_data, tmp_path, monkeypatch):
    """2 epochs straight vs a run killed during its 2nd epoch and resumed: identical weights, momentum, log.

    Dropout is on (its RNG state is restored), sampling is class-balanced (the sampler's seed and epoch are
    restored) and 1 DataLoader worker reads (samples are seeded by (seed, epoch, index)).
    """
    kw = dict(dropout=0.5, num_workers=1, epochs=2, lr=0.05, balanced=True)
    fit(_cfg(motion_data, tmp_path / "straight", **kw))
    real = train_mod.train_one_epoch

    def killed_in_epoch_1(*args, **kwargs):
        if args[6] == 1:
            raise KeyboardInterrupt  # as if the job were killed during the second epoch
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", killed_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(motion_data, tmp_path / "split", **kw))
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 0
    with pytest.raises(ValueError, match="other settings"):
        fit(_cfg(motion_data, tmp_path / "split", **{**kw, "arch": "resnet18",
                                                     "resume": str(tmp_path / "split" / "checkpoint.pt")}))
    fit(_cfg(motion_data, tmp_path / "split", **kw, resume=str(tmp_path / "split" / "checkpoint.pt")))
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 1
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_compact_batches_train_exactly_like_float_batches(motion_data, tmp_path, monkeypatch):
    """fit's uint8-code batches, looked up into the previous batch's buffer (to_pixels' ``out``), give the same
    weights as float batches: the buffer is only overwritten once the previous step is done with it."""
    kw = dict(dropout=0.5, num_workers=1, epochs=1, lr=0.05)  # 32 samples: 4 batches of one shape
    fit(_cfg(motion_data, tmp_path / "compact", **kw))
    real = train_mod.TrainClips
    monkeypatch.setattr(train_mod, "TrainClips", lambda *a, compact=False: real(*a, compact=False))
    fit(_cfg(motion_data, tmp_path / "float", **kw))
    a = load_checkpoint(tmp_path / "compact" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "float" / "checkpoint.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: FitConfig) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from train.distributed import cleanup
    try:
        fit(cfg)
    finally:
        cleanup()


def test_two_process_gloo_ddp_matches_one_process(motion_data, tmp_path):
    """Same global batch (8 = 2 x 4), same samples and crops; the tiny net has no batch-norm and dropout is off,
    so the only difference is float summation order: weights agree within 1e-5 (absolute) after 8 steps."""
    single = _cfg(motion_data, tmp_path / "one", epochs=2)
    torch.set_num_threads(1)
    fit(single)
    ddp = _cfg(motion_data, tmp_path / "two", epochs=2, val_frames=1)
    # fork, not spawn: the children inherit the imported modules instead of importing torch again (seconds each)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), ddp), nprocs=2, join=True, start_method="fork")
    a = load_checkpoint(tmp_path / "one" / "best.pt")
    b = load_checkpoint(tmp_path / "two" / "best.pt")
    assert b["history"][-1]["samples"] == a["history"][-1]["samples"] == 32  # both ranks counted
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-5)
    assert abs(a["history"][-1]["train_loss"] - b["history"][-1]["train_loss"]) < 1e-5


def test_multi_task_ddp_matches_one_process_even_when_a_rank_lacks_a_task(motion_data, tmp_path):
    """Under torchrun, a rank whose batch held no sample of one task left that head without a gradient, and DDP
    stopped the run ("Expected to have finished reduction..."); where both were present, each rank's per-task
    mean weighted the samples otherwise than one process's mean over the global batch. Batches of 4 (2 a rank)
    over two datasets: ranks often lack a task."""
    also = (TaskSpec("ucf101", str(motion_data.shards), str(motion_data.split_dir)),)
    torch.set_num_threads(1)
    fit(_cfg(motion_data, tmp_path / "one", epochs=1, batch_size=4, also=also))
    ddp = _cfg(motion_data, tmp_path / "two", epochs=1, batch_size=4, also=also)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), ddp), nprocs=2, join=True, start_method="fork")
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-5)
    assert abs(a["history"][-1]["train_loss"] - b["history"][-1]["train_loss"]) < 1e-5


def test_multitask_run_has_one_head_per_dataset(motion_data, tmp_path):
    also = (TaskSpec("ucf101", str(motion_data.shards), str(motion_data.split_dir)),)
    fit(_cfg(motion_data, tmp_path, epochs=1, also=also))
    ck = load_checkpoint(tmp_path / "best.pt")
    assert ck["model"]["heads.0.weight"].shape[0] == ck["model"]["heads.1.weight"].shape[0] == 4
    assert ck["history"][0]["samples"] == 64  # both datasets' videos
    # each task is scored through its own head: the second dataset's scores come from heads.1, not heads.0
    common = dict(checkpoint=str(tmp_path / "best.pt"), frames=2, crops=1, num_workers=0, device="cpu",
                  progress=False)
    evaluate.test(evaluate.TestConfig(**common))
    evaluate.test(evaluate.TestConfig(**common, task=1))
    with np.load(tmp_path / "scores.npz") as a, np.load(tmp_path / "scores_task1.npz") as b:
        assert a["scores"].shape == b["scores"].shape == (len(a["labels"]), 4)
        assert not np.allclose(a["scores"], b["scores"])  # two heads, two sets of weights
    assert json.loads((tmp_path / "test_metrics_task1.json").read_text())["task"] == 1
    with pytest.raises(ValueError, match="2 task"):
        evaluate.test(evaluate.TestConfig(**common, task=2))


def _ddp_test_worker(rank: int, world: int, port: int, cfg) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from train.distributed import cleanup
    try:
        evaluate.test(cfg)
    finally:
        cleanup()


def test_two_process_test_drops_the_samplers_padding(motion_data, tmp_path):
    """5 test videos x 3 positions = 15 items on 2 ranks: DistributedSampler pads to 16 (one item twice); the
    gathered scores must be the single process's, one row per video, nothing counted twice."""
    import shutil
    split = tmp_path / "splits"
    shutil.copytree(motion_data.split_dir, split)
    lines = (split / "testlist01.txt").read_bytes().split(b"\r\n")
    (split / "testlist01.txt").write_bytes(b"\r\n".join(lines[:5]) + b"\r\n")
    fit(_cfg(motion_data, tmp_path / "run", epochs=1, split_dir=str(split)))
    common = dict(checkpoint=str(tmp_path / "run" / "best.pt"), frames=3, crops=2, num_workers=0, device="cpu",
                  progress=False)
    one = evaluate.test(evaluate.TestConfig(**common, out=str(tmp_path / "one")))
    two = evaluate.TestConfig(**common, out=str(tmp_path / "two"))
    mp.start_processes(_ddp_test_worker, args=(2, _free_port(), two), nprocs=2, join=True, start_method="fork")
    with np.load(tmp_path / "one" / "scores.npz") as a, np.load(tmp_path / "two" / "scores.npz") as b:
        assert a["scores"].shape == b["scores"].shape == (5, 4)
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=0, atol=1e-6)
        assert list(a["videos"]) == list(b["videos"])
    two = json.loads((tmp_path / "two" / "test_metrics.json").read_text())
    assert two["videos"] == one["videos"] == 5 and two["top1"] == one["top1"]
