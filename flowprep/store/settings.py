"""An output folder's settings: bound once by ``flowprep.json``, read back by every tool that needs them.

The first run writes ``flowprep.json`` (the settings' identity and the flowprep version); every later run must
ask for the same identity, so that one folder never mixes two kinds of flow. Folders written before
``flowprep.json`` existed are bound by their first shard's settings.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from flowprep import __version__
from flowprep.base.durable import write_json
from flowprep.errors import FlowprepError, SettingsMismatchError
from flowprep.store import format as F
from flowprep.store.shardfile import read_shard_header

SETTINGS_FILE = "flowprep.json"
log = logging.getLogger("flowprep")


def read_identity(out_dir: str | Path) -> dict | None:
    """The identity an output folder is bound to (from flowprep.json, else its first shard), or None if new."""
    out = Path(out_dir)
    path = out / SETTINGS_FILE
    if path.exists():
        try:
            return _identity_of(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise FlowprepError(f"{path} cannot be read ({e}); `flowprep verify --repair {out}` rewrites it from "
                                "the shards' settings") from None
    for shard in F.list_shards(out)[:1]:
        return shard_identity(read_shard_header(shard)[0])
    return None


def _identity_of(doc: object) -> dict:
    """flowprep.json's identity, checked whole: a key missing from it would be a setting never compared.

    Raises:
        ValueError: what is wrong with it.
    """
    ident = doc.get("identity") if isinstance(doc, dict) else None
    if not isinstance(ident, dict):
        raise ValueError("no 'identity' object in it")
    lacking = [k for k in F.IDENTITY_KEYS if k not in ident and k not in F.OPTIONAL_IDENTITY_KEYS]
    if lacking:
        raise ValueError(f"its identity lacks {', '.join(lacking)}")
    return ident


def holds_backward(out_dir: str | Path) -> bool:
    """Whether an output folder was extracted with ``--backward`` (its settings say so)."""
    return bool((read_identity(out_dir) or {}).get("backward"))


def shard_identity(settings: dict) -> dict:
    """The identity part of a shard's stored settings (they also name the solver that ran)."""
    return {k: settings.get(k) for k in F.IDENTITY_KEYS if k in settings or k not in F.OPTIONAL_IDENTITY_KEYS}


def settings_mismatch(settings: dict, identity: dict | None) -> str | None:
    """None when a shard's stored settings carry the folder's ``identity`` (or the identity is not known yet,
    None), else the first difference, named."""
    for k, want in (identity or {}).items():
        if settings.get(k) != want:
            return (f"it was written with other settings than {SETTINGS_FILE} ({k}: {settings.get(k)!r} in the "
                    f"shard, {want!r} in the folder)")
    return None


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: existing {va!r}, asked {vb!r}")
    return out


def _made_by(identity: dict) -> str:
    # which command wrote a folder of this identity (flowprep.interchange.importing.identity: algo "imported")
    return "import" if (identity.get("flow") or {}).get("algo") == "imported" else "extract"


def bind_settings(out_dir: str | Path, identity: dict, empty: bool = False) -> None:
    """Bind an output folder to a settings identity; refuse to mix other settings into it. Needs the run lock.
    ``empty``: the folder holds no video yet (no shard, none recorded), and is bound anew: a first run that
    failed before its first shard (no Dask scheduler, a typo in a flag) must not fix the folder's settings.

    Raises:
        SettingsMismatchError: the folder was written with different settings (each difference is listed).
    """
    out = Path(out_dir)
    have = read_identity(out)
    if have is not None and have != identity and not empty:
        made, asked = _made_by(have), _made_by(identity)
        if made != asked:  # every setting differs: one line, not a screen of them
            raise SettingsMismatchError(f"{out} holds flow made by `flowprep {made}`, which `flowprep {asked}` "
                                        "cannot add to: use a new --out folder")
        diffs = "; ".join(_diff(have, identity))  # one line (a log's grep finds it whole), every difference in it
        raise SettingsMismatchError(f"{out} was extracted with other settings ({diffs}): use a new --out folder, or "
                                    "repeat the original settings to resume")
    if have is not None and have != identity:
        log.info("%s holds no video yet: bound to the settings asked now, not an earlier run's", out)
    if have != identity or not (out / SETTINGS_FILE).exists():
        write_json(out / SETTINGS_FILE, {"identity": identity, "flowprep_version": __version__})
