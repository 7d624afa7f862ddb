"""The command line: one module per verb, each a thin layer (its help is built without h5py or torch)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from flowprep.cli import VERBS, build_parser

_HELP = r'''
import sys
from flowprep.cli import build_parser
build_parser()
print(sorted(m for m in ("h5py", "torch", "joblib", "tqdm") if m in sys.modules))
'''


def _parser_giving(args):
    """A stand-in for build_parser whose parser parses any argv into ``args``."""
    return lambda *a: type("P", (), {"parse_known_args": lambda self, argv: (args, [])})()


def test_building_every_verbs_parser_imports_no_heavy_library():
    out = subprocess.run([sys.executable, "-c", _HELP], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_has_its_own_module_and_help(verb, capsys):
    module = VERBS[verb][0]
    assert module.startswith("flowprep.cli.")
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([verb, "--help"])
    assert e.value.code == 0 and f"flowprep {verb}" in capsys.readouterr().out


@pytest.mark.parametrize("verb, interrupted, rc", [("extract", True, 130), ("extract", False, 1), ("info", False, 0)])
def test_a_broken_pipe_ends_quietly_only_for_a_reader_that_had_enough(monkeypatch, verb, interrupted, rc):
    """`flowprep extract ... | tee log` under Ctrl-C: tee died first, the run's last words met a broken pipe, and
    exit 0 made run_pipeline.sh record the interrupted extraction as finished. `info | head` still ends 0."""
    import argparse
    import os

    import flowprep.cli as cli

    def run(args):
        if interrupted:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise BrokenPipeError(32, "Broken pipe") from None
        raise BrokenPipeError(32, "Broken pipe")

    args = argparse.Namespace(verb=verb, verbose=False, _run=run)
    monkeypatch.setattr(cli, "build_parser", _parser_giving(args))
    saved = os.dup(1)
    try:
        assert cli.main([]) == rc
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def test_a_ctrl_c_whose_message_meets_a_closed_stderr_still_exits_130(monkeypatch):
    """The "interrupted" line raised BrokenPipeError inside the handler: a traceback and exit 1."""
    import argparse

    import flowprep.cli as cli
    from train import cli as train_cli

    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    def run(args):
        raise KeyboardInterrupt

    args = argparse.Namespace(verb="extract", verbose=False, _run=run)
    monkeypatch.setattr(cli, "build_parser", _parser_giving(args))
    monkeypatch.setattr(train_cli, "build_parser", _parser_giving(args))
    monkeypatch.setattr(sys, "stderr", Closed())
    assert cli.main([]) == 130 and train_cli.main([]) == 130


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP", "SIGUSR1"])
def test_a_signal_stops_every_verb_as_a_ctrl_c_does_with_the_shells_status(monkeypatch, capsys, signum):
    """Slurm sends SIGTERM before it kills a job: only extract handled it; verify --repair died with no word.
    SIGHUP (an ssh session gone) and SIGUSR1 (Slurm's warning before a preemption) ended every verb at once, no
    report written; each stop said 130, a Ctrl-C's, where a requeue script looks for 128 + the signal."""
    import argparse
    import os
    import signal
    import time

    import flowprep.cli as cli

    sig = getattr(signal, signum)

    def run(args):
        os.kill(os.getpid(), sig)
        time.sleep(10)  # the signal ends this at once
        return 0

    from train import cli as train_cli

    before = signal.getsignal(sig)
    args = argparse.Namespace(verb="verify", verbose=False, _run=run)
    for prog, module in (("flowprep", cli), ("twostream", train_cli)):
        monkeypatch.setattr(module, "build_parser", _parser_giving(args))
        t0 = time.monotonic()
        assert module.main([]) == 128 + sig and time.monotonic() - t0 < 5
        assert capsys.readouterr().err == f"{prog} verify: interrupted\n"
        assert signal.getsignal(sig) is before


def test_an_os_error_is_one_line_that_names_the_path_and_what_to_do(tmp_path, capsys):
    """`--out` naming a file said "File exists" (read as the opposite of the problem); an errno error was
    printed raw ("[Errno 2] No such file or directory: '/proc/x'")."""
    import errno
    import os

    from flowprep.cli import main, os_error_line

    from videogen import write_shift_video

    write_shift_video(tmp_path / "ds" / "Cls" / "v.avi", [(1, 0)] * 2, size=(32, 24))
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["extract", "--root", str(tmp_path / "ds"), "--out", str(afile), "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"flowprep extract: error: {afile}: a file is where a folder must be: give a "
                                       "folder's path (new, or an earlier run's)\n")
    gone = os_error_line(FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/proc/x"))
    assert gone.startswith("/proc/x: No such file or directory (check that the path exists") and "Errno" not in gone
    assert os_error_line(FileNotFoundError("split file x.txt not found")) == "split file x.txt not found"
    # a folder where results.json goes: the rename of results.json.tmp failed, and the temporary name was given
    folder = IsADirectoryError(errno.EISDIR, "Is a directory", "run/results.json.tmp", None, "run/results.json")
    assert os_error_line(folder) == "run/results.json: a folder is where a file must be written: move it away, or " \
                                    "give another path"
    from train.cli import main as train_main  # the trainer's --out naming a file: said as flowprep says it

    assert train_main(["fit", "--shards", str(tmp_path), "--out", str(afile), "--device", "cpu"]) == 2
    assert f"{afile}: a file is where a folder must be" in capsys.readouterr().err



class _Dropped:
    """Sends this process a Ctrl-C from its __del__: the handler's KeyboardInterrupt is raised there, and Python
    drops it (as one landing in a DataLoader's weakref callback or a loky executor's bookkeeping)."""

    def __del__(self):
        import os
        import signal
        import time
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the signal ends this at once


@pytest.mark.parametrize("which", ["flowprep", "train"])
def test_a_ctrl_c_dropped_where_it_landed_still_ends_the_verb_with_130(monkeypatch, capsys, which):
    """Such a Ctrl-C let extract go on and exit 0, and run_pipeline.sh recorded the interrupted extraction as
    finished (CI caught it once)."""
    import argparse

    import flowprep.cli as cli
    from train import cli as train_cli

    module, prog = (cli, "flowprep") if which == "flowprep" else (train_cli, "twostream")

    def run(args):
        _Dropped()  # gone at once
        return 0

    args = argparse.Namespace(verb="extract", verbose=False, _run=run)
    monkeypatch.setattr(module, "build_parser", _parser_giving(args))
    assert module.main([]) == 130
    assert capsys.readouterr().err == f"{prog} extract: interrupted\n"


def test_verify_names_what_a_stopped_run_left_in_the_staging_folder(tmp_path, capsys):
    """After a kill -9 verify said OK while 18 MB of an unfinished chunk sat in OUT/tmp until the next run."""
    from flowprep.cli import main

    from fault_tools import FAST, make_dataset

    root = make_dataset(tmp_path / "data", 1)
    out = tmp_path / "out"
    assert main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0 and "a stopped run left" not in capsys.readouterr().err
    (out / "tmp" / "host-1-abcdef").mkdir(parents=True)
    (out / "tmp" / "host-1-abcdef" / "chunk-00000.h5.tmp").write_bytes(b"\0" * 2_000_000)
    assert main(["verify", str(out)]) == 0
    assert "holds 2.0 MB a stopped run left" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["extract", "--root", "r", "--out", ""], ["import", "in", " "], ["export", "s", ""]])
