"""mmaction2's rawframes: the tree and the annotation lists its ``RawframeDataset`` reads, both ways.

The tree, as mmaction2's data preparation documents it (tools/data/<dataset>/README.md)::

    <dir>/rawframes/<Class>/<video>/img_00001.jpg, flow_x_00001.jpg, flow_y_00001.jpg      (UCF-101, HMDB-51)
    <dir>/rawframes_{train,val}/<label>/<youtube_id>_<start>_<end>/...                      (Kinetics)

numbered from 1 (``start_index=1``); each dataset's tree and list names are its ``exports`` in
``flowprep.datasets.DATASETS``. The lists are named and written as tools/data/build_file_list.py does:
``<dataset>_{train,val}_split_<N>_rawframes.txt`` (``kinetics400_{train,val}_list_rawframes.txt``), one line
``<frame_dir> <frame count> <label>`` per video, labels from 0: UCF-101's from classInd.txt, HMDB-51's and
Kinetics' from the sorted class names (Kinetics' with spaces as underscores). A video of N frames has N - 1
flows, so a flow list is written beside each RGB list (``..._flow.txt``) with N - 1: build_file_list.py writes
only the RGB list, whose N makes mmaction2 ask for a flow image that does not exist (mmaction2#1812, #969).

mmaction2's ``Flip`` mishandles Flow read by ``RawFrameDecode`` (``FLIP_WARNING``): the export says so and
prints the alternatives, a ``FlowFlip`` transform (docs/SWITCHING.md) or no flip in mmaction2.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowprep.base.durable import write_text
from flowprep.datasets import DATASETS, exportable
from flowprep.datasets.listing import VideoTask, printable
from flowprep.datasets.splits import Split
from flowprep.errors import FlowprepError
from flowprep.interchange.denseflow import export_each, open_for_export
from flowprep.interchange.frames import safe_dir
from flowprep.interchange.labels import SUBSETS, dataset_splits, list_lines, members
from flowprep.store.reader import ShardSet
from flowprep.store.workspace import RunLock

LAYOUT = ("rawframes/<Class>/<video>/img_%05d.jpg, flow_x_%05d.jpg, flow_y_%05d.jpg from 1, and annotation lists "
          "such as ucf101_train_split_1_rawframes.txt (lines '<frame_dir> <frames> <label>')")
_LIST = re.compile(r"^(?P<name>.+?)_(?P<subset>train|val|test)_(?:split_(?P<split>\d)|list)"
                   r"_(?P<what>rawframes|flow)\.txt$")
TREES = ("rawframes", "rawframes_train", "rawframes_val", "rawframes_test", ".")
# mmaction2 1.x's Flip (mmaction/datasets/transforms/processing.py) negates a flipped Flow clip by inverting
# imgs[0::2], as if x and y images alternated; its RawFrameDecode stacks each flow's x and y into one (H, W, 2)
# image instead, so Flip inverts both components of frames 0, 2, 4, ... and neither of frames 1, 3, ...
FLIP_WARNING = ("WARNING: do not use mmaction2's Flip in a Flow pipeline. It assumes x and y flow images "
                "alternate, but RawFrameDecode stacks them (one (H, W, 2) image per flow): on a flipped clip it "
                "inverts x and y of frames 0, 2, 4, ... and neither of frames 1, 3, ...: the first get dy negated, the "
                "others keep dx, so every frame of a flipped clip shows wrong motion.")


@dataclass
class Export:
    """What ``export_mmaction2`` wrote."""

    videos: int = 0
    lists: list[str] = field(default_factory=list)  # file names, RGB then flow for each subset
    not_listed: list[str] = field(default_factory=list)  # keys mmaction2's lines cannot hold (whitespace)
    failed: dict[str, str] = field(default_factory=dict)  # key -> why it could not be read (not in the lists)
    config: list[str] = field(default_factory=list)  # the lines to put in an mmaction2 config
    flip: list[str] = field(default_factory=list)  # FLIP_WARNING and what to use instead of Flip for Flow


def _frame_dir(split: Split, key: str, class_name: str) -> str:
    ds = DATASETS[split.dataset]
    return ds.exports.frame_dir.format(key=key, cls=ds.class_folder(class_name))


def _tree(split: Split, subset: str) -> str:
    return DATASETS[split.dataset].exports.tree.format(subset=subset)


def _list_name(split: Split, subset: str, what: str) -> str:
    ex = DATASETS[split.dataset].exports
    name = ex.mmaction2_name(split) if ex.mmaction2_name else split.dataset
    return ex.mmaction2_list.format(name=name, subset=subset, split=split.split, what=what)


def export_mmaction2(shards_dir: str | os.PathLike, out_dir: str | os.PathLike, dataset: str,
                     split: int | None = None, split_dir: str | os.PathLike | None = None,
                     rgb: bool = True, show_progress: bool = True) -> Export:
    """The rawframes tree of every listed ok video and the annotation lists of each split (all three, or
    ``split``), as mmaction2 reads them (RGB only when ``rgb`` and the shards hold it); returns what was written
    and the config lines to use."""
    if dataset not in (known := exportable()):
        raise FlowprepError(f"--dataset {dataset}: mmaction2 export knows {', '.join(known[:-1])} and {known[-1]}")
    src = open_for_export(shards_dir, "mmaction2")
    out, done = Path(out_dir), Export()
    ok = set(src.keys())
    with_rgb = rgb and src.has_rgb
    written: set[tuple[str, str]] = set()
    splits = dataset_splits(dataset, str(shards_dir), split, None if split_dir is None else str(split_dir))
    jobs, pending = [], []  # (key, folder) to write; (list name, its (key, line)s or None: no list), written after
    for s in splits:
        listed = members(src, s, ok)  # failed or never extracted: not in the lists (as build_file_list.py)
        for subset in SUBSETS:
            tree = _tree(s, subset)
            rgb, flow = [], []
            for key, class_name, label in listed[subset]:
                frame_dir = _frame_dir(s, key, class_name)
                lines = list_lines(src, key, frame_dir, label)
                if lines is None:
                    done.not_listed.append(key)
                    continue
                rgb.append((key, lines[0]))
                flow.append((key, lines[1]))
                if (tree, frame_dir) not in written:
                    written.add((tree, frame_dir))
                    jobs.append((key, safe_dir(out / tree, frame_dir)))
            for what, lines in (("rawframes", rgb), ("flow", flow)):
                pending.append((_list_name(s, subset, what), lines if what == "flow" or with_rgb else None))
    if ok and not jobs and not done.not_listed:  # "exported 0 videos", exit 0
        raise FlowprepError(f"the {dataset} split files name none of the {len(ok)} videos in {shards_dir} (e.g. "
                            f"{sorted(ok)[0]}): check --dataset, --split and --split-dir")
    with RunLock(out, "export", advice="or export to another folder", remove=True):  # two exports mixed files
        done.failed = export_each(src, jobs, 1, with_rgb, show_progress)
        out.mkdir(parents=True, exist_ok=True)
        for name, lines in pending:  # last: a list names only frames that are all there (a kill, a bad shard)
            if lines is None:  # no RGB images (--no-rgb): no RGB list, nor an earlier export's naming them
                (out / name).unlink(missing_ok=True)
                continue
            write_text(out / name, "".join(line for key, line in lines if key not in done.failed))
            done.lists.append(name)
    done.videos = len(jobs) - len(done.failed)
    done.not_listed = sorted(set(done.not_listed))
    done.config = config_lines(out, splits[0], with_rgb)
    name = splits[0].dataset
    done.flip = ([FLIP_WARNING, *flip_lines(flow_zero(src))] if DATASETS[name].horizontal_flips else
                 [f"Flow and RGB train pipelines: no Flip ({name}'s classes change meaning in a mirror)"])
    return done


def config_lines(out: Path, split: Split, rgb: bool = True) -> list[str]:
    """The dataset settings of an mmaction2 config for the exported RGB (when ``rgb``) and flow lists of ``split``."""
    lines = []
    for modality, what, tmpl in (("RGB", "rawframes", "img_{:05}.jpg"), ("Flow", "flow", "flow_{}_{:05d}.jpg"))[
            0 if rgb else 1:]:
        for subset in ("train", "val"):
            ann, tree = str(out / _list_name(split, subset, what)), str(out / _tree(split, subset))
            lines.append(f"{modality} {subset}: dataset=dict(type='RawframeDataset', "  # repr: a quote in a path
                         f"ann_file={ann!r}, data_prefix=dict(img={tree!r}), "
                         f"filename_tmpl='{tmpl}', start_index=1, modality='{modality}')")
    return lines


def flow_zero(src: ShardSet) -> float | None:
    """The code of zero flow in the exported flow images (128 for flowprep's fixed bound, 127.5 for most flow
    imported from other tools), or None when it is not one value (adaptive quantization: one per image)."""
    zeros = {float(z) for k in src.keys()[:1] for z in np.unique(src.quant(k)[..., 1])}
    return zeros.pop() if len(zeros) == 1 else None


def flip_lines(zero: float | None) -> list[str]:
    """The alternatives to mmaction2's Flip for the exported flow: FlowFlip (docs/SWITCHING.md) or no flip."""
    if zero is None:
        return ["Flow train pipeline: no flip (zero flow has no single code in this flow, e.g. --adaptive); "
                "`python -m train fit --stream temporal` flips it correctly"]
    return [f"Flow train pipeline: dict(type='FlowFlip', flip_ratio=0.5, zero={zero:g}) in place of "
            "dict(type='Flip', flip_ratio=0.5), with custom_imports=dict(imports=['flow_flip']) "
            "(flow_flip.py: docs/SWITCHING.md)",
            "  or no flip: drop dict(type='Flip', ...) from the Flow train pipeline (`python -m train fit --stream "
            "temporal` flips flow correctly)"]


