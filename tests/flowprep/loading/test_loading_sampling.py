"""Which videos an epoch visits: class-balanced draws, and a video drawn again being a new sample."""
from __future__ import annotations

from collections import Counter
from itertools import combinations

import torch
from test_loading_clips import _items

from flowprep.loading import ClassBalancedSampler, DataConfig, DistinctDraws, TrainClips
from flowprep.loading.sampling import distinct_draws


def test_class_balanced_sampler_is_uniform_over_classes():
    labels = [0] * 90 + [1] * 9 + [2] * 1
    s = ClassBalancedSampler(labels, seed=3)
    counts = Counter(labels[i % 100] for e in range(30) for i in (s.set_epoch(e) or list(s)))
    assert all(abs(c / 3000 - 1 / 3) < 0.04 for c in counts.values()) and len(counts) == 3
    ranks = [ClassBalancedSampler(labels, 2, r, seed=3) for r in range(2)]
    together = list(ranks[0]) + list(ranks[1])
    assert sorted(together) == sorted(list(s.__class__(labels, 1, 0, seed=3)))
    assert len(set(together)) == len(together)  # a video's draws are told apart over all ranks, not per rank


def test_a_video_drawn_again_is_a_new_sample_not_the_first_one_again(motion_data):
    """Each sample's crop, flip and stack start came from (seed, epoch, video index): a class-balanced epoch that
    drew the rare class's one video many times trained on that one sample many times (half the demo's Table 2
    draws were such copies)."""
    shards, items = _items(motion_data)
    n = len(items)
    labels = [0] * (n - 1) + [1]  # the last video is its class: about half the draws
    draws = list(ClassBalancedSampler(labels, seed=0))
    last = [i for i in draws if i % n == n - 1]
    assert len(last) >= 3 and len(set(last)) == len(last)
    cfg = DataConfig(stream="spatial", crop_size=32, rgb_jitter=0.0)  # textured frames (the flow is one shift)
    clips = TrainClips(shards, items, cfg)
    samples = [clips[i] for i in last]
    assert all(s[1] == items[-1].label for s in samples)  # the same video ...
    assert not any(torch.equal(a[0], b[0]) for a, b in combinations(samples, 2))  # ... a new crop, flip or start
    first = TrainClips(shards, items, cfg)
    assert torch.equal(first[last[0]][0], samples[0][0])  # still a pure function of the index


def test_distinct_draws_numbers_each_repeat_and_wraps_any_sampler():
    assert distinct_draws([2, 0, 2, 2, 1, 0], 3) == [2, 0, 5, 8, 1, 3]
    weighted = torch.utils.data.WeightedRandomSampler([0.0, 1.0, 0.0], 4)  # video 1, four times
    wrapped = DistinctDraws(weighted, 3)
    assert len(wrapped) == 4 and list(wrapped) == [1, 4, 7, 10]


def test_the_shuffled_sampler_is_torchs_order_with_the_paddings_repeats_drawn_anew():
    """DistributedSampler pads an epoch to a multiple of the ranks with its first indices: those videos fell on two
    ranks as the same sample. The order is torch's (a single-process run trains as it did)."""
    from torch.utils.data import DistributedSampler

    from flowprep.loading.sampling import ShuffledSampler

    n = 7
    for epoch in (0, 3):
        ranks = [ShuffledSampler(n, 3, r, seed=5) for r in range(3)]
        theirs = [DistributedSampler(range(n), num_replicas=3, rank=r, shuffle=True, seed=5) for r in range(3)]
        for s in ranks + theirs:
            s.set_epoch(epoch)
        ours = [list(s) for s in ranks]
        assert [[i % n for i in o] for o in ours] == [list(t) for t in theirs]  # the same videos, rank by rank
        flat = [i for o in ours for i in o]
        assert len(flat) == 9 and len(set(flat)) == 9  # the two padded draws are draws of their own
    one = ShuffledSampler(n, seed=5)
    assert list(one) == list(DistributedSampler(range(n), num_replicas=1, rank=0, shuffle=True, seed=5))


def test_distinct_draws_differ_across_ranks_too():
    """Two ranks whose own samplers drew one video got the same index, so the same crop, in one global batch."""
    ranks = [list(DistinctDraws([9, 9, 3], 10, num_replicas=2, rank=r)) for r in range(2)]
    assert ranks == [[9, 29, 3], [19, 39, 13]]
    assert len(set(ranks[0] + ranks[1])) == 6 and {i % 10 for i in ranks[0] + ranks[1]} == {9, 3}


def test_the_balanced_sampler_takes_any_sortable_labels_and_groups_as_before():
    """Its groups came from one stable sort since it compared every label with every class (18 s at 650,000
    videos); np.diff on class names then raised numpy's UFuncTypeError."""
    import numpy as np

    from flowprep.loading.sampling import ClassBalancedSampler

    assert [g.tolist() for g in ClassBalancedSampler(["b", "a", "b", "c"]).by_class] == [[1], [0, 2], [3]]
    labels = list(np.random.default_rng(0).integers(50, size=2000))
    want = [np.flatnonzero(np.asarray(labels) == c).tolist() for c in sorted(set(labels))]
    assert [g.tolist() for g in ClassBalancedSampler(labels).by_class] == want
    assert ClassBalancedSampler([]).by_class == []
