"""denseflow / TSN folders with the annotation lists TSN's loaders read (yjxiong/tsn-pytorch's ``TSNDataSet``).

One line ``<folder> <count> <label>`` per video, as temporal-segment-networks' tools/build_file_list.py writes
them: ``<folder>`` is the video's absolute folder (tsn-pytorch's main.py and test_models.py give the dataset an
empty root and open ``os.path.join(folder, image_tmpl.format(idx))``); ``<count>`` is the number of images of
the list's kind: N frames in an RGB list, N - 1 flows in a flow list (with N, TSN asks for a flow past the
last one: FileNotFoundError on short videos, even in test mode); ``<label>`` counts from 0
(flowprep.interchange.labels). TSNDataSet reads indices 1..count, which is the ``tsn`` layout (numbered from
1); the ``denseflow`` layout, numbered from 0, gets the same lists, for loaders that start at 0 (mmaction2's
``start_index=0``).

List names are build_file_list.py's: ``<dataset>_{rgb,flow}_{train,val}_split_<N>.txt`` for each split
(Kinetics: ``kinetics_{rgb,flow}_{train,val}_list.txt``; each dataset's ``exports.tsn_list`` in
``flowprep.datasets.DATASETS``); without a dataset, ``rgb_list.txt`` and ``flow_list.txt`` name every video,
labelled by its class folder's place among the sorted class folders (none are written when a key has no class
folder: Kinetics' clips, labelled by its split files only).
TSNDataSet splits a line on single spaces, so a folder whose path holds whitespace is left out, and reported.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from flowprep.base.durable import write_text
from flowprep.datasets import DATASETS, exportable
from flowprep.datasets.listing import printable
from flowprep.datasets.splits import Split
from flowprep.errors import FlowprepError
from flowprep.interchange import FOLDER_FORMATS
from flowprep.interchange.denseflow import export_each, open_for_export
from flowprep.interchange.frames import safe_dir
from flowprep.interchange.labels import SUBSETS, dataset_splits, list_lines, members
from flowprep.store.reader import ShardSet
from flowprep.store.workspace import RunLock

RGB_TEMPLATE = "img_{:05d}.jpg"  # tsn-pytorch's image_tmpl for RGB
FLOW_PREFIX = "flow_"  # --flow_prefix: tsn-pytorch's Flow image_tmpl is flow_prefix + "{}_{:05d}.jpg"


@dataclass
class FolderExport:
    """What ``export_folders`` wrote."""

    videos: int = 0
    start: int = 1  # the index of each video's first file
    rgb_lists: list[str] = field(default_factory=list)  # file names: train then val, for each split
    flow_lists: list[str] = field(default_factory=list)
    not_listed: list[str] = field(default_factory=list)  # keys whose folder path holds whitespace
    listed: int = 0  # lines in the flow lists
    failed: dict[str, str] = field(default_factory=dict)  # key -> why it could not be read (not in the lists)
    usage: list[str] = field(default_factory=list)  # how to point TSN's (or another) loader at the lists
    no_lists: str = ""  # why no list was written (the frames are)


def list_names(split: Split | None, subset: str) -> tuple[str, str]:
    """The (RGB, flow) list names for a split's subset, as build_file_list.py names them (no split: all)."""
    if split is None:
        return "rgb_list.txt", "flow_list.txt"
    template = DATASETS[split.dataset].exports.tsn_list
    return tuple(template.format(name=split.dataset, what=what, subset=subset, split=split.split)
                 for what in ("rgb", "flow"))


def folder_labels(keys: list[str]) -> dict[str, int]:
    """Key -> the index of its class folder (the key's parent) among the sorted class folders; 0 when flat."""
    classes = sorted({k.rsplit("/", 1)[0] if "/" in k else "" for k in keys})
    index = {c: i for i, c in enumerate(classes)}
    return {k: index[k.rsplit("/", 1)[0] if "/" in k else ""] for k in keys}


def _groups(src: ShardSet, keys: list[str], dataset: str | None, split: int | None, split_dir: str | None,
            shards_dir: str) -> tuple[list[tuple[tuple[str, str], list[tuple[str, int]]]], str]:
    """((RGB list name, flow list name), [(key, label), ...]) for each pair of lists to write, and why there are
    none ("" when there are)."""
    if dataset is None:
        if flat := [k for k in keys if "/" not in k]:  # Kinetics' clips: every label 0, said nowhere
            return [], (f"{len(flat)} of the {len(keys)} videos have no class folder in their key (e.g. {flat[0]}) "
                        "to label them by: give --dataset, whose split files label them")
        labels = folder_labels(keys)
        return [(list_names(None, "all"), [(k, labels[k]) for k in keys])], ""
    if dataset not in exportable():
        raise FlowprepError(f"--dataset {dataset}: the TSN lists know {', '.join(exportable())}")
    groups = []
    for s in dataset_splits(dataset, shards_dir, split, split_dir):
        listed = members(src, s, set(keys))  # failed or never extracted: not in the lists
        groups += [(list_names(s, subset), [(k, label) for k, _, label in listed[subset]]) for subset in SUBSETS]
    return groups, ""