@dataclass
class Listed:
    """The videos mmaction2's lists name: tasks to import, each key's label, and which lists hold which key."""

    tasks: list[VideoTask]
    labels: dict[str, int]
    subsets: dict[tuple[str, int, str], list[str]]  # (dataset name, split, subset) -> keys
    by_stem: bool  # lists of a dataset keyed by clip stem (Kinetics'): frame dirs are <label>/<key>
    classless: frozenset[str] = frozenset()  # keys whose frame dir is in no class folder (Something-Something's)


def _tree_for(in_dir: Path, frame_dirs: list[str]) -> Path:
    """The folder below which a list's frame dirs are (rawframes, rawframes_train, ...): the first holding one."""
    for t in TREES:
        if any((in_dir / t / d).is_dir() for d in frame_dirs[:20]):
            return in_dir / t
    raise FlowprepError(f"{in_dir}: none of the lists' frame folders (e.g. {frame_dirs[0]}) is in "
                        f"{', '.join(TREES)}; expected {LAYOUT}")


def _relative(frame_dir: str) -> str:
    """A list's frame dir as the video's key: an absolute one (mmaction2 reads it as is, data_prefix unused) is
    taken from below its tree (/data/rawframes/Run/v_1 -> Run/v_1), else as <class>/<video>: the whole path made
    every key a path of the machine that wrote the list."""
    if not frame_dir.startswith("/"):
        return frame_dir
    parts = [p for p in frame_dir.split("/") if p]
    below = [i for i, p in enumerate(parts[:-1]) if p in TREES]
    return "/".join(parts[below[-1] + 1:] if below else parts[-2:])


