"""``flowprep verify --repair``: remove the damage ``verify_folder`` found, then extract the lost videos again
from their recorded sources with the folder's own settings (or, for a folder ``flowprep import`` wrote, import
them again from their recorded folders, through the ``reimport`` the caller passes: importing is a layer above)."""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

from flowprep.datasets.listing import VideoTask, shown
from flowprep.errors import FlowprepError
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig, folder_config
from flowprep.extraction.report import RunReport
from flowprep.runners import Runner
from flowprep.store.settings import read_identity
from flowprep.store.staging import remove_staging
from flowprep.store.verify import Findings, remove_damage, repair_folder_files
from flowprep.store.workspace import RunLock

log = logging.getLogger("flowprep")
IMPORTED = "imported"  # the flow algorithm in the identity of a folder `flowprep import` wrote
# (videos, the output folder, its identity, runner, show_progress, the folder's lock held) -> the run's report
Reimport = Callable[[list[VideoTask], Path, dict, "Runner | None", bool, RunLock], RunReport]


def is_imported(identity: dict | None) -> bool:
    """Whether a folder of this identity was written by ``flowprep import`` (its flow was computed elsewhere)."""
    return isinstance(identity, dict) and isinstance(identity.get("flow"), dict) \
        and identity["flow"].get("algo") == IMPORTED


def _keep_without_source(findings: Findings) -> Findings:
    """The findings less the damaged videos whose source is gone: removed, such a video could not be extracted
    again, and a readable video with one bad image would become "failed: file not found". They stay as they are,
    named, for verify to find again once the source is back."""
    gone = sorted(d.key for d in findings.damage if d.key and not os.path.exists(findings.sources.get(d.key) or ""))
    if not gone:
        return findings
    log.warning("%d damaged video(s) are left as they are: their source is gone (e.g. %s, from %s); restore it and "
                "run `flowprep verify --repair` again", len(gone), shown(gone[0]), shown(findings.sources.get(gone[0])
                                                                                     or "no recorded source"))
    return replace(findings, damage=[d for d in findings.damage if d.key not in gone],
                   missing=[k for k in findings.missing if k not in gone])


def repair(out_dir: str | os.PathLike, findings: Findings, runner: Runner | None = None, backend: str = "auto",
           device: str = "auto", show_progress: bool = False, reimport: Reimport | None = None,
           lock: RunLock | None = None) -> RunReport:
    """Remove the damage found and extract (or import) the missing videos again; return that run's report.

    Args:
        out_dir: the output folder.
        findings: what ``verify_folder`` found there: found under ``lock``, so that no run changed the folder
            since (``flowprep verify --repair`` takes the lock, then verifies).
        lock: the folder's RunLock, held by the caller for the whole repair (else taken here, after the
            findings were made: another run may have changed the folder in between).
        runner: where the re-extraction runs (default: local worker processes).
        backend, device: the flow solver's (the folder's settings decide everything else).
        show_progress: draw the extraction's progress bar.
        reimport: how a folder written by ``flowprep import`` gets its videos back
            (flowprep.interchange.importing.reimport); without it such a folder is refused before anything changes.
    Raises:
        FlowprepError: another run holds the folder, a missing video's source is unknown, or the folder was
            imported and no ``reimport`` was given.
    """
    out = Path(out_dir)
    ident = findings.identity if findings.identity is not None else read_identity(out)
    imported = is_imported(ident)
    if imported and reimport is None:
        raise FlowprepError(f"{out} was written by `flowprep import`: its videos are imported again, not extracted; "
                            "pass reimport=flowprep.interchange.importing.reimport (`flowprep verify --repair` does)")
    config = None
    if not imported:  # settings checked before anything changes; a damaged flowprep.json: the shards' settings
        config = ExtractConfig.from_identity(findings.identity, backend, device) if findings.identity is not None \
            else folder_config(out, backend, device)
    findings = _keep_without_source(findings)
    with contextlib.nullcontext(lock) if lock else RunLock(out, "verify --repair", advice="") as held:
        try:
            for a in repair_folder_files(out, findings) + remove_damage(out, findings, held.run_id):
                log.info("%s", a)
        finally:
            remove_staging(out, held.run_id)
        # what verify found missing stays missing: removing the damage keeps every intact video and the index
        # (verifying again would also lose a damaged video that the index does not record); remove_damage adds
        # the videos of a shard it had to move aside whole
        missing = findings.missing
        unknown = [k for k in missing if not findings.sources.get(k)]
        if unknown:
            again = "import" if imported else "extract"
            raise FlowprepError(f"the sources of {', '.join(unknown)} are not recorded; run the original "
                                f"`flowprep {again}` command again to {again} them")
        tasks = [VideoTask(k, findings.sources[k]) for k in missing]
        if imported:
            return reimport(tasks, out, ident, runner, show_progress, held)
        return extract_dataset(tasks, out, config, runner=runner, show_progress=show_progress, lock=held)
