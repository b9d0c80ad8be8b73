"""What the final pass needs of each judged sample, gathered as the samples stream by.

A run (as each sample is judged) and ``refilter`` (as it re-reads the raw file) both feed every
sample here: its line goes to the streamed raw file and its place to the ``RunIndex``, its
figures to the report, and, when it passed, its text to the deduplicator. ``finalize`` then
needs no second pass over the raw file.
"""

from __future__ import annotations

from ..models import ScoredSample
from ..outputs.report import ReportBuilder
from ..outputs.writers import JsonlWriter
from .dedup.base import Deduplicator
from .run_index import RunIndex


class Collector:
    """Each judged sample's line, index entry, report figures and (if it passed) dedup entry."""

    def __init__(self, raw: JsonlWriter, report: ReportBuilder, dedup: Deduplicator | None) -> None:
        self.raw = raw
        self.report = report
        self.dedup = dedup
        # id, slice, chunk, raw offset, score and passed of each sample: the final pass sorts
        # the raw file and splits the kept samples from this alone (about 40 bytes a sample).
        self.index = RunIndex()
        self.passed = 0

    def add(self, sample: ScoredSample, *, sketched: bool = False) -> None:
        """Record one sample whose thresholds are decided.

        ``sketched``: the deduplicator has it already (a shard's saved signatures).
        """
        self.report.add(sample, decided=True)
        if sample.passed:
            self.passed += 1
            if self.dedup is not None and not sketched:
                self.dedup.add(sample.id, sample.text_for_dedup, sample.avg_score or 0.0)
        self.index.add(sample, self.raw.write(sample.model_dump(mode="json")))

    async def duplicates(self) -> dict[str, str]:
        """Dropped id -> the kept id it repeats, among the samples that passed."""
        if self.dedup is None or not self.passed:
            return {}
        return await self.dedup.aresolve()
