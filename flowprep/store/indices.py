"""Frame and flow numbers as a reader takes them: what numpy users pass, made a list of ints, or refused in a line."""
from __future__ import annotations

import numpy as np


def as_indices(indices, length: int, what: str) -> list[int]:
    """``indices`` into a stream of ``length`` images (``what`` names it for messages) as a list of ints: an
    iterable of whole numbers, a slice, or a boolean mask over the stream (True and False were read as 1 and 0,
    floats were cut); anything else is refused in a line. The range is the reader's to check."""
    if isinstance(indices, slice):
        return list(range(length)[indices])
    if isinstance(indices, (int, np.integer, np.bool_, str, bytes)):
        raise TypeError(f"{what} indices: give a list (e.g. [{indices!r}]) or a slice, not one value")
    arr = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
    if arr.dtype == bool:
        if arr.shape != (length,):
            raise IndexError(f"a mask over {what} needs {length} entries, got {arr.shape}")
        return np.flatnonzero(arr).tolist()
    if arr.size and (arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{what} indices must be whole numbers in a flat list, got {arr.dtype} {list(arr.shape)}")
    return arr.astype(np.int64).tolist()
