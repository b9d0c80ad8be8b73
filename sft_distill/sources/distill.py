"""The distill mode (``sft-distill distill``): an existing instruction set, answered anew or judged.

The file is read by ``records`` and mapped by ``fields``. Without ``skip_generation`` the
teacher writes a new answer to every record (one request each) and the existing answer is kept
as ``reference_output``; with it, the existing answer is the output and no teacher call is made,
so the run only judges and filters a dataset someone already has. A record's source text column
(``source_text``, ``document``, ``passage``…, see ``fields``) becomes the sample's
``source_text``, which the checks (numbers, evidence, support) and the judges read, and its
evidence column the sample's ``evidence``; without one a sample has no source text: the
record's input is already shown to the judges as the sample's input, and repeating it as the
document would only double their tokens (and make a source-overlap gate compare the answer with
its own input). In the funnel,
``slices`` counts records taken in and ``chunks`` the records sent to the teacher (0 with
``skip_generation``); a teacher failure is a ``distill_answer`` failure, retried by a rerun.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ..errors import InputError, LLMError
from ..ids import file_digest, shard_of, stable_id
from ..llm.client import ChatResult, log_failure
from ..llm.json_extract import split_reasoning
from ..llm.prompts import ISET_PROMPT_VERSION, iset_answer_messages
from ..models import Failure, Sample, Slice
from ..stages.stream import bounded_map
from ..text import plural
from .base import SourceContext
from .fields import FieldMap, Record, _scan_records, detect_field_map
from .reader import BadLine
from .records import count_records, read_head

log = logging.getLogger(__name__)

__all__ = [
    "DistillSource",
    "RecordFileSource",
    "aiter_records",
    "parse_answer",
    "record_annotations",
    "teacher_answer",
]


_YIELD_EVERY = 64


# ---------------------------------------------------------------------------------------------
# Reading raw records


# ---------------------------------------------------------------------------------------------
# Field mapping


# ---------------------------------------------------------------------------------------------
# Mapping records


async def aiter_records(
    path: str | Path,
    fmap: FieldMap,
    ctx: SourceContext,
    *,
    output_required: bool = False,
    key_on_output: bool = False,
    skip: Callable[[dict[str, Any]], bool] | None = None,
    shard: tuple[int, int] | None = None,
) -> AsyncIterator[Record]:
    """``iter_records`` for a source: counts lines and records, reports bad lines to ``ctx``.

    With ``shard`` (index, count) only the records whose id hashes to that shard are yielded;
    every shard reads every line (a repeated record is found as in one pass), and the first
    alone counts the lines and the bad ones, so the shards' counts add up to a local run's.
    """
    index, count = shard or (0, 1)
    first_shard = index == 0

    def on_raw(line: int, usable: bool) -> None:
        if first_shard:
            ctx.stats.lines_read = max(ctx.stats.lines_read, line)
        if not usable:  # nothing to ask: done as soon as it is read; the rest once answered
            ctx.progress(1)

    def on_bad_line(bad: BadLine) -> None:
        if first_shard:
            ctx.on_bad_line(bad)

    records = _scan_records(
        path,
        fmap,
        output_required=output_required,
        key_on_output=key_on_output,
        on_bad_line=on_bad_line,
        strict=ctx.strict,
        skip=skip,
        on_raw=on_raw,
    )
    try:
        for n, record in enumerate(records, start=1):
            if n % _YIELD_EVERY == 0:
                # Reads are synchronous; let the requests in flight progress, also during a
                # long run of rows that are skipped.
                await asyncio.sleep(0)
            if record is None:
                continue
            if count > 1 and shard_of(record.slice_id, count) != index:
                continue
            ctx.stats.slices += 1
            ctx.on_slice(
                Slice(
                    id=record.slice_id,
                    content=record.instruction,
                    metadata=record.metadata,
                    line=record.line,
                )
            )
            yield record
    finally:
        records.close()


# ---------------------------------------------------------------------------------------------
# The teacher's answers


def parse_answer(result: ChatResult) -> tuple[str, str | None]:
    """(answer, reasoning) from a plain-text reply; reasoning from ``<think>`` or the API field.

    Raises:
        ValueError: the reply has no answer text (retried like a bad reply).
    """
    reasoning, content = split_reasoning(result.content)
    content = content.strip()
    if not content:
        raise ValueError("empty answer")
    return content, reasoning or result.reasoning


async def teacher_answer(
    ctx: SourceContext,
    instruction: str,
    input_text: str,
    *,
    failure_kind: str,
    slice_id: str,
    sample_id: str | None = None,
    document: str = "",
    reference: str = "",
) -> tuple[str, str | None] | None:
    """The teacher's (answer, reasoning) for one instruction; None after a failure (reported).

    ``document``/``reference``: an augmented variant's original source and answer.
    """
    cfg = ctx.config
    messages = iset_answer_messages(
        instruction,
        input_text,
        language=cfg.language,
        system_prompt=cfg.system_prompt,
        document=document,
        reference=reference,
    )
    teacher = ctx.teacher
    try:
        answer, _ = await teacher.chat(messages, parse_answer, kind="answer")
    except LLMError as exc:
        log_failure(log, f"{slice_id}: {failure_kind}", exc)
        ctx.stats.generation_failed_chunks += 1
        ctx.on_failure(
            Failure.from_error(exc, failure_kind, slice_id=slice_id, sample_id=sample_id)
        )
        return None
    return answer


# ---------------------------------------------------------------------------------------------
# The distill source


def record_annotations(record: Record, **extra: Any) -> dict[str, Any]:
    """What a sample records about its input record: line (or row) and system prompt."""
    notes: dict[str, Any] = {"line": record.line, **extra}
    if record.system:
        notes["system"] = record.system
    return notes


class RecordFileSource:
    """Base of the sources that read an instruction-set file (distill, augment).

    The field mapping is decided once from the file's first records; ``describe`` and ``total``
    make mapping errors surface before any output is made.
    """

    kind = "records"

    def __init__(self, path: str | Path, *, columns: FieldMap | None = None) -> None:
        self.path = Path(path)
        self.overrides = columns
        self._fmap: FieldMap | None = None
        self._total: int | None = None
        # (index, count): only the records whose id hashes to this shard (``ids.shard_of``).
        self.shard_index: tuple[int, int] | None = None

    def shard(self, index: int, count: int) -> RecordFileSource:
        """The same input, restricted to shard ``index`` of ``count`` (``--engine ray``)."""
        part = copy.copy(self)
        part.shard_index = (index, count)
        counts = getattr(self, "counts", None)
        if isinstance(counts, dict):  # a shard counts its own work
            part.counts = dict.fromkeys(counts, 0)  # type: ignore[attr-defined]
        return part

    def _head_records(self, head: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The first records the mapping is decided from."""
        return head

    def _output_needed(self) -> str | None:
        """Why an answer column is required (None: it is optional)."""
        return None

    def _identity(self) -> dict[str, Any]:
        """What besides the file and its columns identifies this source's input."""
        return {}

    @property
    def field_map(self) -> FieldMap:
        """The mapping decided from the file's first records (read once).

        Raises:
            InputError: unreadable file, no record, or no usable column (see ``detect_field_map``).
        """
        if self._fmap is None:
            head, bad = read_head(self.path)
            records = self._head_records(head)
            if not records:
                first = f"; first: {bad[0]}" if bad else ""
                raise InputError(
                    f"{self.path}: no record found ({plural(len(bad), 'bad line')}{first})"
                )
            self._fmap = detect_field_map(
                records, self.overrides, path=self.path, output_needed=self._output_needed()
            )
        return self._fmap

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "input": str(self.path.resolve()),
            "input_blake2b": file_digest(self.path),
            "columns": self.field_map.as_dict(),
            **self._identity(),
            **({"shard": list(self.shard_index)} if self.shard_index else {}),
        }

    def total(self) -> int | None:
        if self._total is None:
            self.field_map  # noqa: B018 - mapping errors surface before any output is made
            self._total = count_records(self.path)
        return self._total


