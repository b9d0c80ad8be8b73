"""What both deduplicators share: the protocol, the greedy order, the texts spilled to disk."""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import weakref
from array import array
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...errors import OutputError

DEFAULT_JACCARD_THRESHOLD = 0.8


DEFAULT_COSINE_THRESHOLD = 0.95


class Deduplicator(Protocol):
    """What the filter needs from a deduplicator: add samples, then map dropped id -> kept id."""

    def add(self, sample_id: str, text: str, score: float) -> None: ...

    async def aresolve(self) -> dict[str, str]: ...

    def close(self) -> None: ...

    def __len__(self) -> int: ...


def best_first(ids: list[str], scores: Any) -> np.ndarray:
    """Sample indices best first: score descending, then id ascending (the keep order)."""
    n = len(ids)
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[sorted(range(n), key=ids.__getitem__)] = np.arange(n)
    values = np.frombuffer(scores, dtype=np.float64) if n else np.empty(0)
    return np.lexsort((id_rank, -values))


class TextSpill:
    """Append-only temporary file of byte strings: 8 bytes of RAM (an end offset) per entry."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (lives with self)
        # Closed with its owner (or at exit) without a ResourceWarning.
        self._finalizer = weakref.finalize(self, self._file.close)
        self._ends = array("q")

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def nbytes(self) -> int:
        """Bytes written to the file."""
        return self._ends[-1] if self._ends else 0

    def extend(self, blobs: list[bytes]) -> None:
        """Append ``blobs`` in one write.

        Raises:
            OutputError: the file cannot grow (e.g. the disk is full).
        """
        try:
            self._file.seek(0, os.SEEK_END)
            self._file.write(b"".join(blobs))
        except OSError as exc:
            raise OutputError(f"cannot write the dedup spill file: {exc.strerror or exc}") from exc
        ends = list(itertools.accumulate(map(len, blobs), initial=self.nbytes))
        self._ends.extend(ends[1:])

    def get(self, i: int) -> bytes:
        """The ``i``-th blob, read back from the file.

        Raises:
            OutputError: buffered writes cannot be flushed first (e.g. the disk is full).
        """
        start = self._ends[i - 1] if i else 0
        try:
            self._file.seek(start)
            return self._file.read(self._ends[i] - start)
        except OSError as exc:
            raise OutputError(f"cannot write the dedup spill file: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Delete the file; safe to call twice."""
        # Closing flushes what is buffered; on a full disk that fails, and the file is being
        # deleted anyway (the error worth reporting, if any, was raised when writing).
        with contextlib.suppress(OSError):
            self._finalizer()
