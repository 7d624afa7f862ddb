"""Fusion of two score files: the average and the linear SVM give known results."""
from __future__ import annotations

import numpy as np
import pytest

from train.fuse import fuse, train_scores_path
from train.metrics import Scores, load_scores, mean_class_accuracy, save_scores, summary, topk_accuracy

CLASSES = np.array(["a", "b", "c"])


def _save(path, scores, labels, videos):
    save_scores(Scores(np.asarray(scores, float), np.asarray(labels), np.asarray(videos), CLASSES, {"x": 1}), path)
    return str(path)


def test_average_fusion_known_result(tmp_path):
    # stream A is right on v1, v2; B is right on v2, v3; the average is right on all three
    a = _save(tmp_path / "a.npz", [[.6, .3, .1], [.1, .8, .1], [.5, .1, .4]], [0, 1, 2], ["v1", "v2", "v3"])
    # B lists the same videos in another order: fusion aligns them by name
    b = _save(tmp_path / "b.npz", [[.1, .1, .8], [.2, .7, .1], [.3, .5, .2]], [2, 1, 0], ["v3", "v2", "v1"])
    report = fuse([a, b], "avg", out=str(tmp_path / "fused.npz"))
    assert report[f"{tmp_path.name}/a.npz"]["top1"] == pytest.approx(2 / 3)
    assert report[f"{tmp_path.name}/b.npz"]["top1"] == pytest.approx(2 / 3)
    assert report["fusion:avg"]["top1"] == 1.0
    fused = load_scores(tmp_path / "fused.npz")
    np.testing.assert_allclose(fused.scores, [[.45, .4, .15], [.15, .75, .1], [.3, .1, .6]], atol=1e-12)
    assert list(fused.videos) == ["v1", "v2", "v3"]


def test_svm_fusion_learns_which_stream_to_trust(tmp_path):
    """A is pure noise, B is informative but biased towards class 0: averaging fails, the SVM trained on the
    TRAINING scores learns to read B and classifies every test video right."""
    rng = np.random.default_rng(0)

    def streams(n, tag):
        y = np.arange(n) % 3
        a = rng.dirichlet(np.ones(3), size=n)
        b = np.full((n, 3), 0.05)
        b[:, 0] = 0.8
        b[np.arange(n), y] += 0.12  # the true class gets a small but consistent bump
        b /= b.sum(1, keepdims=True)
        vids = [f"{tag}{i}" for i in range(n)]
        return (_save(tmp_path / f"a_{tag}.npz", a, y, vids), _save(tmp_path / f"b_{tag}.npz", b, y, vids))

    a_tr, b_tr = streams(60, "train")
    a_te, b_te = streams(30, "test")
    avg = fuse([a_te, b_te], "avg")["fusion:avg"]["top1"]
    svm = fuse([a_te, b_te], "svm", train_paths=[a_tr, b_tr], c=10.0)["fusion:svm"]["top1"]
    assert avg < 0.5 and svm == 1.0
    assert train_scores_path("runs/s/scores.npz").as_posix() == "runs/s/scores_train.npz"


def test_fusion_refuses_mismatched_files(tmp_path):
    a = _save(tmp_path / "a.npz", [[1, 0, 0]], [0], ["v1"])
    b = _save(tmp_path / "b.npz", [[1, 0, 0]], [0], ["v9"])
    with pytest.raises(ValueError, match="different set of videos"):
        fuse([a, b])
    with pytest.raises(ValueError, match="choose one of"):
        fuse([a, a], "max")
    with pytest.raises(FileNotFoundError, match="train test"):
        fuse([a, a], "svm")  # no scores_train.npz beside them


def test_accuracy_metrics():
    s = np.array([[.5, .3, .2], [.1, .2, .7], [.4, .5, .1], [.6, .1, .3]])
    y = np.array([0, 1, 1, 1])
    assert topk_accuracy(s, y, 1) == 0.5 and topk_accuracy(s, y, 2) == 0.75
    assert mean_class_accuracy(s, y) == pytest.approx((1 + 1 / 3) / 2)
    assert summary(s, y)["top5"] == 1.0


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "nan", "columns"])
def test_a_damaged_score_file_is_refused_in_one_line_naming_it(tmp_path, damage):
    """Empty, cut or flipped files gave EOFError / BadZipFile tracebacks; NaN scores a fusion accuracy, exit 0."""
    rows = [[.6, .3, .1], [.1, .8, .1]]
    path = tmp_path / "s.npz"
    if damage == "nan":
        _save(path, [[np.nan] * 3] * 2, [0, 1], ["v1", "v2"])
    elif damage == "columns":
        save_scores(Scores(np.asarray(rows)[:, :2], np.asarray([0, 1]), np.asarray(["v1", "v2"]), CLASSES, {}), path)
    else:
        _save(path, rows, [0, 1], ["v1", "v2"])
        data = bytearray(path.read_bytes())
        if damage == "flipped":
            data[200] ^= 0xFF  # inside scores.npy's array bytes (a byte of a local header is not read)
        path.write_bytes(b"" if damage == "empty" else bytes(data[: len(data) // 2] if damage == "truncated" else data))
    with pytest.raises(ValueError) as e:
        load_scores(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
