"""Training follows extract's rule (issue 20, item 4): the same command again continues exactly, --restart starts
over, a damaged checkpoint is refused in one line, a loss that turns NaN stops the run, and an error in a loader
worker reaches the user as one line."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from flowprep.errors import ShardError
from train import fit as train_mod
from train.cli import main, worker_error
from train.config import FitConfig
from train.engine import CheckpointError, load_checkpoint
from train.fit import TrainingDivergedError, fit


def _cfg(motion_data, out, **kw) -> FitConfig:
    base = dict(shards=str(motion_data.shards), split_dir=str(motion_data.split_dir), stream="temporal", arch="tiny",
                crop_size=40, flow_length=4, batch_size=8, lr=0.05, dropout=0.5, num_workers=0, val_frames=0,
                progress=False, out=str(out), milestones=(0.8,), device="cpu", epochs=2, balanced=True)
    return FitConfig(**{**base, **kw})


def _killed_in_epoch(monkeypatch, epoch: int) -> None:
    real = train_mod.train_one_epoch

    def killed(*args, **kwargs):
        if args[6] == epoch:
            raise KeyboardInterrupt  # as if the job were killed during this epoch
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", killed)


def test_the_same_command_again_continues_exactly(motion_data, tmp_path, monkeypatch, caplog):
    fit(_cfg(motion_data, tmp_path / "straight"))
    _killed_in_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(motion_data, tmp_path / "again"))
    monkeypatch.undo()
    real, epochs = train_mod.train_one_epoch, []
    monkeypatch.setattr(train_mod, "train_one_epoch", lambda *a, **k: epochs.append(a[6]) or real(*a, **k))
    with caplog.at_level("INFO"):
        fit(_cfg(motion_data, tmp_path / "again"))  # no --resume: the out folder's checkpoint is found
    assert "resuming from" in caplog.text and epochs == [1]  # epoch 0 is not trained again
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("straight", "again"))
    assert a["epoch"] == b["epoch"] == 1
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_a_finished_run_asked_again_does_nothing_and_restart_trains_again(motion_data, tmp_path, caplog):
    cfg = _cfg(motion_data, tmp_path, epochs=1)
    first = fit(cfg)
    stamp = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        again = fit(cfg)
    assert "already trained for 1 epochs" in caplog.text
    assert again["train_loss"] == first["train_loss"] and (tmp_path / "checkpoint.pt").stat().st_mtime_ns == stamp
    fit(_cfg(motion_data, tmp_path, epochs=1, restart=True))
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns != stamp
    with pytest.raises(ValueError, match="give one of them"):
        fit(_cfg(motion_data, tmp_path, restart=True, resume=str(tmp_path / "checkpoint.pt")))
    with pytest.raises(ValueError, match="--restart to train from scratch"):
        fit(_cfg(motion_data, tmp_path, epochs=1, arch="resnet18"))  # other settings over an existing run


@pytest.mark.parametrize("damage", ["flipped", "truncated", "empty"])
def test_a_damaged_checkpoint_is_refused_in_one_line(motion_data, tmp_path, damage, capsys):
    fit(_cfg(motion_data, tmp_path, epochs=1))
    path = tmp_path / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0xFF  # inside the weights: torch.load alone would read it
    path.write_bytes(bytes(data[:len(data) // 2] if damage == "truncated" else b"" if damage == "empty" else data))
    with pytest.raises(CheckpointError, match="CRC-32" if damage == "flipped" else "not a complete torch file"):
        load_checkpoint(path)
    rc = main(["fit", "--shards", str(motion_data.shards), "--split-dir", str(motion_data.split_dir), "--stream",
               "temporal", "--arch", "tiny", "--crop-size", "40", "--flow-length", "4", "--batch-size", "8",
               "--epochs", "2", "--num-workers", "0", "--val-frames", "0", "--no-progress", "--device", "cpu",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(path) in err[0] and "--restart" in err[0]


def test_a_loss_that_turns_nan_stops_before_it_is_saved(motion_data, tmp_path, monkeypatch):
    real = train_mod.train_one_epoch

    def diverging(*args, **kwargs):
        row = real(*args, **kwargs)
        return {**row, "train_loss": math.nan} if args[6] == 1 else row

    monkeypatch.setattr(train_mod, "train_one_epoch", diverging)
    with pytest.raises(TrainingDivergedError, match="epoch 1: the training loss is nan: lower --lr"):
        fit(_cfg(motion_data, tmp_path))
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 0  # the last finite epoch is kept


class _Damaged(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        raise ShardError("runs/shards/shard-00003.h5", "flow_x[12] fails its CRC-32 check (corrupt data); "
                         "run `flowprep verify --repair`", "v_Fencing_g01_c02")


def test_an_error_in_a_loader_worker_is_one_line():
    with pytest.raises(Exception) as caught:
        next(iter(DataLoader(_Damaged(), num_workers=1)))
    line = worker_error(caught.value)
    assert line == ("runs/shards/shard-00003.h5 (video v_Fencing_g01_c02): flow_x[12] fails its CRC-32 check "
                    "(corrupt data); run `flowprep verify --repair` (in a data loader worker)")
    assert worker_error(RuntimeError("CUDA out of memory")) is None  # other errors are not rewritten


@pytest.mark.parametrize("obj", [{"heads.0.weight": torch.zeros(2)}, {"a": 1}, [1, 2]])
def test_a_torch_file_that_is_not_a_checkpoint_is_refused_in_one_line(tmp_path, obj):
    """A bare state_dict, another dict or a list loaded, then failed with KeyError 'config' (a traceback)."""
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="not a checkpoint of `train fit`"):
        load_checkpoint(path)


def test_a_resume_on_other_training_videos_is_refused(motion_data, tmp_path, monkeypatch):
    """A fit started while extract still ran (or on a split list edited since) went on, from its checkpoint, over
    more videos than its learning-rate steps were planned for: epochs 0-2 on 20 videos, 3-9 on 48, the rate's drops
    at epochs 4 and 5, not 6 and 9, and no word of it."""
    import shutil

    splits = tmp_path / "splits"
    shutil.copytree(motion_data.split_dir, splits)
    _killed_in_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(motion_data, tmp_path / "run", split_dir=str(splits)))
    monkeypatch.undo()
    listed = (splits / "trainlist01.txt").read_text().splitlines()
    (splits / "trainlist01.txt").write_text("\n".join(listed[:-3]) + "\n")
    with pytest.raises(ValueError, match=rf"was trained on {len(listed)} training videos, this run's split and shards "
                                         rf"give {len(listed) - 3} \(an extraction still running"):
        fit(_cfg(motion_data, tmp_path / "run", split_dir=str(splits)))
    other = listed[-1].replace("_g08_", "_g09_")  # a test video in the last one's place: as many, one other
    (splits / "trainlist01.txt").write_text("\n".join(listed[:-1] + [other]) + "\n")
    tested = (splits / "testlist01.txt").read_text().splitlines()
    (splits / "testlist01.txt").write_text("".join(f"{t}\n" for t in tested if t != other.split()[0]))
    with pytest.raises(ValueError, match="give others"):
        fit(_cfg(motion_data, tmp_path / "run", split_dir=str(splits)))
    (splits / "trainlist01.txt").write_text("\n".join(reversed(listed)) + "\n")  # the same videos: it goes on
    assert fit(_cfg(motion_data, tmp_path / "run", split_dir=str(splits)))["epoch"] == 1


def test_the_per_epoch_monitor_does_not_change_the_trained_weights(motion_data, tmp_path):
    """The monitor's loader drew its seed from torch's global generator, which dropout draws from: --val-every and
    --val-frames, free to change on a resume, gave other weights (0.069 apart at dropout 0.5)."""
    runs = {name: fit(_cfg(motion_data, tmp_path / name, **kw)) for name, kw in
            (("off", {}), ("every", {"val_frames": 2, "val_every": 1}), ("last", {"val_frames": 2, "val_every": 2}))}
    assert "val_clip_top1" in runs["every"] and "val_clip_top1" not in runs["off"]
    weights = [load_checkpoint(tmp_path / name / "checkpoint.pt")["model"] for name in runs]
    assert all(torch.equal(weights[0][k], w[k]) for w in weights[1:] for k in weights[0])


def test_a_checkpoint_written_without_amp_resumes_under_amp(motion_data, tmp_path, monkeypatch):
    """A run begun on the CPU (or --no-amp) resumed on a GPU with AMP: the empty GradScaler state it saved was
    loaded into an enabled scaler, and torch stopped the resume with a raw RuntimeError."""
    _killed_in_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(motion_data, tmp_path, epochs=2))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["scaler"] == {}
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: real("cpu", enabled=True))  # as on CUDA
    fit(_cfg(motion_data, tmp_path, epochs=2))
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_the_pretrained_weights_may_move_between_a_run_and_its_resumption(motion_data, tmp_path, monkeypatch):
    """The weights file read before the first epoch was a fixed setting: moved (another node, another folder),
    the resume was refused, and with the old path the file was not found."""
    from train.models import build_model

    torch.save(build_model("tiny", [4], 3, 40).trunk.state_dict(), tmp_path / "a.pth")
    _killed_in_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(motion_data, tmp_path / "run", pretrained=str(tmp_path / "a.pth")))
    monkeypatch.undo()
    (tmp_path / "a.pth").rename(tmp_path / "b.pth")
    with pytest.raises(ValueError, match=r"other settings \(pretrained="):  # one given or not is a setting
        fit(_cfg(motion_data, tmp_path / "run"))
    fit(_cfg(motion_data, tmp_path / "run", pretrained=str(tmp_path / "b.pth")))
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1
