"""``flowprep info OUT``: what an output folder holds (videos, frames, bytes, settings, failures)."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep info``."""
    p.add_argument("out", help="an output folder of `flowprep extract`")
    p.add_argument("--json", action="store_true", help="print one JSON object (with a `videos` list) instead")
    p.add_argument("--all", action="store_true", help="list every video, not only the failed and partial ones")


def run(args: argparse.Namespace) -> int:
    """Print the summary; exit 1 if any video failed, any shard is unreadable or a recorded video is missing."""
    from flowprep.datasets.listing import shown
    from flowprep.store.summary import summarize

    s = summarize(args.out)
    if args.json:
        print(json.dumps(s, indent=2))
        return _status(s)
    st = s["settings"]
    print(f"{s['folder']}: {s['shards']} shards, {s['shard_bytes'] / 1e6:.1f} MB")
    if s["writing"]:
        print(f"being written now ({s['writing']}): this is the part done so far")
    print(f"videos: {s['videos_ok']} ok ({s['videos_partial']} of them partial), {s['videos_failed']} failed; "
          f"{s['frames']} frames, {s['flows']} flows")
    if st:
        fl = st.get("flow", {})
        both = ", forward and backward (frame t+1 -> t; --backward)" if st.get("backward") else ""
        print(f"flow: {fl.get('algo')} {json.dumps(fl.get('params'))}{both}")
        print(f"quantization: {json.dumps(st.get('quantization'))}, JPEG quality {st.get('jpeg_quality')}, "
              f"rgb: {st.get('rgb')}, resize: {json.dumps(st.get('resize'))}")
    for v in s["videos"]:
        if args.all or v["status"] != "ok" or v["partial_reason"]:
            status = "partial" if v["partial_reason"] else v["status"]
            extra = f" {v['reason'] or v['partial_reason']}" if v["reason"] or v["partial_reason"] else ""
            print(f"  {status:7s} {shown(v['name'])}  frames={v['frames']} flows={v['flows']}{shown(extra)}")
    for p in s["unreadable_shards"]:
        print(f"  UNREADABLE {shown(p['shard'])}: {shown(p['reason'])}")
    missing = s["videos_missing"]
    for key in missing[:_SHOWN]:
        print(f"  MISSING {shown(key)}: recorded in index.jsonl, held by no shard")
    if missing:
        more = f" ({len(missing) - _SHOWN} more not shown)" if len(missing) > _SHOWN else ""
        print(f"{len(missing)} video(s) are missing{more}: `flowprep verify {args.out} --repair` brings them back")
    return _status(s)


_SHOWN = 20  # missing videos listed one per line; the rest are counted


def _status(s: dict) -> int:
    # 1 when a video failed, a shard is unreadable or a recorded video is missing
    return 1 if (s["videos_failed"] or s["unreadable_shards"] or s["videos_missing"]) else 0
