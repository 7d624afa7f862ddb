"""The read side's pixels: code -> pixel tables and their lookup equal the formula bit for bit, and a flow sample
is the stored flow cropped, flipped and mean-subtracted."""
from __future__ import annotations

import numpy as np
import pytest

from flowprep.codecs.quantize import dequant_tables, dequantize_flow
from flowprep.loading.augment import flip_tables, flow_sample, lookup_planes
from flowprep.store import format as F
from flowprep.store.reader import open_shards
from flowprep.store.record import VideoRecord
from flowprep.store.writer import ShardWriter

from twostream_synth import make_record, motion_video


@pytest.fixture
def folder(tmp_path):
    """Two shards: Move/v_0 (8 frames of 40 x 40) and Move/v_1 stored, Move/v_2 failed."""
    rng = np.random.default_rng(2)
    ok = [make_record(f"Move/v_{i}", *motion_video(rng, i % 3, 8, 40)) for i in range(2)]
    for n, recs in enumerate([[ok[0], VideoRecord.failed("Move/v_2", "/x/v_2.avi", "failed")], [ok[1]]]):
        with ShardWriter(tmp_path / F.shard_name(n), {"quantization": {"mode": "fixed", "bound": 20.0}}) as w:
            for r in recs:
                w.add(r)
    return tmp_path


@pytest.mark.parametrize("dtype,levels", [(np.uint8, 256), (np.uint16, 4096)])
def test_table_lookup_is_bit_identical_to_dequantize_flow(dtype, levels):
    """What the trainer's fast path does (a table per field, looked up) equals the formula, bit for bit."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, levels, (3, 2, 50, 60)).astype(dtype)[..., 5:40, 7:50]  # a non-contiguous crop
    params = np.dstack([rng.uniform(0.01, 0.3, (3, 2)), rng.uniform(0, levels - 1, (3, 2))])  # (scale, zero)
    out = np.empty(codes.shape, np.float32)
    np.testing.assert_array_equal(lookup_planes(codes, dequant_tables(params, levels=levels), out),
                                  dequantize_flow(codes, params))
    flipped = flip_tables(dequant_tables(params, levels=levels), True)
    np.testing.assert_array_equal(flipped[:, 0], -dequant_tables(params, levels=levels)[:, 0])
    np.testing.assert_array_equal(flipped[:, 1], dequant_tables(params, levels=levels)[:, 1])


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("mean_subtract", [False, True])
def test_flow_samples_are_the_stored_flow_cropped_flipped_and_mean_subtracted(folder, flip, mean_subtract):
    s = open_shards(folder)
    idx = [1, 2, 2]  # repeats happen (short videos repeat their last flow)
    full = dequantize_flow(*s.flow_codes("Move/v_0", idx))  # (3, 2, 40, 40): the formula
    want = full - full.mean(axis=(2, 3), keepdims=True) if mean_subtract else full
    want = want[..., 5:29, 3:27]
    if flip:
        want = want[..., ::-1].copy()
        want[:, 0] = -want[:, 0]
    got = flow_sample(s, "Move/v_0", idx, (5, 3, 24, 24), flip, mean_subtract)
    assert got.codes.dtype == np.uint8 and got.codes.shape == (6, 24, 24) and got.tables.shape == (6, 256)
    np.testing.assert_allclose(got.pixels(), want.reshape(6, 24, 24), rtol=0, atol=1e-5 if mean_subtract else 0)
    whole = flow_sample(s, "Move/v_0", [0, 1])  # no box: whole fields, bit for bit the reader's flow
    np.testing.assert_array_equal(whole.pixels().reshape(2, 2, 40, 40), s.flow("Move/v_0", [0, 1]))
    codes, tables = np.empty((6, 24, 24), np.uint16), np.empty((6, 4096), np.float32)  # 8-bit into a 12-bit batch
    flow_sample(s, "Move/v_0", idx, (5, 3, 24, 24), flip, mean_subtract, codes=codes, tables=tables)
    np.testing.assert_array_equal(np.take_along_axis(tables, codes.reshape(6, -1).astype(np.int64), 1),
                                  got.pixels().reshape(6, -1))
