"""``flowprep info``: what an output folder holds (videos, frames, bytes, settings, failures)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import h5py

from flowprep.errors import FlowprepError, ShardError
from flowprep.shard import list_shards, read_shard_header


def summarize(out_dir: str | os.PathLike) -> dict:
    """Everything ``info`` reports, as a dict: settings, totals, one entry per video, unreadable shards.

    Each video entry has at least name, status, reason, frames, flows, shard, bytes.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FlowprepError(f"{out_dir} is not a folder; give the --out folder of `flowprep extract`")
    videos: dict[str, dict] = {}
    settings: dict = {}
    problems = []
    shards = list_shards(out)
    total_bytes = 0
    for path in shards:
        total_bytes += path.stat().st_size
        try:
            s, keys, _ = read_shard_header(path)
            settings = settings or s
            with h5py.File(path, "r") as f:
                for k in keys:
                    g = f["videos"][k]
                    a = g.attrs
                    nbytes = sum(int(sum(len(b) for b in g[n][()])) for n in ("rgb", "flow_x", "flow_y") if n in g)
                    entry = {"name": k, "status": str(a["status"]), "reason": str(a["reason"]),
                             "frames": int(a["frames"]), "flows": int(a["flows"]), "width": int(a["width"]),
                             "height": int(a["height"]), "source": str(a["source"]), "shard": path.name,
                             "bytes": nbytes}
                    if k not in videos or entry["status"] == "ok":  # a retried success replaces a failure
                        videos[k] = entry
        except (ShardError, OSError, KeyError) as e:
            problems.append({"shard": path.name, "reason": str(e)})
    vids = [videos[k] for k in sorted(videos)]
    ok = [v for v in vids if v["status"] == "ok"]
    last = out / "reports" / "latest.json"
    return {
        "folder": str(out),
        "settings": settings,
        "shards": len(shards),
        "shard_bytes": total_bytes,
        "videos_ok": len(ok),
        "videos_failed": len(vids) - len(ok),
        "frames": sum(v["frames"] for v in ok),
        "flows": sum(v["flows"] for v in ok),
        "unreadable_shards": problems,
        "last_run": json.loads(last.read_text()) if last.exists() else None,
        "videos": vids,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowprep info``."""
    p.add_argument("out", help="an output folder of `flowprep extract`")
    p.add_argument("--json", action="store_true", help="print one JSON object (with a `videos` list) instead")
    p.add_argument("--all", action="store_true", help="list every video, not only the failed ones")


def run(args: argparse.Namespace) -> int:
    """Print the summary; exit 1 if any video failed or any shard is unreadable."""
    s = summarize(args.out)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        st = s["settings"]
        print(f"{s['folder']}: {s['shards']} shards, {s['shard_bytes'] / 1e6:.1f} MB")
        print(f"videos: {s['videos_ok']} ok, {s['videos_failed']} failed; {s['frames']} frames, {s['flows']} flows")
        if st:
            fl = st.get("flow", {})
            print(f"flow: {fl.get('algo')} {json.dumps(fl.get('params'))}")
            print(f"quantization: {json.dumps(st.get('quantization'))}, JPEG quality {st.get('jpeg_quality')}, "
                  f"rgb: {st.get('rgb')}, resize: {json.dumps(st.get('resize'))}")
        for v in s["videos"]:
            if args.all or v["status"] != "ok":
                extra = f" {v['reason']}" if v["reason"] else ""
                print(f"  {v['status']:6s} {v['name']}  frames={v['frames']} flows={v['flows']}{extra}")
        for p in s["unreadable_shards"]:
            print(f"  UNREADABLE {p['shard']}: {p['reason']}")
    return 1 if (s["videos_failed"] or s["unreadable_shards"]) else 0
