"""Odd splits, damaged weights, odd checkpoints and odd flags reach the user as one line that says what to do,
or as a warning when the run can go on correctly; before, each gave a traceback or passed silently."""
from __future__ import annotations

import errno
import json
import os
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from flowprep.datasets.splits import SplitError, load_split
from train import engine, evaluate
from train import fit as train_mod
from train.cli import main
from train.config import FitConfig, TaskSpec, saved_config
from train.engine import CheckpointError, load_checkpoint
from train.fit import fit
from train.models import build_model, load_state


def _cfg(motion_data, out, **kw) -> FitConfig:
    base = dict(shards=str(motion_data.shards), split_dir=str(motion_data.split_dir), stream="temporal", arch="tiny",
                crop_size=40, flow_length=2, batch_size=8, num_workers=0, val_frames=0, progress=False, epochs=1,
                device="cpu", out=str(out))
    return FitConfig(**{**base, **kw})


def _splits(motion_data, tmp_path, train: str | None = None, test: str | None = None):
    """A copy of the motion data's split folder, its lists replaced where given."""
    d = tmp_path / "splits"
    shutil.copytree(motion_data.split_dir, d)
    for name, text in (("trainlist01.txt", train), ("testlist01.txt", test)):
        if text is not None:
            (d / name).write_text(text)
    return d


def _lines(motion_data, subset: str) -> list[str]:
    return (motion_data.split_dir / f"{subset}list01.txt").read_text().splitlines()


def test_a_list_naming_a_video_twice_uses_it_once(motion_data, tmp_path, caplog):
    train = _lines(motion_data, "train")
    d = _splits(motion_data, tmp_path, train="\n".join(train + train[:3]) + "\n")
    with caplog.at_level("WARNING"):
        s = load_split("ucf101", d, 1)
    assert len(s.train) == len(train) and len({n for n, _ in s.train}) == len(train)
    assert "3 line(s) repeat a video listed before" in caplog.text


