"""Where samples come from: a mode is a different source of samples, not a second pipeline.

The pipeline runs any ``SampleSource`` through the same teacher client, gates, evaluators,
filter, resume cache and writers. ``SliceSource`` is the main job (knowledge slices -> teacher).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..config.models import DistillConfig
from ..llm.client import LLMClient
from ..models import Failure, Sample, Slice
from ..stages.generate import GenerationCounts
from .reader import DUPLICATE_KINDS, BadLine


@dataclass
class SourceCounts(GenerationCounts):
    """What a source counts: the input lines it read and the bad ones, then its teacher's work.

    The names are the funnel's (``metadata.json`` counts); a ``StageCounts`` has them all too.
    """

    lines_read: int = 0
    bad_lines: int = 0
    bad_line_reasons: dict[str, int] = field(default_factory=dict)
    duplicate_slices: int = 0
    # pii_scrub_slices: slices whose personal data was replaced, and what was found per type
    slices_with_pii: int = 0
    pii_in_slices: dict[str, int] = field(default_factory=dict)

    def add_slice_pii(self, counts: dict[str, int]) -> None:
        """Count one slice whose personal data was replaced before the teacher saw it."""
        self.slices_with_pii += 1
        for kind, n in counts.items():
            self.pii_in_slices[kind] = self.pii_in_slices.get(kind, 0) + n

    def add_bad_line(self, bad: BadLine) -> None:
        """Count a bad input line (a fixed line still runs and counts by kind only)."""
        self.bad_line_reasons[bad.kind] = self.bad_line_reasons.get(bad.kind, 0) + 1
        if bad.skipped:
            self.bad_lines += 1
            if bad.kind in DUPLICATE_KINDS:
                self.duplicate_slices += 1


@dataclass
class SourceContext:
    """What a source may use: the settings, the teacher, its counters and reporting hooks."""

    config: DistillConfig
    teacher: LLMClient
    stats: SourceCounts
    on_failure: Callable[[Failure], None]
    on_bad_line: Callable[[BadLine], None]
    progress: Callable[[int], None] = lambda n: None  # advance the bar of units answered
    on_slice: Callable[[Slice], None] = lambda s: None  # each slice (or unit) taken in
    strict: bool = False
    bad_examples: list[str] = field(default_factory=list)
    output_dir: Path | None = None  # where the run writes (a source may save files there)
    # pii_scrub_slices: text -> (text with personal data replaced, counts per type)
    scrub_text: Callable[[str], tuple[str, dict[str, int]]] | None = None


@runtime_checkable
class SampleSource(Protocol):
    """A stream of samples for the pipeline to judge, filter and write."""

    kind: str  # "slices", "topics", "distill", "augment"
    unit: str  # what the intake progress bar counts ("slice", "topic", "record")

    def describe(self) -> dict[str, Any]:
        """What identifies this source's input (file path and hash, topic...): no timestamps.

        Used to tell a resume from "another run" in the same output directory and written to
        ``manifest.json``.
        """
        ...

    def total(self) -> int | None:
        """How many units the progress bar should expect (None if unknown)."""
        ...

    def samples(self, ctx: SourceContext) -> AsyncIterator[Sample]:
        """The samples, streamed (an async generator)."""
        ...


def report_bad_line(ctx: SourceContext, bad: BadLine) -> None:
    """Count a bad input line in the source's counters and keep its message (the first 100)."""
    ctx.stats.add_bad_line(bad)
    if len(ctx.bad_examples) < 100:
        ctx.bad_examples.append(str(bad) + ("" if bad.skipped else " (kept after fixing)"))