def test_an_empty_output_path_is_refused(argv, capsys):
    """'' (an unset shell variable) meant the current folder: a home folder's tmp/ became the staging folder."""
    from flowprep.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "an empty path would mean the current folder" in capsys.readouterr().err


def test_choices_come_from_the_tables_a_newcomer_extends(monkeypatch, capsys):
    """verify's --backend took any word (help text: "auto, opencv, torch", written by hand), and --split was 1-3
    by hand in fit and export while docs/EXTENDING.md says splits.SPLITS decides."""
    from flowprep.cli import build_parser
    from flowprep.datasets.splits import SPLITS

    with pytest.raises(SystemExit):
        build_parser().parse_args(["verify", "out", "--backend", "nonsense"])
    err = capsys.readouterr().err
    assert "invalid choice: 'nonsense'" in err and "opencv" in err.split("invalid choice")[1]
    export = build_parser().parse_args(["export", "s", "o", "--dataset", "ucf101", "--split", str(SPLITS[-1])])
    assert export.split == SPLITS[-1]


def test_verify_refuses_a_folder_flowprep_did_not_write(tmp_path, capsys):
    """It said "OK: every shard reads" with exit 0 of an empty folder or a folder of videos (a mistyped path),
    where info and export refuse it."""
    from flowprep.cli import main

    (tmp_path / "videos" / "Walk").mkdir(parents=True)
    (tmp_path / "videos" / "Walk" / "v_1.avi").write_bytes(b"x")
    for folder in (tmp_path / "videos", tmp_path / "videos" / "Walk"):
        assert main(["verify", str(folder)]) == 2
        err = capsys.readouterr().err
        assert "not an output folder of `flowprep extract` or `import`" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("command", [("flowprep.cli", ["info", "out", "--bogus"], "flowprep info"),
                                     ("train.cli", ["test", "--bogus", "--checkpoint", "c"], "twostream test")])