def test_a_video_listed_with_two_classes_is_left_out(tmp_path, caplog):
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nzumba,a,0,10,train\n"
                                        "abseiling,a,0,10,train\nabseiling,b,5,15,train\n")
    (tmp_path / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,c,1,11,val\n")
    with caplog.at_level("WARNING"):
        s = load_split("kinetics", tmp_path, 1)
    assert s.train == (("b_000005_000015", 0),)
    assert "1 video(s) are listed with two classes (e.g. a_000000_000010)" in caplog.text


def test_test_videos_in_the_training_list_leave_the_training(motion_data, tmp_path, caplog):
    """Trained on, a test video makes the test accuracy a lie; it stays in the test."""
    test_lines = _lines(motion_data, "test")
    d = _splits(motion_data, tmp_path, train="\n".join(_lines(motion_data, "train") + test_lines[:2]) + "\n")
    with caplog.at_level("WARNING"):
        s = load_split("ucf101", d, 1)
    assert {n for n, _ in s.train}.isdisjoint(n for n, _ in s.test) and len(s.test) == len(test_lines)
    assert len(s.train) == len(_lines(motion_data, "train"))
    assert "2 of the " in caplog.text and "are also in its test list" in caplog.text


def test_the_test_list_given_as_the_training_list_is_refused(motion_data, tmp_path):
    d = _splits(motion_data, tmp_path, train=(motion_data.split_dir / "testlist01.txt").read_text())
    with pytest.raises(ValueError, match="the training list of split 1 names no video"):
        fit(_cfg(motion_data, tmp_path / "out", split_dir=str(d)))


def test_training_videos_of_one_class_only_are_refused(motion_data, tmp_path):
    first = [ln for ln in _lines(motion_data, "train") if ln.startswith(motion_data.classes[0] + "/")]
    d = _splits(motion_data, tmp_path, train="\n".join(first) + "\n")
    with pytest.raises(SplitError, match=f"of 1 class\\(es\\) \\({motion_data.classes[0]}\\); a classifier needs two"):
        fit(_cfg(motion_data, tmp_path / "out", split_dir=str(d)))


def test_a_class_without_training_videos_is_warned_of(motion_data, tmp_path, caplog):
    rest = [ln for ln in _lines(motion_data, "train") if not ln.startswith(motion_data.classes[0] + "/")]
    d = _splits(motion_data, tmp_path, train="\n".join(rest) + "\n")
    with caplog.at_level("WARNING"):
        fit(_cfg(motion_data, tmp_path / "out", split_dir=str(d)))
    assert f"1 of the 4 classes have no training video in the shards (e.g. {motion_data.classes[0]}" in caplog.text


def test_an_empty_test_list_is_said_by_fit_and_refused_by_test(motion_data, tmp_path, caplog):
    d = _splits(motion_data, tmp_path, test="")
    with caplog.at_level("WARNING"):
        fit(_cfg(motion_data, tmp_path / "out", split_dir=str(d), val_frames=1))
    assert "the test list of split 1 names no video: no per-epoch monitor" in caplog.text
    with pytest.raises(SplitError, match="the test list of split 1 names no video"):  # was "cannot reshape"
        evaluate.test(evaluate.TestConfig(str(tmp_path / "out" / "best.pt"), split_dir=str(d), num_workers=0,
                                          progress=False, device="cpu"))


def test_a_test_over_fewer_videos_than_the_split_says_so_in_its_metrics(motion_data, tmp_path, caplog):
    """Shards lacking half the test videos gave a warning and a test_metrics.json of "videos": 3, nothing saying
    the split has 6: the accuracy of a smaller test set, read as the split's."""
    lines = _lines(motion_data, "test")
    cls = lines[0].split("/")[0]
    d = _splits(motion_data, tmp_path, test="\n".join([*lines, f"{cls}/v_{cls}_g99_c01.avi"]) + "\n")
    fit(_cfg(motion_data, tmp_path / "out", split_dir=str(d)))
    with caplog.at_level("WARNING"):
        evaluate.test(evaluate.TestConfig(str(tmp_path / "out" / "best.pt"), frames=2, crops=1, num_workers=0,
                                          progress=False, device="cpu"))
    assert f"1 of {len(lines) + 1} videos of the split are not in" in caplog.text
    m = json.loads((tmp_path / "out" / "test_metrics.json").read_text())
    assert (m["videos"], m["split_videos"], m["shards"]) == (len(lines), len(lines) + 1, str(motion_data.shards))


def test_a_second_fit_on_the_same_out_is_refused_while_the_first_runs(motion_data, tmp_path):
    """Two fits on one --out wrote the same checkpoint.pt.tmp: one died renaming it, or resumed from the other's."""
    import subprocess
    import sys

    from flowprep.errors import FlowprepError

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from flowprep.store.workspace import RunLock; "
                               "RunLock(sys.argv[1], 'python -m train fit').acquire(); print('held', flush=True); "
                               "time.sleep(60)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # named as a user types it (it said `flowprep twostream fit`, no command at all)
        said = r"in use by another flowprep run \(pid \d+ on .*, `python -m train fit` started .*\); wait for it"
        with pytest.raises(FlowprepError, match=said + r" to finish .*, or use another --out$"):
            fit(_cfg(motion_data, out))
        assert not (out / "checkpoint.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    fit(_cfg(motion_data, out))  # free again
    assert (out / "best.pt").is_file()


def _weights(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(build_model("tiny", [4], 3, 40).trunk.state_dict(), path)
    return path


def test_damaged_pretrained_weights_are_refused_not_trained(motion_data, tmp_path, capsys):
    """One flipped bit in a tensor trained silently; a cut file gave OSError, an empty one EOFError."""
    path = _weights(tmp_path)
    assert set(load_state(path)) == set(build_model("tiny", [4], 3, 40).trunk.state_dict())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        entry = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size > 64)
    at = entry.header_offset + 30 + len(entry.filename) + len(entry.extra) + 8  # a byte of the stored tensor
    data[at] ^= 1
    (tmp_path / "flip.pth").write_bytes(data)
    (tmp_path / "cut.pth").write_bytes(path.read_bytes()[:len(data) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save([1, 2], tmp_path / "list.pth")
    for name, said in (("flip", "fails its CRC-32 check"), ("cut", "cannot be loaded"), ("empty", "not a complete"),
                       ("list", "not a state dict")):
        with pytest.raises(CheckpointError, match=said):
            load_state(tmp_path / f"{name}.pth")
    rc = main(["fit", "--shards", str(motion_data.shards), "--pretrained", str(tmp_path / "flip.pth"), "--arch",
               "tiny", "--device", "cpu", "--crop-size", "40", "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "flip.pth: damaged" in err[0]


def test_legacy_pretrained_weights_still_load(tmp_path):
    """torch's pre-1.6 format has no zip and no CRCs: old published weights are still taken."""
    state = build_model("tiny", [4], 3, 40).trunk.state_dict()
    torch.save(state, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(tmp_path / "old.pth")
    assert all(torch.equal(load_state(tmp_path / "old.pth")[k], v) for k, v in state.items())


def _trained(motion_data, tmp_path):
    out = tmp_path / "run"
    fit(_cfg(motion_data, out))
    return out / "best.pt", load_checkpoint(out / "best.pt")


def test_a_checkpoint_with_weights_of_other_shapes_is_refused_in_one_line(motion_data, tmp_path):
    path, ck = _trained(motion_data, tmp_path)
    ck["model"]["heads.0.weight"] = ck["model"]["heads.0.weight"][:, :1]
    torch.save(ck, tmp_path / "shapes.pt")
    with pytest.raises(CheckpointError, match="its weights do not fit the net its settings describe .* heads.0.weight"):
        evaluate.test(evaluate.TestConfig(str(tmp_path / "shapes.pt"), num_workers=0, progress=False, device="cpu"))
    with pytest.raises(CheckpointError, match="its weights do not fit"):
        fit(_cfg(motion_data, tmp_path / "again", epochs=1, resume=str(tmp_path / "shapes.pt")))


def test_test_says_what_to_give_for_a_bad_checkpoint_and_for_shards_that_moved(motion_data, tmp_path):
    """`train test` sent a damaged checkpoint to `--restart`, a fit flag; and with the training shards moved it
    said "no such folder; give the --out folder of flowprep extract", a flag the user never gave."""
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="give the best.pt of a finished `train fit` run"):
        evaluate.test(evaluate.TestConfig(str(tmp_path / "garbage.pt"), num_workers=0, progress=False, device="cpu"))
    shards = tmp_path / "shards"
    shutil.copytree(motion_data.shards, shards)
    path, _ = _trained(replace(motion_data, shards=shards), tmp_path)
    shards.rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=r"the shards this model was trained on \(.*shards\) are not there: "
                                                r"give --shards DIR"):
        evaluate.test(evaluate.TestConfig(str(path), num_workers=0, progress=False, device="cpu"))


def test_a_checkpoint_with_settings_this_version_does_not_know_is_refused(motion_data, tmp_path):
    path, ck = _trained(motion_data, tmp_path)
    ran = dict(num_workers=0, device="cpu", val_frames=0, progress=False)  # how it ran: read back as defaults
    assert replace(saved_config(ck["config"], path), **ran) == _cfg(motion_data, tmp_path / "run")
    ck["config"]["newfield"] = 1
    torch.save(ck, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="settings this version does not know \\(newfield\\)"):
        evaluate.test(evaluate.TestConfig(str(tmp_path / "new.pt"), num_workers=0, progress=False, device="cpu"))
    with pytest.raises(CheckpointError, match="newfield"):
        fit(_cfg(motion_data, tmp_path / "again", resume=str(tmp_path / "new.pt")))


def test_a_bad_init_from_says_to_give_another_run_not_to_restart(motion_data, tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="give the best.pt of a finished fit run \\(--init-from\\)") as e:
        fit(_cfg(motion_data, tmp_path / "out", init_from=str(tmp_path / "bad.pt")))
    assert "--restart" not in str(e.value)


def test_a_fit_checkpoint_given_as_pretrained_points_to_init_from_and_own_shards_are_not_added(motion_data,
                                                                                               tmp_path):
    """--pretrained runs/t/best.pt gave torch's words in terminal colours; --add-classes naming the main dataset's
    own shards trained every video under two labels."""
    fit(_cfg(motion_data, tmp_path / "run"))
    with pytest.raises(CheckpointError, match="a checkpoint of `train fit` goes to --init-from") as e:
        fit(_cfg(motion_data, tmp_path / "out", pretrained=str(tmp_path / "run" / "best.pt")))
    assert "\x1b" not in str(e.value) and "two options" not in str(e.value)  # torch's "trust the source" text
    assert "holds Python objects besides tensors" in str(e.value)
    (tmp_path / "notes.pth").write_text("hello\n")  # a text file: "KeyError: 104"
    with pytest.raises(CheckpointError, match="not a torch file \\(nor any pickle\\)"):
        fit(_cfg(motion_data, tmp_path / "out", pretrained=str(tmp_path / "notes.pth")))
    (tmp_path / "noise.pth").write_bytes(np.random.default_rng(0).bytes(5000))  # "holds Python objects" it said
    with pytest.raises(CheckpointError, match="not a torch file \\(nor any pickle\\)"):
        fit(_cfg(motion_data, tmp_path / "out", pretrained=str(tmp_path / "noise.pth")))
    with pytest.raises(ValueError, match="this is the main dataset itself"):
        fit(_cfg(motion_data, tmp_path / "out", add_classes=(TaskSpec("ucf101", str(motion_data.shards),
                                                                      str(motion_data.split_dir)),)))
    from flowprep.errors import ShardError
    from flowprep.store.reader import open_shards

    with pytest.raises(ShardError, match="a file, not a folder; give the --out folder"):  # said "no such folder"
        open_shards(tmp_path / "run" / "best.pt")


@pytest.mark.parametrize("change, said", [
    ({"epochs": 0}, "--epochs must be 1 or more"), ({"batch_size": 0}, "--batch-size must be 1 or more"),
    ({"lr": 0.0}, "--lr must be a finite number above 0"), ({"lr": float("inf")}, "--lr must be a finite number"),
    ({"momentum": -5.0}, "--momentum must be in"), ({"weight_decay": -1.0}, "--weight-decay must be 0 or more"),
    ({"seed": -1}, "--seed must be 0 or more"), ({"dropout": 1.0}, "--dropout must be in \\[0, 1\\)"),
    ({"milestones": (2.0,)}, "--lr-milestones must be fractions"), ({"val_frames": -1}, "--val-frames must be 0"),
    ({"num_workers": -1}, "--num-workers must be 0 or more"), ({"threads": 0}, "--threads must be 1 or more")])
def test_settings_out_of_range_name_their_flag(motion_data, tmp_path, change, said):
    """--epochs 0 exited 0 having written nothing; the others gave torch's words without the flag."""
    with pytest.raises(ValueError, match=said):
        _cfg(motion_data, tmp_path, **change)


@pytest.mark.parametrize("change, said", [({"threads": -2}, "--threads must be 1 or more"),
                                          ({"batch_size": 0}, "--batch-size must be 1 or more"),
                                          ({"num_workers": -1}, "--num-workers must be 0 or more"),
                                          ({"frames": 0}, "--test-frames must be 1 or more")])
def test_test_settings_out_of_range_name_their_flag(change, said):
    """`test --threads -2` was torch's RuntimeError from set_num_threads: TestConfig checked nothing."""
    from train.evaluate import TestConfig

    with pytest.raises(ValueError, match=said):
        TestConfig("best.pt", **change)


def test_a_crop_too_small_for_vgg_is_one_line_before_training():
    """--arch vgg16 --crop-size 8 failed inside the first batch with torch's 'Output size is too small'."""
    from train.models import build_model

    with pytest.raises(ValueError, match="vgg16 needs a crop of at least 32 pixels, got 16"):
        build_model("vgg16", [4], 20, 16)


def test_a_device_that_is_not_there_is_one_line(motion_data, tmp_path, capsys):
    with pytest.raises(ValueError, match="--device must be auto, cpu or cuda"):  # mps ran on the CPU, silently
        fit(_cfg(motion_data, tmp_path, device="mps"))
    if not torch.cuda.is_available():  # torch's error was a traceback about drivers
        rc = main(["fit", "--shards", str(motion_data.shards), "--device", "cuda", "--out", str(tmp_path)])
        assert rc == 2 and "torch sees no CUDA GPU here" in capsys.readouterr().err


def test_restart_removes_the_earlier_best_before_training(motion_data, tmp_path, monkeypatch):
    """Killed during a --restart, the folder held the new run's checkpoint.pt beside the old run's best.pt."""
    fit(_cfg(motion_data, tmp_path, epochs=2))
    real = train_mod.train_one_epoch

    def killed(*args, **kwargs):
        if args[6] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(motion_data, tmp_path, epochs=2, restart=True))
    assert not (tmp_path / "best.pt").exists() and load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 0


def test_metrics_never_run_ahead_of_the_checkpoint(motion_data, tmp_path, monkeypatch):
    """metrics.* were written before checkpoint.pt: a kill between said epoch 1 was done while the checkpoint held
    epoch 0."""
    real = engine.save_checkpoint

    def killed(state, path):
        if state["epoch"] == 1:
            raise KeyboardInterrupt
        real(state, path)

    monkeypatch.setattr(train_mod, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(motion_data, tmp_path, epochs=2))
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 0  # header + epoch 0


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(motion_data, tmp_path, monkeypatch, capsys):
    """torch reports a checkpoint cut short by a full disk as "unexpected pos", the disk's error as its cause: it
    was a traceback."""
    real = torch.save

    def full(obj, fh, *args, **kwargs):
        if obj.get("epoch") == 1:
            fh.write(b"PK")
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2 vs 0") from None
        real(obj, fh, *args, **kwargs)

    monkeypatch.setattr(engine.torch, "save", full)
    rc = main(["fit", "--shards", str(motion_data.shards), "--arch", "tiny", "--device", "cpu", "--crop-size", "40",
               "--flow-length", "2", "--epochs", "2", "--batch-size", "8", "--num-workers", "0", "--val-frames", "0",
               "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no room left on the disk of" in err[0], err
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 0 and not list(tmp_path.glob("*.tmp"))


def test_an_out_folder_that_cannot_be_made_is_one_line(motion_data, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    rc = main(["fit", "--shards", str(motion_data.shards), "--arch", "tiny", "--device", "cpu",
               "--out", str(tmp_path / "file" / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "file/run: a file is where a folder must be" in err[0], err


def test_a_checkpoint_older_than_a_setting_resumes_with_its_default(motion_data, tmp_path):
    """A checkpoint written before a setting existed lacks it: compared raw (None), every resume of it was refused
    once a setting was added, with the default flags too."""
    cfg = _cfg(motion_data, tmp_path, epochs=2)
    fit(_cfg(motion_data, tmp_path, epochs=2, val_every=1))
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    del ck["config"]["stacking"], ck["config"]["balanced"]  # as if written before these two existed
    ck["epoch"] = 0
    torch.save(ck, tmp_path / "old.pt")
    fit(replace(cfg, resume=str(tmp_path / "old.pt"), out=str(tmp_path / "more")))
    assert load_checkpoint(tmp_path / "more" / "checkpoint.pt")["epoch"] == 1
    with pytest.raises(ValueError, match="other settings \\(stacking='optical', now 'trajectory'\\)"):
        fit(replace(cfg, stacking="trajectory", resume=str(tmp_path / "old.pt"), out=str(tmp_path / "other")))


def test_test_refuses_a_split_whose_classes_are_not_the_nets(motion_data, tmp_path):
    """Another classInd.txt order scored with exit 0, every column under another class's name; one class fewer
    scored on 5 of 6 outputs."""
    path, _ = _trained(motion_data, tmp_path)
    lines = (motion_data.split_dir / "classInd.txt").read_text().split()[1::2]
    swapped = _splits(motion_data, tmp_path / "a", train="".join(ln.split()[0] + "\n" for ln in
                                                                 _lines(motion_data, "train")))  # no labels
    (swapped / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate([lines[1], lines[0],
                                                                                          *lines[2:]])))
    fewer = _splits(motion_data, tmp_path / "b")
    (fewer / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(lines[:-1])))
    keep = [ln for ln in _lines(motion_data, "test") if not ln.startswith(lines[-1] + "/")]
    (fewer / "testlist01.txt").write_text("\n".join(keep) + "\n")
    (fewer / "trainlist01.txt").write_text("\n".join(ln for ln in _lines(motion_data, "train")
                                                     if not ln.startswith(lines[-1] + "/")) + "\n")
    with pytest.raises(SplitError, match="not the ones the net was trained on \\(3 classes where the net has 4"):
        evaluate.test(evaluate.TestConfig(str(path), split_dir=str(fewer), num_workers=0, progress=False,
                                          device="cpu"))
    # the same classes in another order (HMDB-51's before 0.3) are read by name: the same figures, columns swapped
    runs = {}
    for name, d in (("same", motion_data.split_dir), ("swapped", swapped)):
        runs[name] = evaluate.test(evaluate.TestConfig(str(path), split_dir=str(d), num_workers=0, progress=False,
                                                       device="cpu", frames=2, crops=1, out=str(tmp_path / name)))
    assert runs["same"] == runs["swapped"]
    with np.load(tmp_path / "same" / "scores.npz") as a, np.load(tmp_path / "swapped" / "scores.npz") as b:
        np.testing.assert_array_equal(a["scores"][:, [1, 0, 2, 3]], b["scores"])
        assert list(b["classes"]) == [lines[1], lines[0], *lines[2:]]


def test_a_failed_test_leaves_no_metrics_of_an_earlier_one(motion_data, tmp_path, monkeypatch):
    """On a full disk, the new scores.npz stood beside the previous test's test_metrics.json, which table read."""
    path, _ = _trained(motion_data, tmp_path)
    cfg = evaluate.TestConfig(str(path), num_workers=0, progress=False, device="cpu", frames=2, crops=1)
    evaluate.test(cfg)
    assert (path.parent / "test_metrics.json").is_file()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(evaluate, "write_json", full)
    with pytest.raises(OSError):
        evaluate.test(cfg)
    assert not (path.parent / "test_metrics.json").exists() and (path.parent / "scores.npz").is_file()


def test_a_checkpoint_of_a_run_with_threads_0_still_reads(motion_data, tmp_path):
    """--threads 0 (torch's default) was taken before today's range checks: such a checkpoint was refused as
    "not valid"; how a run ran is not read back from it."""
    _, ck = _trained(motion_data, tmp_path)
    old = {**ck["config"], "threads": 0, "num_workers": -1, "milestones": [0.5, 1.0]}
    assert saved_config(old, "x").threads is None


def test_one_added_class_joins_a_head_of_several(motion_data, tmp_path):
    """--add-classes of a dataset with a single class (a "background" class) was refused as one class."""
    first = [ln for ln in _lines(motion_data, "train") if ln.startswith(motion_data.classes[0] + "/")]
    one = _splits(motion_data, tmp_path / "one", train="\n".join(first) + "\n")
    fit(_cfg(motion_data, tmp_path / "out", add_classes=(TaskSpec("ucf101", str(motion_data.shards), str(one)),)))
    assert len(load_checkpoint(tmp_path / "out" / "best.pt")["classes"][0]) == 8


def test_metrics_are_whole_after_a_kill_between_the_last_checkpoint_and_its_metrics(motion_data, tmp_path,
                                                                                      monkeypatch):
    real = engine.MetricsLog.write
    calls = []

    def killed(self):
        calls.append(len(self.history))
        if len(self.history) == 2 and len(calls) == 2:
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(engine.MetricsLog, "write", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(motion_data, tmp_path, epochs=2))
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 2  # header + epoch 0: one short
    monkeypatch.undo()
    fit(_cfg(motion_data, tmp_path, epochs=2))  # the same command: finished, and its metrics made whole
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3


def test_a_folder_the_scores_cannot_go_to_is_said_before_the_scoring(motion_data, tmp_path, monkeypatch):
    """A read-only --out failed writing test_metrics.json after the whole 25 x 10 scoring, the scores lost."""
    import tempfile

    fit(_cfg(motion_data, tmp_path / "out"))
    monkeypatch.setattr(evaluate, "predict", lambda *a, **k: pytest.fail("scored before the folder was checked"))

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(Path(kwargs["dir"]) / "tmpab12cd"))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(PermissionError) as e:
        evaluate.test(evaluate.TestConfig(str(tmp_path / "out" / "best.pt"), out=str(tmp_path / "ro"), num_workers=0,
                                          progress=False, device="cpu"))
    assert e.value.filename == str(tmp_path / "ro")  # the folder, not the probe's name


@pytest.mark.parametrize("change, said", [({"flow_length": 0}, "--flow-length must be 1 or more, got 0"),
                                          ({"crop_size": 4}, "--crop-size must be 8 or more, got 4")])
def test_sampling_settings_out_of_range_name_their_flag(motion_data, tmp_path, change, said):
    """"flow length, crop size (>= 8) and test frames must be positive" named no flag, and all three at once."""
    with pytest.raises(ValueError, match=said):
        _cfg(motion_data, tmp_path, **change).data_config()


def test_test_refuses_an_out_that_holds_the_other_streams_scores(motion_data, tmp_path):
    """`train test --checkpoint runs/spatial/best.pt --out runs/temporal` overwrote the temporal scores silently,
    and fuse then blamed an earlier best.pt. The same model tested again still replaces its own."""
    t, s = tmp_path / "temporal", tmp_path / "spatial"
    fit(_cfg(motion_data, t))
    fit(_cfg(motion_data, s, stream="spatial"))
    quick = dict(frames=2, crops=1, num_workers=0, progress=False, device="cpu")
    evaluate.test(evaluate.TestConfig(str(t / "best.pt"), **quick))
    evaluate.test(evaluate.TestConfig(str(t / "best.pt"), **quick))  # again: replaced
    before = (t / "scores.npz").read_bytes()
    with pytest.raises(ValueError, match=r"scores of a temporal model on ucf101, not of this spatial model on ucf101: "
                                         r"give --out a folder of this model's own"):
        evaluate.test(evaluate.TestConfig(str(s / "best.pt"), out=str(t), **quick))
    assert (t / "scores.npz").read_bytes() == before