class DistillSource(RecordFileSource):
    """An existing instruction set: the teacher answers each instruction anew, or is skipped."""

    kind = "distill"
    unit = "record"
    prompt_version = ISET_PROMPT_VERSION

    def __init__(
        self,
        path: str | Path,
        *,
        columns: FieldMap | None = None,
        skip_generation: bool = False,
    ) -> None:
        super().__init__(path, columns=columns)
        self.skip_generation = skip_generation

    def _output_needed(self) -> str | None:
        return "--skip-generation judges the existing answers" if self.skip_generation else None

    def _identity(self) -> dict[str, Any]:
        return {"skip_generation": self.skip_generation}

    def _sample(
        self, record: Record, output: str, reasoning: str | None, *, teacher_model: str = ""
    ) -> Sample:
        sid = stable_id("distill", record.slice_id, record.instruction, record.input, output)
        return Sample(
            id=sid,
            slice_id=record.slice_id,
            instruction=record.instruction,
            input=record.input,
            output=output,
            reasoning=reasoning,
            teacher_model=teacher_model,
            prompt_version=ISET_PROMPT_VERSION if teacher_model else "",
            source_kind=self.kind,
            reference_output=record.output,
            annotations=record_annotations(
                record, answer_source="teacher" if teacher_model else "reference"
            ),
            evidence=list(record.evidence),
            source_text=record.source_text,
            license=record.license,
            source=record.source,
        )

    async def samples(self, ctx: SourceContext) -> AsyncIterator[Sample]:
        records = aiter_records(
            self.path,
            self.field_map,
            ctx,
            output_required=self.skip_generation,
            key_on_output=self.skip_generation,
            shard=self.shard_index,
        )
        if self.skip_generation:
            async for record in records:
                assert record.output is not None  # output_required
                ctx.stats.samples_generated += 1
                ctx.progress(1)  # its answer is the one it has
                yield self._sample(record, record.output, record.reasoning)
            return

        async def answer(record: Record) -> Sample | None:
            ctx.stats.chunks += 1
            got = await teacher_answer(
                ctx,
                record.instruction,
                record.input,
                failure_kind="distill_answer",
                slice_id=record.slice_id,
            )
            ctx.progress(1)
            if got is None:
                return None
            ctx.stats.samples_generated += 1
            return self._sample(record, got[0], got[1], teacher_model=ctx.teacher.model)

        limit = 2 * ctx.teacher.config.max_concurrent
        async for sample in bounded_map(records, answer, limit=limit):
            if sample is not None:
                yield sample


# ---------------------------------------------------------------------------------------------
# Command line
