"""What the final pass of a run must know of each streamed sample, in a few bytes each.

The raw file is streamed in completion order; at the end it is rewritten sorted by slice, chunk
and id, and the kept samples are split. For that the run keeps, per sample, its id and slice id
(string objects shared with the sample and the dedup index, not copies), its chunk, the byte
offset of its line, its score and whether it passed: about 40 bytes in flat arrays, where a
tuple per sample cost about 200.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator

from ..models import ScoredSample

__all__ = ["RunIndex"]


class RunIndex:
    """Per streamed sample: id, slice, chunk, raw-file offset, score and passed."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._slices: list[str] = []
        self._chunks = array("i")
        self._offsets = array("q")
        self._scores = array("d")
        self._passed = bytearray()

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, sample: ScoredSample, offset: int) -> None:
        """Record ``sample``, whose raw line starts at byte ``offset`` of the streamed file."""
        self.ids.append(sample.id)
        self._slices.append(sample.slice_id)
        self._chunks.append(sample.chunk_index)
        self._offsets.append(offset)
        self._scores.append(math.nan if sample.avg_score is None else sample.avg_score)
        self._passed.append(sample.passed)

    def passed(self) -> Iterator[tuple[str, str, float | None]]:
        """(id, slice id, score) of each sample that passed the thresholds, in stream order."""
        for i in range(len(self.ids)):
            if self._passed[i]:
                score = self._scores[i]
                yield self.ids[i], self._slices[i], None if math.isnan(score) else score

    def in_raw_order(self) -> Iterator[tuple[str, int]]:
        """(id, streamed offset) of every sample, sorted by slice, chunk and id."""
        ids, slices, chunks = self.ids, self._slices, self._chunks
        order = sorted(range(len(ids)), key=lambda i: (slices[i], chunks[i], ids[i]))
        for i in order:
            yield ids[i], self._offsets[i]