def test_an_unknown_option_is_refused_with_its_verbs_usage(command, capsys):
    """`flowprep extract ... --bogus` printed `usage: flowprep [-h] [--version] [-v] VERB ...`: the usage of the
    top-level parser, as if the verb had not been understood."""
    import importlib

    module, argv, prog = command
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"usage: {prog}" in err and f"{prog}: error: unrecognized arguments: --bogus" in err


def test_a_stop_whose_stdout_reader_is_gone_keeps_its_status(monkeypatch):
    """Slurm's SIGTERM reaches every process of a job, the log's `tee` too: the stopped command's last output
    could not be flushed, and CPython's flush at exit turned its 143 into 120."""
    import os

    from flowprep.cli import flush_or_drop

    r, w = os.pipe()
    os.close(r)  # the reader gone
    out = os.fdopen(w, "w")
    out.write("held in the buffer\n")
    monkeypatch.setattr(sys, "stdout", out)
    flush_or_drop()  # no BrokenPipeError
    out.write("more\n")
    out.flush()  # what CPython does at exit: now into /dev/null
    out.close()


def test_quality_size_in_the_wrong_form_says_the_form(capsys):
    """It said "invalid parse_size value: '10'" (a function's name) where extract and make-demo say the form."""
    from flowprep.cli import main

    with pytest.raises(SystemExit):
        main(["quality", "v.avi", "--size", "10"])
    assert "argument --size: size must look like WIDTHxHEIGHT (e.g. 340x256), got '10'" in capsys.readouterr().err


def test_a_setting_no_run_can_use_is_one_line_not_a_resume_advice(tmp_path, monkeypatch, capsys, caplog):
    """`extract --device cuda` on a machine without one said "Stopped after 0 of 1 shards; ... run the same command
    again to resume" before its error: nothing to resume, and the same command fails the same way."""
    from flowprep import solvers
    from flowprep.cli import main

    from fault_tools import make_dataset

    monkeypatch.setattr(solvers, "cuda_available", lambda: False)
    root = make_dataset(tmp_path / "ds", 1)
    assert main(["extract", "--dataset", "ucf101", "--root", str(root), "--out", str(tmp_path / "out"), "--jobs",
                 "1", "--device", "cuda", "--no-progress"]) == 2
    assert "sees no CUDA device" in capsys.readouterr().err and "Stopped" not in caplog.text