def _parse_list(path: Path) -> list[tuple[str, int]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="surrogateescape").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3 or not parts[1].isdigit() or not parts[2].lstrip("-").isdigit():
            raise FlowprepError(f"{path}, line {i}: {line!r} is not '<frame_dir> <frames> <label>'")
        rows.append((parts[0], int(parts[2])))
    return rows


def list_mmaction2(in_dir: Path) -> Listed:
    """The videos of a rawframes folder, from its annotation lists (keys and labels as the lists say them)."""
    files = sorted(p for p in in_dir.glob("*.txt") if _LIST.match(p.name))
    if not files:
        raise FlowprepError(f"{in_dir}: no mmaction2 annotation lists (*_rawframes.txt, *_flow.txt); expected {LAYOUT}")
    tasks: dict[str, VideoTask] = {}
    labels: dict[str, int] = {}
    subsets: dict[tuple[str, int, str], list[str]] = {}
    in_subset: dict[tuple[str, int, str], set[str]] = {}
    classless: set[str] = set()
    by_stem = all(_keyed_by_stem(_LIST.match(p.name)["name"]) for p in files)
    for path in files:
        m = _LIST.match(path.name)
        rows = _parse_list(path)
        if not rows:
            continue
        tree = _tree_for(in_dir, [d for d, _ in rows])
        subset = (m["name"], int(m["split"] or 1), m["subset"])
        keys, seen = subsets.setdefault(subset, []), in_subset.setdefault(subset, set())  # a set: the RGB and
        # flow lists of a subset name the same videos, and a look-up in the list made reading them quadratic
        for listed_dir, label in rows:
            frame_dir = _relative(listed_dir)
            key = frame_dir.rsplit("/", 1)[-1] if by_stem else frame_dir
            if labels.setdefault(key, label) != label:
                raise FlowprepError(f"{path}: {frame_dir} has label {label}, another list gives {labels[key]}")
            tasks.setdefault(key, VideoTask(key, str(tree / listed_dir)))  # an absolute one: as is
            if "/" not in frame_dir.strip("/"):
                classless.add(key)
            if key not in seen:
                seen.add(key)
                keys.append(key)
    return Listed(sorted(tasks.values(), key=lambda t: t.key), labels, subsets, by_stem, frozenset(classless))


