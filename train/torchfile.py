"""Reading a torch file (a checkpoint, or pre-trained weights) with its bytes checked first.

``torch.save`` writes a zip archive with a CRC-32 per entry that ``torch.load`` never looks at: a damaged
checkpoint loaded and trained to a NaN loss, and pre-trained weights with one flipped bit trained silently. Here
every entry's CRC is checked before loading, and whatever still fails is one line that names the file.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from typing import Any

import torch

from flowprep.base.durable import zip_crc_failure


def _starts_as_pickle(path: str | os.PathLike) -> bool:
    """A zip (torch's format), or a pickle of protocol 2 or later (its pre-1.6 one): random bytes were said to
    hold "Python objects besides tensors"."""
    with open(path, "rb") as f:
        return zipfile.is_zipfile(path) or f.read(1) == b"\x80"


class CheckpointError(ValueError):
    """A torch file that is empty, truncated, damaged or not of the kind asked for: the message names it and says
    what to do."""


def read_torch_file(path: str | os.PathLike, again: str, weights_only: bool, legacy: bool = False) -> Any:
    """``torch.load(path)`` on the CPU, after checking the CRC-32 of every entry of the file's zip archive.

    Args:
        path: the file.
        again: what the user should do about a bad file, ending each message.
        weights_only: torch.load's (True: tensors and plain containers only).
        legacy: also take torch's pre-1.6 format, which is not a zip and has no CRCs (old published weights).
    Raises:
        CheckpointError: empty, truncated, damaged, or not loadable.
    """
    if not zipfile.is_zipfile(path):
        if not legacy or os.path.getsize(path) == 0:
            raise CheckpointError(f"{path}: not a complete torch file (empty, truncated or written by another "
                                  f"program); {again}")
    else:
        try:
            bad = zip_crc_failure(path)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise CheckpointError(f"{path}: unreadable ({e}); {again}") from e
        if bad is not None:
            raise CheckpointError(f"{path}: damaged ({bad} fails its CRC-32 check); {again}")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as e:
        if not _starts_as_pickle(path):
            raise CheckpointError(f"{path}: not a torch file (nor any pickle); {again}") from e
        if weights_only and "Weights only load failed" in str(e):  # torch's words: "two options ... trust"
            raise CheckpointError(f"{path}: holds Python objects besides tensors, which are not read from a weights "
                                  f"file (a checkpoint, or another tool's pickle); {again}") from e
        raise CheckpointError(f"{path}: not a torch file ({' '.join(str(e).split())[:120]}); {again}") from e
    except KeyError as e:  # a pre-1.6 read of a file that is no pickle at all (a text file: KeyError 101)
        raise CheckpointError(f"{path}: not a torch file (nor any pickle); {again}") from e
    except Exception as e:  # what the CRCs cannot see (a file of another program): one line, not a traceback
        reason = (re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines() or [""])[0][:200]  # no ANSI colours
        raise CheckpointError(f"{path}: cannot be loaded ({type(e).__name__}: {reason}); {again}") from e
