"""12-bit flow codes: quantization, 12-bit JPEG through imagecodecs, extraction, the quality grid (the trainer's
side is in tests/flowprep/loading/test_loading_clips.py); the 8-bit format, and the identity of older folders,
unchanged."""
from __future__ import annotations

import builtins

import cv2
import numpy as np
import pytest

import flowprep
from flowprep.cli.extract import add_arguments, config_from_args
from flowprep.codecs.jpeg import decode_gray, encode_gray, precision
from flowprep.codecs.quantize import QuantConfig, dequantize_flow, quantize_flow
from flowprep.datasets.listing import list_videos
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig
from flowprep.quality.compression import Setting, evaluate_setting, recommend, settings_grid
from flowprep.runners.local import LocalRunner
from flowprep.solvers import SolverConfig, make_solver

pytest.importorskip("imagecodecs")
STEP12 = 40 / 4095  # one 12-bit step at bound 20


def smooth_field(rng: np.random.Generator, h: int = 48, w: int = 64, amp: float = 4.0) -> np.ndarray:
    f = np.stack([cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 6) for _ in range(2)])
    return (f / np.abs(f).max() * amp).astype(np.float32)


def test_12_bit_codes_have_16x_finer_steps_and_zero_stays_exact():
    flow = np.linspace(-25, 25, 2 * 8 * 9, dtype=np.float32).reshape(1, 2, 8, 9)
    codes, params, clipped = quantize_flow(flow, QuantConfig("fixed", 20, bits=12))
    assert codes.dtype == np.uint16 and codes.min() == 0 and codes.max() == 4095
    assert tuple(params[0, 0]) == (40 / 4095, 2048.0)
    inside = np.abs(flow) <= 20
    err = np.abs(dequantize_flow(codes, params) - flow)[inside]
    assert err.max() <= STEP12 / 2 + 1e-6 and clipped[0] > 0
    zero, p, _ = quantize_flow(np.zeros((1, 2, 3, 3), np.float32), QuantConfig("fixed", 20, bits=12))
    assert (zero == 2048).all() and (dequantize_flow(zero, p) == 0).all()
    a, pa, _ = quantize_flow(flow, QuantConfig("adaptive", bits=12))
    assert a.max() == 4095 and a.min() == 0
    assert np.abs(dequantize_flow(a, pa) - flow).max() <= pa[..., 0].max() / 2 + 1e-6
    with pytest.raises(ValueError, match="8 or 12 bits"):
        QuantConfig(bits=10)


def test_8_bit_identity_is_unchanged_and_bits_round_trip_through_the_settings():
    assert QuantConfig().to_dict() == {"mode": "fixed", "bound": 20.0}  # folders written before still resume
    assert QuantConfig("fixed", 15, 12).to_dict() == {"mode": "fixed", "bound": 15.0, "bits": 12}
    for q in (QuantConfig(), QuantConfig("adaptive", bits=12), QuantConfig("fixed", 15, 12)):
        assert QuantConfig.from_dict(q.to_dict()) == q


def test_12_bit_jpeg_round_trip_is_detected_from_the_data():
    rng = np.random.default_rng(0)
    codes, _, _ = quantize_flow(smooth_field(rng)[None], QuantConfig("fixed", 20, bits=12))
    jpeg = encode_gray(codes[0, 0], 90)
    assert precision(jpeg) == 12 and precision(encode_gray(np.zeros((8, 8), np.uint8), 90)) == 8
    back = decode_gray(jpeg)
    assert back.dtype == np.uint16 and back.shape == codes.shape[2:]
    assert np.abs(back.astype(int) - codes[0, 0]).mean() < 2  # q90 12-bit: within a couple of fine codes
    with pytest.raises(ValueError, match="not a decodable JPEG"):
        decode_gray(b"\xff\xd8\xff\xe0 not a jpeg")


