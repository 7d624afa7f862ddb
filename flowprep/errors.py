"""Exceptions raised by flowprep. Each names the file and the reason, and says what to do where it can."""
from __future__ import annotations


class FlowprepError(Exception):
    """Base class: a problem with the user's input or output that a message can explain."""


class VideoDecodeError(FlowprepError):
    """A video could not be decoded (missing, unreadable, corrupt, too few frames)."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # pickled whole (from a worker process): ``Exception``'s pickle passes only the message
        return type(self), (self.path, self.reason)


class ShardError(FlowprepError):
    """A shard is missing, truncated, corrupt, or of an unknown format version."""

    def __init__(self, path: str, reason: str, video: str | None = None):
        self.path = str(path)
        self.reason = reason
        self.video = video
        where = f"{path} (video {video})" if video else str(path)
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # pickled whole (from a worker process): ``Exception``'s pickle passes only the message
        return type(self), (self.path, self.reason, self.video)


class SettingsMismatchError(FlowprepError):
    """An output folder was written with other settings than the ones asked for now."""
