"""``flowprep verify --repair``: remove the damage ``verify_folder`` found, then extract the lost videos again
from their recorded sources with the folder's own settings."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flowprep.datasets.listing import VideoTask
from flowprep.errors import FlowprepError
from flowprep.extraction.batch import extract_dataset
from flowprep.extraction.config import ExtractConfig, folder_config
from flowprep.extraction.report import RunReport
from flowprep.runners import Runner
from flowprep.store.verify import Findings, remove_damage, repair_folder_files
from flowprep.store.workspace import RunLock, remove_staging

log = logging.getLogger("flowprep")


def repair(out_dir: str | os.PathLike, findings: Findings, runner: Runner | None = None, backend: str = "auto",
           device: str = "auto", show_progress: bool = False) -> RunReport:
    """Remove the damage found and extract the missing videos again; return the extraction's report.

    Args:
        out_dir: the output folder.
        findings: what ``verify_folder`` found there.
        runner: where the re-extraction runs (default: local worker processes).
        backend, device: the flow solver's (the folder's settings decide everything else).
        show_progress: draw the extraction's progress bar.
    Raises:
        FlowprepError: another run holds the folder, or a missing video's source is unknown.
    """
    out = Path(out_dir)
    config = ExtractConfig.from_identity(findings.identity, backend, device) if findings.identity is not None \
        else folder_config(out, backend, device)  # a damaged flowprep.json: the shards' settings
    with RunLock(out, "verify --repair") as lock:
        try:
            for a in repair_folder_files(out, findings) + remove_damage(out, findings, lock.run_id):
                log.info("%s", a)
        finally:
            remove_staging(out, lock.run_id)
    # what verify found missing stays missing: removing the damage keeps every intact video and the index
    # (verifying again would also lose a damaged video that the index does not record); remove_damage adds the
    # videos of a shard it had to move aside whole
    missing = findings.missing
    unknown = [k for k in missing if not findings.sources.get(k)]
    if unknown:
        raise FlowprepError(f"the source videos of {', '.join(unknown)} are not recorded; run the original "
                            "`flowprep extract` command again to extract them")
    tasks = [VideoTask(k, findings.sources[k]) for k in missing]
    return extract_dataset(tasks, out, config, runner=runner, show_progress=show_progress)
