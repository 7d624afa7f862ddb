"""Quantization: zero maps to 128, round trips within half a step, clipping is counted, JPEG adds little."""
import numpy as np
import pytest

from flowprep.codecs.jpeg import decode_gray, encode_gray
from flowprep.codecs.quantize import QuantConfig, dequantize_flow, quantize_flow


def test_zero_flow_is_code_128_and_rebuilds_exactly_zero():
    codes, params, clipped = quantize_flow(np.zeros((1, 2, 4, 4), np.float32), QuantConfig("fixed", 20))
    assert (codes == 128).all()
    assert (dequantize_flow(codes, params) == 0).all()
    assert clipped.tolist() == [0]


@pytest.mark.parametrize("bound", [10.0, 20.0, 30.0])
def test_fixed_round_trip_within_half_step(bound):
    rng = np.random.default_rng(0)
    flow = rng.uniform(-bound, bound, (3, 2, 16, 16)).astype(np.float32)
    codes, params, clipped = quantize_flow(flow, QuantConfig("fixed", bound))
    err = np.abs(dequantize_flow(codes, params) - flow)
    step = 2 * bound / 255
    assert err.max() <= step / 2 + 1e-5
    assert clipped.sum() == 0


def test_fixed_clips_and_counts_vectors_beyond_the_bound():
    flow = np.zeros((2, 2, 4, 4), np.float32)
    flow[0, 0, 0, :3] = 25.0  # 3 vectors with |dx| > 20
    flow[0, 1, 0, 0] = -30.0  # same vector as one above: counted once
    flow[1, 1, 1, 1] = 19.9  # inside
    codes, params, clipped = quantize_flow(flow, QuantConfig("fixed", 20))
    assert clipped.tolist() == [3, 0]
    rebuilt = dequantize_flow(codes, params)
    assert abs(rebuilt[0, 0, 0, 0] - 20) <= 20 / 255 + 1e-5
    assert abs(rebuilt[0, 1, 0, 0] + 20) <= 20 / 255 + 1e-5


def test_adaptive_never_clips_and_is_exact_to_half_its_own_step():
    rng = np.random.default_rng(1)
    flow = (rng.standard_normal((2, 2, 8, 8)) * np.array([50, 0.5])[None, :, None, None]).astype(np.float32)
    codes, params, clipped = quantize_flow(flow, QuantConfig("adaptive"))
    rebuilt = dequantize_flow(codes, params)
    assert clipped.sum() == 0
    for t in range(2):
        for c in range(2):
            step = (flow[t, c].max() - flow[t, c].min()) / 255
            assert np.abs(rebuilt[t, c] - flow[t, c]).max() <= step / 2 + 1e-4
    assert codes.min() == 0 and codes.max() == 255  # the whole code range is used


def test_adaptive_constant_field_is_kept():
    flow = np.full((1, 2, 4, 4), 3.25, np.float32)
    codes, params, _ = quantize_flow(flow, QuantConfig("adaptive"))
    assert np.allclose(dequantize_flow(codes, params), 3.25, atol=1e-5)


def test_jpeg_q95_round_trip_stays_within_one_step_on_smooth_flow():
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    flow = np.stack([np.sin(xx / 9) * 8, np.cos(yy / 7) * 5])[None]
    codes, params, _ = quantize_flow(flow, QuantConfig("fixed", 20))
    back = np.stack([decode_gray(encode_gray(c, 95)) for c in codes[0]])[None]
    err = np.abs(dequantize_flow(back, params) - flow)
    step = 40 / 255
    assert err.mean() < step  # JPEG q95 adds well under a code on smooth fields
    assert err.max() < 4 * step


def test_bad_configs_say_what_is_allowed():
    with pytest.raises(ValueError, match="fixed, adaptive"):
        QuantConfig("log")
    with pytest.raises(ValueError, match="> 0"):
        QuantConfig("fixed", 0)
    with pytest.raises(ValueError, match=r"\(T, 2, H, W\)"):
        quantize_flow(np.zeros((2, 4, 4)), QuantConfig())


def test_nan_or_infinite_flow_is_refused_not_cast_to_a_code():
    flow = np.zeros((2, 2, 4, 4), dtype=np.float32)
    flow[1, 0, 2, 2], flow[0, 1, 0, 0] = np.nan, np.inf
    for mode in ("fixed", "adaptive"):
        with pytest.raises(ValueError, match="2 NaN or infinite values"):
            quantize_flow(flow, QuantConfig(mode=mode))