def _keyed_by_stem(list_name: str) -> bool:
    """Whether a list's name (kinetics400, ucf101, ...) is that of a dataset keyed by clip stem (Kinetics)."""
    return any(list_name.startswith(n) and d.by_stem for n, d in DATASETS.items())


def _class_names(listed: Listed) -> dict[int, str]:
    """label -> class name: the class folder of the label's videos (``label_<n>`` where they disagree, or where
    the frame dirs are in no class folder: mmaction2's Something-Something tree)."""
    names: dict[int, set[str]] = {}
    for t in listed.tasks:
        folder = None if t.key in listed.classless else Path(t.path).parent.name
        names.setdefault(listed.labels[t.key], set()).add(folder)
    return {label: (next(iter(n)) if len(n) == 1 and None not in n else f"label_{label}")
            for label, n in names.items()}


def _is_clip_key(key: str) -> bool:
    """Whether a key has Kinetics' form, "<youtube id>_<start>_<end>" (``kinetics.clip_key``)."""
    parts = key.rsplit("_", 2)
    return len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit()


def write_trainer_splits(listed: Listed, split_dir: Path) -> list[str]:
    """Split files beside the imported shards that ``python -m train`` reads: the folder format (classInd.txt,
    trainlist0N.txt, testlist0N.txt) for UCF-101/HMDB-51 lists and any other, train.csv/validate.csv for Kinetics
    lists.
    Names that are not UTF-8 are written as the shards key them, with \\xNN escapes. Returns the files written."""
    names = _class_names(listed)
    split_dir.mkdir(parents=True, exist_ok=True)
    written = []
    # Kinetics' CSVs need keys of its form (youtube id, start, end); another dataset keyed by stem (a new one
    # added after docs/EXTENDING.md) gets the folder format, whose "<class>/<stem>" names resolve to its keys
    if listed.by_stem and all(_is_clip_key(k) for k in listed.labels):
        for (_, _, subset), keys in sorted(listed.subsets.items()):
            rows = ["label,youtube_id,time_start,time_end,split"]
            for k in keys:
                yid, start, end = k.rsplit("_", 2)
                rows.append(f'"{names[listed.labels[k]]}",{yid},{int(start)},{int(end)},{subset}')
            fname = {"train": "train.csv", "val": "validate.csv", "test": "test.csv"}[subset]
            write_text(split_dir / fname, printable("\n".join(rows) + "\n"))
            written.append(fname)
        return written
    write_text(split_dir / "classInd.txt", printable("".join(f"{i + 1} {names[i]}\n" for i in sorted(names))))
    written.append("classInd.txt")
    for (_, n, subset), keys in sorted(listed.subsets.items()):
        fname = f"{'train' if subset == 'train' else 'test'}list{n:02d}.txt"
        # each line ends with its 1-based label, as UCF-101's do: a name that ends in " 2" stays whole
        write_text(split_dir / fname, printable("".join(f"{names[listed.labels[k]]}/{k.rsplit('/', 1)[-1]} "
                                                        f"{listed.labels[k] + 1}\n" for k in keys)))
        written.append(fname)
    return sorted(set(written))
