"""The main job's source: JSONL knowledge slices, turned into samples by the teacher."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

from ..ids import file_digest, shard_of
from ..models import Sample, Slice
from ..stages.generate import generate_samples
from .base import SourceContext
from .jsonl import count_lines, refuse_delimited_file
from .reader import BadLine, ReadStats, read_slices


class SliceSource:
    """The main job: JSONL knowledge slices, turned into samples by the teacher."""

    kind = "slices"
    unit = "slice"

    def __init__(self, path: str | Path, *, shard: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self._lines: int | None = None
        # (index, count): only the slices whose id hashes to this shard (``ids.shard_of``).
        self.shard_index = shard

    def shard(self, index: int, count: int) -> SliceSource:
        """The same input, restricted to shard ``index`` of ``count`` (``--engine ray``)."""
        return SliceSource(self.path, shard=(index, count))

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "kind": self.kind,
            "input": str(self.path.resolve()),
            "input_blake2b": file_digest(self.path),
        }
        if self.shard_index is not None:
            described["shard"] = list(self.shard_index)
        return described

    def total(self) -> int | None:
        if self._lines is None:
            # also raises InputError for a missing file, a directory or a CSV file
            refuse_delimited_file(self.path)
            self._lines = count_lines(self.path)
        return self._lines

    async def samples(self, ctx: SourceContext) -> AsyncIterator[Sample]:
        read = ReadStats()

        # A shard reads every line; the first shard alone counts the lines and the bad ones, so
        # the shards' counts add up to a local run's.
        index, count = self.shard_index or (0, 1)
        counts_lines = index == 0

        async def counted(slices: AsyncIterable[Slice]) -> AsyncIterator[Slice]:
            async for s in slices:
                if counts_lines:
                    ctx.stats.lines_read = read.lines_read
                if count > 1 and shard_of(s.id, count) != index:
                    continue
                ctx.on_slice(s)
                yield s
            # Blank and bad lines after the last slice were read too.
            if counts_lines:
                ctx.stats.lines_read = read.lines_read

        def on_bad_line(bad: BadLine) -> None:
            if not counts_lines:
                return
            ctx.on_bad_line(bad)
            if bad.skipped:  # a line with nothing to ask is done as soon as it is read
                ctx.progress(1)

        slices = counted(
            read_slices(self.path, strict=ctx.strict, on_bad_line=on_bad_line, stats=read)
        )
        if ctx.scrub_text is not None:
            slices = scrubbed(slices, ctx)
        async for sample in generate_samples(
            slices,
            ctx.teacher,
            ctx.config,
            counts=ctx.stats,
            on_failure=ctx.on_failure,
            on_slice_done=lambda _sid: ctx.progress(1),  # a slice counts once it is answered
        ):
            yield sample


async def scrubbed(slices: AsyncIterable[Slice], ctx: SourceContext) -> AsyncIterator[Slice]:
    """Each slice with its personal data replaced (``pii_scrub_slices``), before any teacher
    request: the prompts, the cached replies and the judges' source text then hold none."""
    assert ctx.scrub_text is not None
    async for s in slices:
        text, counts = ctx.scrub_text(s.content)
        if counts:
            ctx.stats.add_slice_pii(counts)
            s = s.model_copy(update={"content": text})
        yield s
