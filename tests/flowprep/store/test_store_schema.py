"""The per-video metadata is declared once (record.VideoInfo): the shard's names, the catalog entry, a run's
outcome, the reader's VideoMeta and `flowprep info`'s listing derive from it, and the format did not move."""
from __future__ import annotations

import ast
import inspect
from dataclasses import fields

import numpy as np
import pytest

from flowprep.store import format as F
from flowprep.store.reader import VideoMeta
from flowprep.store.record import INFO_FIELDS, LATER_FIELDS, VideoInfo, VideoOutcome, VideoRecord, read_info
from flowprep.store.writer import catalog_entry

from twostream_synth import make_record, motion_video


def test_the_shards_names_are_those_of_the_schema_and_those_of_docs_format_md():
    assert F.CATALOG_FIELDS == (*INFO_FIELDS, "bytes")
    assert F.VIDEO_ATTRS == (*(n for n in INFO_FIELDS if n != "key"), *F.JSON_ATTRS)
    assert F.LATER_ATTRS == {n: getattr(VideoInfo, n) for n in LATER_FIELDS}
    # the format itself (docs/FORMAT.md; the attributes in the order they are written) stays as it was
    assert F.VIDEO_ATTRS == ("status", "reason", "source", "source_bytes", "fps", "frames", "flows", "width", "height",
                             "source_width", "source_height", "announced_frames", "partial_reason", "solver", "timings")
    assert F.LATER_ATTRS == {"announced_frames": 0, "partial_reason": ""}


def test_a_record_outcome_and_meta_hold_the_schemas_fields_with_its_defaults():
    assert issubclass(VideoOutcome, VideoInfo) and issubclass(VideoMeta, VideoInfo)
    record = {f.name: f.default for f in fields(VideoRecord)}
    blank = VideoRecord("k", "s")
    assert {n: getattr(blank, n) for n in INFO_FIELDS if n not in ("key", "source")} == \
        {f.name: f.default for f in fields(VideoInfo) if f.name not in ("key", "source")}  # flows counted: 0
    # ... taken from VideoInfo, not written again
    body = ast.parse(inspect.getsource(VideoRecord)).body[0].body
    assert [s.target.id for s in body if isinstance(s, ast.AnnAssign) and isinstance(s.value, ast.Constant)
            and s.target.id in INFO_FIELDS] == []
    assert set(INFO_FIELDS) - set(record) == {"flows"}


def test_the_catalog_entry_and_the_outcome_copy_every_field_of_the_record():
    rec = make_record("C/v", *motion_video(np.random.default_rng(0), 1, 5, 32))
    rec.partial_reason, rec.announced_frames = "the stream broke", 9
    info = {n: getattr(rec, n) for n in INFO_FIELDS}
    assert catalog_entry(rec) == {**info, "bytes": rec.nbytes}
    outcome = VideoOutcome.of(rec, 1.23456)
    assert {n: getattr(outcome, n) for n in INFO_FIELDS} == info
    assert (outcome.bytes, outcome.seconds) == (rec.nbytes, 1.235)


def test_read_info_casts_to_the_declared_types_and_defaults_only_later_fields():
    stored = {"key": "C/v", "status": b"ok", "reason": "", "source": "/v.avi", "source_bytes": np.int64(10),
              "fps": "25.5", "frames": np.int64(7), "flows": 6, "width": 32.0, "height": 24, "source_width": 32,
              "source_height": 24}  # as a 0.1 shard stores them: no announced_frames nor partial_reason
    got = read_info(stored)
    assert got == {"key": "C/v", "status": "ok", "reason": "", "source": "/v.avi", "source_bytes": 10, "fps": 25.5,
                   "frames": 7, "flows": 6, "width": 32, "height": 24, "source_width": 32, "source_height": 24,
                   "announced_frames": 0, "partial_reason": ""}
    assert list(got) == list(INFO_FIELDS)
    assert [type(v).__name__ for v in got.values()] == [f.type for f in fields(VideoInfo)]  # str, int, float
    assert read_info(stored, key="given")["key"] == "given"
    with pytest.raises(KeyError):
        read_info({n: v for n, v in stored.items() if n != "frames"})
