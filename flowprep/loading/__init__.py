"""The read side: shards -> PyTorch samples, for the trainer here and for anyone's training loop.

The store's ``ShardSet`` returns what the shards hold (JPEG codes and each flow's quantization parameters);
this layer turns them into network input. Modules, one job each:

* ``augment``: every change to a sample's pixels: crops, flips, colour jitter, mean subtraction, and the
  code -> pixel tables and their lookup (numpy on the CPU, ``torch.gather`` on CUDA: ``to_pixels``);
* ``stacking``: how L flows become 2L channels (optical flow, trajectory or bi-directional stacking);
* ``clips``: the PyTorch datasets: ``TrainClips`` (one random crop per video per visit) and ``EvalClips`` (the
  paper's 25 frames x 10 crops), with ``DataConfig`` (the paper's values by default) and ``load_items``;
* ``loader``: ``make_loader``, the DataLoader over them (whole batches, OpenCV on one thread per worker);
* ``sampling``: which videos an epoch visits: the paper's class-balanced draw (``ClassBalancedSampler``), and
  ``DistinctDraws`` for any sampler that draws a video more than once an epoch (each draw its own crop and flip).

A plain loop over temporal stacks (README, "Your own training loop", has it with Lightning too)::

    import torch

    from flowprep.loading import DataConfig, TrainClips, load_items, make_loader, to_pixels
    from flowprep.store.reader import ShardSet

    shards = ShardSet("runs/demo/shards")  # the demo's frames are 64 x 64: crops of 56
    items = load_items(shards, [(key, 0) for key in shards.keys()])
    clips = TrainClips(shards, items, DataConfig(stream="temporal", flow_length=10, crop_size=56), compact=True)
    for x, label, _task in make_loader(clips, batch_size=8, shuffle=True):
        x = to_pixels(x, torch.device("cpu"))  # (8, 20, 56, 56) float32 flow in pixels
"""
from __future__ import annotations

from flowprep.loading.augment import to_pixels
from flowprep.loading.clips import DataConfig, EvalClips, TrainClips, VideoItem, load_items
from flowprep.loading.loader import make_loader
from flowprep.loading.sampling import ClassBalancedSampler, DistinctDraws

__all__ = ["ClassBalancedSampler", "DataConfig", "DistinctDraws", "EvalClips", "TrainClips", "VideoItem", "load_items",
           "make_loader", "to_pixels"]
