"""The trainer on CUDA (skipped without it; benchmarks/gpu_check.sh runs them): the device-side lookup of
compact flow batches equals the CPU's, and a training step with AMP gives a finite loss."""
from __future__ import annotations

import pytest
import torch

from flowprep.loading.augment import to_pixels
from flowprep.loading.clips import DataConfig, TrainClips, load_items
from flowprep.loading.loader import make_loader
from train.engine import train_one_epoch
from train.models import build_model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _batches(motion_data, n: int = 2):
    from flowprep.store.reader import open_shards

    shards = open_shards(motion_data.shards)
    items = load_items(shards, [(k, i % 4) for i, k in enumerate(shards.keys()[:8])])
    data = TrainClips(shards, items, DataConfig(stream="temporal", flow_length=4, crop_size=32), compact=True)
    loader = make_loader(data, batch_size=4, sampler=range(8))
    return list(loader)[:n]


@pytest.mark.gpu
@needs_cuda
def test_the_device_side_lookup_equals_the_cpus(motion_data):
    for (codes, tables), _, _ in _batches(motion_data):
        cpu = to_pixels((codes, tables), torch.device("cpu"))
        gpu = to_pixels((codes, tables), torch.device("cuda"))
        assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)


@pytest.mark.gpu
@needs_cuda
def test_an_amp_training_step_on_cuda_is_finite(motion_data):
    device = torch.device("cuda")
    model = build_model("tiny", [4], 8, 32, 0.0, True).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 10)
    scaler = torch.amp.GradScaler("cuda", enabled=True)
    row = train_one_epoch(model, _batches(motion_data), opt, sched, scaler, device, 0, progress=False)
    assert row["samples"] == 8 and torch.isfinite(torch.tensor(row["train_loss"]))
