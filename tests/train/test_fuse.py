"""Fusion of two score files: the average and the linear SVM give known results."""
from __future__ import annotations

import numpy as np
import pytest

from train.fuse import fuse, train_scores_path
from train.metrics import Scores, load_scores, mean_class_accuracy, save_scores, summary, topk_accuracy

CLASSES = np.array(["a", "b", "c"])


def _save(path, scores, labels, videos, **meta):
    save_scores(Scores(np.asarray(scores, float), np.asarray(labels), np.asarray(videos), CLASSES, meta), path)
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
    c = _save(tmp_path / "c.npz", [[.5, .5, 0]], [0], ["v1"])
    with pytest.raises(FileNotFoundError, match="train test"):
        fuse([a, c], "svm")  # no scores_train.npz beside them


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


def _pair(tmp_path, tag, subset="test", **meta):
    """A spatial and a temporal score file of two videos, as `train test` writes them."""
    y, vids = [0, 1], ["v1", "v2"]
    return (_save(tmp_path / f"s_{tag}.npz", [[.6, .3, .1], [.2, .7, .1]], y, vids, stream="spatial", subset=subset,
                  dataset="ucf101", split=1, **meta),
            _save(tmp_path / f"t_{tag}.npz", [[.5, .4, .1], [.3, .6, .1]], y, vids, stream="temporal", subset=subset,
                  dataset="ucf101", split=1, **meta))


def test_fusion_refuses_inputs_that_fused_to_a_wrong_figure_with_exit_0(tmp_path):
    """Each of these fused with exit 0: a stream given twice, a fusion's output given as a stream, files of other
    splits, a report name that replaced the scores, and SVM training scores swapped, leaked or from elsewhere."""
    s, t = _pair(tmp_path, "te")
    s_tr, t_tr = _pair(tmp_path, "tr", subset="train")
    with pytest.raises(ValueError, match="holds the same scores as .* \\(one stream given twice\\)"):
        fuse([s, s])
    fused = str(tmp_path / "f.npz")
    fuse([s, t], out=fused)
    with pytest.raises(ValueError, match="is the output of a fusion"):
        fuse([s, fused])
    other = _save(tmp_path / "o.npz", [[.1, .8, .1], [.2, .7, .1]], [0, 1], ["v1", "v2"], stream="temporal",
                  subset="test", dataset="ucf101", split=2)
    with pytest.raises(ValueError, match="its split is 2 where .* is 1"):
        fuse([s, other])
    part = _save(tmp_path / "p.npz", [[.1, .2, .05], [.05, .3, .05]], [0, 1], ["v1", "v2"], stream="temporal",
                 subset="test", dataset="ucf101", split=1)  # part of a softmax: averaged, it weighed a third
    with pytest.raises(ValueError, match="p.npz: its scores do not sum to 1 for each video"):
        fuse([s, part])
    with pytest.raises(ValueError, match="give a name ending in .npz"):
        fuse([s, t], out=str(tmp_path / "fused.json"))
    assert fuse([s, t], "svm", train_paths=[s_tr, t_tr])["fusion:svm"]["videos"] == 2
    with pytest.raises(ValueError, match="its stream is 'temporal' where .* is 'spatial'"):
        fuse([s, t], "svm", train_paths=[t_tr, s_tr])  # the streams' training scores in the other order
    with pytest.raises(ValueError, match="scores the test subset; the SVM learns from the training split"):
        fuse([s, t], "svm", train_paths=[s, t])  # the test scores trained on: a leak
    with pytest.raises(ValueError, match="one --train-scores file per --scores file"):
        fuse([s, t], "svm", train_paths=[s_tr])
    with pytest.raises(ValueError, match="--svm-c must be a number above 0, got -1.0"):  # sklearn's words before
        fuse([s, t], "svm", train_paths=[s_tr, t_tr], c=-1.0)


def test_an_svm_fusion_that_never_saw_a_class_writes_a_file_that_loads(tmp_path):
    """A class absent from the training scores got -inf columns, and the fused file was refused as not finite."""
    s, t = _pair(tmp_path, "te")
    y, vids = [0, 1, 0, 1], ["a", "b", "c", "d"]  # class 2 is never seen in training
    tr = [_save(tmp_path / f"{k}_tr.npz", [[.6, .3, .1], [.2, .7, .1], [.7, .2, .1], [.1, .8, .1]], y, vids,
                stream=k, subset="train", dataset="ucf101", split=1) for k in ("spatial", "temporal")]
    fuse([s, t], "svm", train_paths=tr, out=str(tmp_path / "out" / "svm.npz"))
    fused = load_scores(tmp_path / "out" / "svm.npz")
    assert np.isfinite(fused.scores).all() and (fused.scores[:, 2] < fused.scores[:, :2].min(1)).all()


def test_a_score_file_of_no_video_is_refused(tmp_path):
    """Fused, it printed nan for every figure with exit 0."""
    with pytest.raises(ValueError, match="scores no video"):
        load_scores(_save(tmp_path / "e.npz", np.zeros((0, 3)), np.zeros(0, int), np.zeros(0, str)))


def test_a_score_file_naming_a_video_twice_is_refused_naming_it(tmp_path):
    """Given first to fuse, it was refused with "e.g. []"."""
    with pytest.raises(ValueError, match="scores video v1 twice"):
        load_scores(_save(tmp_path / "d.npz", [[1, 0, 0], [0, 1, 0]], [0, 1], ["v1", "v1"]))


def test_a_multi_task_nets_head_fuses_with_a_single_task_net(tmp_path):
    """The paper's best HMDB-51 figure fuses a spatial net with the HMDB head (task 1) of a temporal net trained
    on UCF-101 and HMDB-51: refused when the files' task was compared. Its training scores are found by name."""
    s, t = _pair(tmp_path, "te")
    head = _save(tmp_path / "scores_task1.npz", [[.5, .4, .1], [.3, .6, .1]], [0, 1], ["v1", "v2"],
                 stream="temporal", subset="test", dataset="ucf101", split=1, task=1)
    assert fuse([s, head])["fusion:avg"]["videos"] == 2
    assert train_scores_path(head).name == "scores_train_task1.npz"  # where `test --subset train --task 1` writes


def test_an_out_naming_an_input_is_refused_before_it_replaces_that_streams_scores(tmp_path, monkeypatch):
    """`fuse --out spatial/scores.npz` replaced the spatial stream's scores with the fusion's, exit 0."""
    a = _save(tmp_path / "a.npz", [[.6, .3, .1], [.1, .8, .1]], [0, 1], ["v1", "v2"])
    b = _save(tmp_path / "b.npz", [[.1, .1, .8], [.2, .7, .1]], [0, 1], ["v1", "v2"])
    before = (tmp_path / "a.npz").read_bytes()
    monkeypatch.chdir(tmp_path)
    for out in (a, "a.npz", "./a.npz"):
        with pytest.raises(ValueError, match="is one of the score files fused: writing it would replace"):
            fuse([a, b], "avg", out=out)
    assert (tmp_path / "a.npz").read_bytes() == before


def test_a_folder_given_for_a_file_says_which_file_in_it(tmp_path):
    """`fuse --scores RUN` and `test --checkpoint RUN` said "not found" of a folder that is there."""
    from train.engine import load_checkpoint

    with pytest.raises(FileNotFoundError, match=f"{tmp_path} is a folder: give the score file in it "):
        load_scores(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} is a folder: give .*best.pt"):
        load_checkpoint(tmp_path)