def test_a_missing_imagecodecs_says_how_to_install_it(monkeypatch, tmp_path):
    jpeg = encode_gray(np.full((16, 16), 2048, np.uint16), 90)
    real = builtins.__import__

    def no_imagecodecs(name, *a, **k):
        if name == "imagecodecs":
            raise ImportError("No module named 'imagecodecs'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_imagecodecs)
    from flowprep.errors import FlowprepError
    with pytest.raises(FlowprepError, match="pip install imagecodecs"):  # a reader's: one line in every verb
        decode_gray(jpeg)
    with pytest.raises(FlowprepError, match="pip install imagecodecs"):  # extract says so before any work
        extract_dataset([], tmp_path / "out", ExtractConfig(quant=QuantConfig(bits=12)), show_progress=False)
    assert not (tmp_path / "out").exists()
    assert decode_gray(encode_gray(np.zeros((8, 8), np.uint8), 90)).dtype == np.uint8  # 8 bits need nothing


def test_12_bit_halves_the_error_at_about_the_bytes_of_8_bit_on_a_smooth_field():
    """The claim behind --bits 12 (the real clip's figures are in bench_quality): q50 12-bit against the
    default q95 8-bit, same bound."""
    rng = np.random.default_rng(1)
    fields = [smooth_field(rng, 96, 128) for _ in range(4)]
    eight = evaluate_setting(fields, Setting("fixed", 20.0, 95))
    twelve = evaluate_setting(fields, Setting("fixed", 20.0, 50, bits=12))
    assert twelve.epe_mean < 0.5 * eight.epe_mean
    assert twelve.bytes_per_pair < 1.5 * eight.bytes_per_pair
    assert twelve.name == "fixed-b20-q50-12bit" and twelve.to_dict()["bits"] == 12


def test_the_grid_takes_bits_and_the_recommendation_prefers_8_bit():
    grid = settings_grid([20], [50, 95], adaptive=True, bits=[8, 12])
    assert [s.name for s in grid] == ["fixed-b20-q50", "fixed-b20-q95", "fixed-b20-q50-12bit",
                                      "fixed-b20-q95-12bit", "adaptive-q50", "adaptive-q95", "adaptive-q50-12bit",
                                      "adaptive-q95-12bit"]
    rng = np.random.default_rng(2)
    fields = [smooth_field(rng)]
    results = [evaluate_setting(fields, s) for s in grid]
    cheapest_12 = min((r for r in results if r.setting.bits == 12), key=lambda r: r.bytes_per_pair)
    pick = recommend(results, epe_target=1.0)
    assert pick.setting.bits == 8  # 8-bit settings meet the target: the faster, more portable format wins
    assert recommend([cheapest_12], epe_target=1.0) is cheapest_12  # 12-bit only when nothing else meets it


def test_extract_with_bits_12_stores_12_bit_flow_closer_to_the_raw_flow(shift_dataset, tmp_path):
    import argparse
    p = argparse.ArgumentParser()
    add_arguments(p)
    config = config_from_args(p.parse_args(["--out", str(tmp_path / "x"), "--bits", "12", "--quality", "70",
                                            "--root", str(shift_dataset)]))
    assert config.quant == QuantConfig("fixed", 20.0, 12) and config.quality == 70
    videos = list_videos("ucf101", shift_dataset)[:1]
    extract_dataset(videos, tmp_path / "b12", ExtractConfig(quant=QuantConfig(bits=12)), runner=LocalRunner(1),
                    show_progress=False)
    extract_dataset(videos, tmp_path / "b8", runner=LocalRunner(1), show_progress=False)
    s12, s8 = flowprep.open_shards(tmp_path / "b12"), flowprep.open_shards(tmp_path / "b8")
    assert (s12.flow_bits, s8.flow_bits) == (12, 8)
    assert s12.settings["quantization"] == {"mode": "fixed", "bound": 20.0, "bits": 12}
    key = s12.keys()[0]
    codes, _ = s12.flow_codes(key, [0, 1])
    assert codes.dtype == np.uint16
    from flowprep.codecs.video import iter_frames, to_gray
    g = np.stack([to_gray(f) for f in iter_frames(s12.meta(key).source)])
    raw = make_solver(SolverConfig(backend="opencv", device="cpu")).compute(g[:-1], g[1:])
    err12, err8 = np.abs(s12.flow(key) - raw).mean(), np.abs(s8.flow(key) - raw).mean()
    assert err12 < 0.5 * err8


def test_quality_measures_12_bit_shards_as_stored(tmp_path, capsys):
    """`flowprep quality --shards` on a 12-bit folder: the stored flow equals re-encoding its setting, and
    `--bits 8,12` puts both kinds in the JSON."""
    import json

    from flowprep.cli import main
    from flowprep.datasets.listing import VideoTask
    from flowprep.extraction.extract import extract_chunk
    from flowprep.store.format import shard_name

    from videogen import write_shift_video
    video = tmp_path / "v_move.avi"
    write_shift_video(video, [(2, 0)] * 6, size=(96, 64), seed=3)
    out = tmp_path / "shards"
    extract_chunk([VideoTask("Move/v_move", str(video))], str(out / shard_name(0)),
                  ExtractConfig(solver=SolverConfig(algo="dis"), quant=QuantConfig(bits=12), quality=50))
    rc = main(["quality", "--shards", str(out), "--sample", "3", "--quality", "50,95", "--bound", "20",
               "--bits", "8,12", "--json"])
    assert rc == 0
    js = json.loads(capsys.readouterr().out)
    by_name = {s["name"]: s for s in js["settings"]}
    assert {"fixed-b20-q95", "fixed-b20-q50-12bit"} <= set(by_name)
    stored, same = js["stored"], by_name["fixed-b20-q50-12bit"]
    assert stored["bits"] == 12 and stored["bytes_per_pair"] == same["bytes_per_pair"]
    assert stored["epe_mean"] == pytest.approx(same["epe_mean"], rel=1e-6)


def test_export_of_12_bit_shards_is_refused_with_the_reason(tmp_path):
    from flowprep.errors import FlowprepError
    from flowprep.interchange.denseflow import export_denseflow
    from flowprep.store.format import shard_name
    from flowprep.store.writer import ShardWriter
    with ShardWriter(tmp_path / "s" / shard_name(0), {"quantization": QuantConfig(bits=12).to_dict()}):
        pass
    with pytest.raises(FlowprepError, match="12-bit flow JPEGs.*--bits 8"):
        export_denseflow(tmp_path / "s", tmp_path / "out", show_progress=False)
