"""What a run did: per-video outcomes from the workers, and the run report the driver writes.

Every run writes its report to ``OUT/reports/run-<time>-<pid>.json`` and ``OUT/reports/latest.json``
(counts, failures, seconds and pairs/s, settings), where ``flowprep info`` finds it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from flowprep import __version__
from flowprep.base.durable import write_json
from flowprep.base.provenance import environment
from flowprep.store.format import LATEST_REPORT, REPORTS_DIR

log = logging.getLogger("flowprep")


@dataclass
class RunReport:
    """The report of one run of the batch driver (``to_dict()`` is the JSON written to ``OUT/reports``)."""

    state: str  # "complete", "interrupted" or "stopped"
    started: str
    seconds: float
    jobs: int
    runner: dict
    settings: dict
    solver: dict
    videos_requested: int
    videos_already_done: int
    videos_processed: int
    videos_ok: int  # partial videos included
    videos_partial: int  # of which only part decoded (kept; see `partial`)
    videos_failed: int
    failed_in_output: list[str]
    pairs: int
    pairs_per_second: float
    bytes: int
    shards_written: list[str]
    partial_in_output: list[str] = field(default_factory=list)  # partial videos in the output, this run's or not
    unreadable_shards: list[str] = field(default_factory=list)
    adopted_shards: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)  # {key, source, reason} of this run's failures
    partial: list[dict] = field(default_factory=list)  # {key, frames, announced_frames, reason} of this run's
    sources_changed: list[str] = field(default_factory=list)  # done before, extracted again: their file changed
    annotated_missing: int = 0  # clips the annotations list but no file holds (Kinetics --split-dir)
    missing_list: str = ""  # the file that lists them, one per line
    report_file: str = ""  # this report's file, relative to OUT ("": it could not be written, e.g. a full disk)
    stopped_by: str = ""  # why a run that did not complete stopped: the signal, or the error's first line
    flowprep_version: str = __version__
    environment: dict = field(default_factory=environment)  # what ran: versions, machine, command line

    @property
    def clean(self) -> bool:
        """True when nothing failed in the output, nothing annotated is missing and the output holds no partial
        video (the command's exit status is 1 otherwise): the same whether the run was interrupted and resumed."""
        return not (self.failed_in_output or self.annotated_missing or self.videos_partial or self.partial_in_output)

    def to_dict(self) -> dict:
        """The report as a JSON-able dict."""
        return asdict(self)


def write_report(out: Path, report: RunReport, started: datetime) -> None:
    """Write the report to ``out/reports`` (a run-<time>-<pid>.json and latest.json); a failure to write (a full
    disk) is logged, not raised: the run's own outcome stands."""
    rdir = out / REPORTS_DIR
    stamp = started.strftime("%Y%m%dT%H%M%S")
    report.report_file = str(LATEST_REPORT)
    try:
        rdir.mkdir(exist_ok=True)
        write_json(rdir / f"run-{stamp}-{os.getpid()}.json", report.to_dict())
        write_json(out / LATEST_REPORT, report.to_dict())
    except OSError as e:
        report.report_file = ""  # latest.json, if any, is an earlier run's: not to be shown as this one's
        log.warning("could not write the run report to %s: %s", rdir, e)
