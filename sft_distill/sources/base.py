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
from ..models import Failure, Sample, Slice, StageCounts
from .reader import DUPLICATE_KINDS, BadLine


@dataclass
class SourceContext:
    """What a source may use: the settings, the teacher, counters and reporting hooks."""

    config: DistillConfig
    teacher: LLMClient
    stats: StageCounts
    on_failure: Callable[[Failure], None]
    on_bad_line: Callable[[BadLine], None]
    progress: Callable[[int], None] = lambda n: None  # advance the bar of units answered
    on_slice: Callable[[Slice], None] = lambda s: None  # each slice (or unit) taken in
    strict: bool = False
    bad_examples: list[str] = field(default_factory=list)
    output_dir: Path | None = None  # where the run writes (a source may save files there)


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
    """Count a bad input line in the funnel (fixed lines still run and count by kind only)."""
    stats = ctx.stats
    stats.bad_line_reasons[bad.kind] = stats.bad_line_reasons.get(bad.kind, 0) + 1
    if bad.skipped:
        stats.bad_lines += 1
        if bad.kind in DUPLICATE_KINDS:
            stats.duplicate_slices += 1
    if len(ctx.bad_examples) < 100:
        ctx.bad_examples.append(str(bad) + ("" if bad.skipped else " (kept after fixing)"))