def export_folders(shards_dir: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "tsn",
                   dataset: str | None = None, split: int | None = None,
                   split_dir: str | os.PathLike | None = None, rgb: bool = True,
                   show_progress: bool = True) -> FolderExport:
    """Every ok video of a shard folder as a ``fmt`` ('tsn': from 1, 'denseflow': from 0) folder under
    ``out_dir``, and TSN-style lists of them (``dataset``'s splits, or one pair naming every video).

    Raises:
        FlowprepError: an unknown format or dataset, 12-bit flow, or no split files for ``dataset``.
    """
    if fmt not in FOLDER_FORMATS:
        raise FlowprepError(f"unknown folder format {fmt!r}; choose one of {', '.join(FOLDER_FORMATS)}")
    src = open_for_export(shards_dir, "denseflow/TSN")
    out, keys = Path(out_dir).resolve(), src.keys()
    if re.search(r"\s", str(out)):  # every video was left out of the lists, with exit 0
        raise FlowprepError(f"{out}: the path holds whitespace, and TSN's lists name each video by its full folder "
                            "path, split on whitespace; export to a path without spaces")
    if printable(str(out)) != str(out):  # the lists were not written, after every image (a raw encoder error)
        raise FlowprepError(f"{printable(str(out))}: the path is not valid UTF-8, and TSN's lists (UTF-8 text) name "
                            "each video by its full folder path; export to a path whose name is UTF-8")
    done = FolderExport(start=FOLDER_FORMATS[fmt])
    groups, done.no_lists = _groups(src, keys, dataset, split, None if split_dir is None else str(split_dir),
                                    str(shards_dir))
    with RunLock(out, "export", advice="or export to another folder", remove=True):  # two exports mixed files
        done.failed = export_each(src, [(k, safe_dir(out, k)) for k in keys], done.start, rgb, show_progress)
        done.videos = len(keys) - len(done.failed)
        with_rgb = rgb and src.has_rgb
        out.mkdir(parents=True, exist_ok=True)  # the lists, even of no video
        if not groups:  # nor an earlier export's, naming other folders
            for name in list_names(None, "all"):
                (out / name).unlink(missing_ok=True)
        for (rgb_name, flow_name), rows in groups:
            rgb_lines, flow_lines = [], []
            for key, label in rows:
                if key in done.failed:
                    continue
                lines = list_lines(src, key, safe_dir(out, key).as_posix(), label)
                if lines is None:
                    done.not_listed.append(key)
                    continue
                rgb_lines.append(lines[0])
                flow_lines.append(lines[1])
            if with_rgb:  # no RGB list without RGB images (--no-rgb), nor an earlier export's naming them
                write_text(out / rgb_name, "".join(rgb_lines))
                done.rgb_lists.append(rgb_name)
            else:
                (out / rgb_name).unlink(missing_ok=True)
            write_text(out / flow_name, "".join(flow_lines))
            done.flow_lists.append(flow_name)
            done.listed += len(flow_lines)
    done.not_listed = sorted(set(done.not_listed))
    done.usage = usage_lines(out, done, dataset) if groups else []
    return done


def usage_lines(out: Path, done: FolderExport, dataset: str | None) -> list[str]:
    """How to read the lists: tsn-pytorch's command lines (layout from 1), or a loader that starts at 0."""
    flow_tmpl = FLOW_PREFIX + "{}_{:05d}.jpg"
    if done.start != 1:
        return [f"files are numbered from {done.start}: a loader must start there (mmaction2: RawframeDataset("
                f"ann_file={str(out / done.flow_lists[0])!r}, data_prefix=dict(img=''), filename_tmpl='{flow_tmpl}', "
                f"start_index={done.start}, modality='Flow')); tsn-pytorch reads from 1: export with --format tsn"]
    lines = []
    for modality, names, tmpl, flags in (("RGB", done.rgb_lists, RGB_TEMPLATE, ""),
                                         ("Flow", done.flow_lists, flow_tmpl, f" --flow_prefix {FLOW_PREFIX}")):
        if names:
            train, val = out / names[0], out / names[min(1, len(names) - 1)]
            head = f"tsn-pytorch {modality} (image_tmpl '{tmpl}', from 1):"
            train, val = shlex.quote(str(train)), shlex.quote(str(val))  # a quote in a path: still one argument
            lines.append(f"{head} python main.py {dataset or 'DATASET'} {modality} {train} {val}{flags}")
            lines.append(f"{head} python test_models.py {dataset or 'DATASET'} {modality} {val} WEIGHTS{flags}")
    return lines
