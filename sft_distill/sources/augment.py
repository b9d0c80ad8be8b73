"""Augmentation (``sft-distill augment``): N rephrasings of each kept sample, each answered anew.

Input: kept samples in any of our output formats (ShareGPT ``train.jsonl``, Alpaca, OpenAI
messages), our ``generated_raw.jsonl`` (only the samples it kept: ``passed`` and no
``drop_reason``), or any instruction set the field mapping of ``sources.distill`` reads. Every
sample needs its answer.

Per sample the teacher gets one request for N rephrasings (same meaning, different wording and
difficulty; a JSON list of strings) and then one request per rephrasing for its answer. The
requests depend only on the sample and N, so a rerun replays them from the cache.

Duplicates are removed at two levels:

1. Before any answer is paid for, a rephrasing is dropped when it is a near copy of its own
   original or of an earlier rephrasing of it (the same text after NFKC, case folding and
   removing spaces and punctuation, or a ``difflib`` ratio of at least ``NEAR_COPY_RATIO``), or
   when it is exactly the instruction of another sample of the input. It is recorded on the
   original as ``annotations["rephrasings_dropped"]`` (``instruction``, ``duplicate_of``) and
   counted in ``AugmentSource.counts``.
2. The originals are yielded too, with their own answers (``annotations["original"]``, no
   teacher call), so the pipeline judges originals and variants alike and its near-duplicate
   removal runs over both, keeping the best-scored of each group. Originals are therefore
   re-judged by this run's evaluators and appear in the output next to their variants: the
   output is the augmented dataset, whole.

A variant keeps its original's ``slice_id`` and input, so ``split_by: slice`` keeps an original
and its rephrasings in the same split (no paraphrase leaks from train into val). It is answered
and judged with what the original had: the original's answer as ``reference_output`` (the teacher
and the judges see it as a guide) and its source document as ``source_text``, when the input row
carries one in a ``source_text`` or ``document`` column. In the funnel,
``slices`` counts originals taken in and ``chunks`` rephrase requests; failures are
``augment_rephrase`` (the original is still yielded) or ``augment_answer``.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LLMError
from ..ids import stable_id, text_digest
from ..llm.client import ChatResult, log_failure
from ..llm.json_extract import extract_json, split_reasoning
from ..llm.prompts import ISET_PROMPT_VERSION, iset_rephrase_messages
from ..llm.structured import REPHRASE_KEYS
from ..models import Failure, Sample
from ..selection.dedup.jaccard import casefold_compact
from ..stages.stream import bounded_map
from .base import SourceContext
from .distill import RecordFileSource, aiter_records, record_annotations, teacher_answer
from .fields import FieldMap, Record, iter_records

log = logging.getLogger(__name__)

__all__ = [
    "MAX_NUM_AUG",
    "NEAR_COPY_RATIO",
    "AugmentSource",
    "filter_rephrasings",
    "instruction_digest",
    "is_near_copy",
    "parse_rephrasings",
    "record_source_text",
]

DEFAULT_NUM_AUG = 3
MAX_NUM_AUG = 20
# Rephrasings at least this similar (difflib ratio of the normalised texts) are near copies.
NEAR_COPY_RATIO = 0.9


def _key(text: str) -> str:
    return casefold_compact(text)


def is_near_copy(a: str, b: str, *, ratio: float = NEAR_COPY_RATIO) -> bool:
    """Whether two instructions are the same but for spacing, punctuation, case or a few letters."""
    ka, kb = _key(a), _key(b)
    if ka == kb:
        return True
    if not ka or not kb:
        return False
    m = difflib.SequenceMatcher(None, ka, kb, autojunk=False)
    return m.real_quick_ratio() >= ratio and m.quick_ratio() >= ratio and m.ratio() >= ratio


def instruction_digest(text: str) -> bytes:
    """8-byte key of an instruction's normalised text (exact-duplicate checks across samples)."""
    return text_digest(_key(text), size=8)


def filter_rephrasings(
    original_id: str,
    instruction: str,
    candidates: Sequence[str],
    known: dict[bytes, str] | None = None,
) -> tuple[list[str], list[dict[str, str]]]:
    """(kept, dropped) rephrasings of one sample's instruction.

    Dropped: near copies of the original or of a rephrasing kept before it, and exact
    instructions of another sample (``known``: digest of its key -> its id). Each dropped one
    says ``duplicate_of`` (the sample id it repeats) and why.
    """
    kept: list[str] = []
    dropped: list[dict[str, str]] = []
    for text in candidates:
        if is_near_copy(text, instruction):
            why, dup = "near copy of the original", original_id
        elif any(is_near_copy(text, k) for k in kept):
            why, dup = "near copy of another rephrasing", original_id
        elif (other := (known or {}).get(instruction_digest(text))) not in (None, original_id):
            why, dup = "instruction of another sample", str(other)
        else:
            kept.append(text)
            continue
        dropped.append({"instruction": text, "duplicate_of": dup, "reason": why})
    return kept, dropped


def parse_rephrasings(result: ChatResult, *, n: int) -> list[str]:
    """At most ``n`` distinct rephrasings from a reply holding a JSON list of strings.

    Raises:
        JSONExtractionError: no JSON in the reply.
        ValueError: no usable rephrasing in it (retried like a bad reply).
    """
    _, content = split_reasoning(result.content)
    data = extract_json(content, expect=list)
    out: list[str] = []
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict):
            item = next((item[k] for k in REPHRASE_KEYS if isinstance(item.get(k), str)), None)
        if isinstance(item, str) and item.strip() and item.strip() not in out:
            out.append(item.strip())
    if not out:
        raise ValueError("no rephrasing in the reply (expected a JSON list of strings)")
    return out[:n]


def record_source_text(record: Record) -> str:
    """The source document a record carries (its mapped ``source_text`` column, see ``fields``;
    a row of our raw file has none: the chunk text is never written out)."""
    return record.source_text if record.source_text.strip() else ""


def _is_not_kept(data: dict[str, Any]) -> bool:
    """A generated_raw.jsonl row the filter dropped (or that never passed)."""
    return data.get("passed") is False or bool(data.get("drop_reason"))


class AugmentSource(RecordFileSource):
    """Kept samples and, for each, up to N rephrasings answered by the teacher."""

    kind = "augment"
    unit = "sample"
    prompt_version = ISET_PROMPT_VERSION

    def __init__(
        self,
        path: str | Path,
        *,
        num_aug: int = DEFAULT_NUM_AUG,
        columns: FieldMap | None = None,
    ) -> None:
        if (
            isinstance(num_aug, bool)
            or not isinstance(num_aug, int)
            or not 1 <= num_aug <= MAX_NUM_AUG
        ):
            raise ConfigError(f"num_aug must be 1..{MAX_NUM_AUG} (an integer), got {num_aug!r}")
        super().__init__(path, columns=columns)
        self.num_aug = num_aug
        self.counts: dict[str, int] = {
            "originals": 0,
            "rephrasings": 0,
            "rephrasings_duplicate": 0,
            "variants": 0,
            "not_kept_skipped": 0,
        }

    def _head_records(self, head: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The mapping follows the kept rows of a generated_raw.jsonl, when there are any.
        return [r for r in head if not _is_not_kept(r)] or head

    def _output_needed(self) -> str | None:
        return "augment keeps each sample's answer"

    def _identity(self) -> dict[str, Any]:
        return {"num_aug": self.num_aug}

    def _known_instructions(self) -> dict[bytes, str]:
        """Digest of every original's normalised instruction -> its sample id (a quiet pass)."""
        known: dict[bytes, str] = {}
        for record in iter_records(
            self.path,
            self.field_map,
            output_required=True,
            key_on_output=True,
            on_bad_line=lambda bad: None,
            skip=_is_not_kept,
        ):
            known.setdefault(instruction_digest(record.instruction), record.key)
        return known

    def _original(self, record: Record) -> Sample:
        assert record.output is not None  # output_required
        return Sample(
            id=record.key,
            slice_id=record.slice_id,
            instruction=record.instruction,
            input=record.input,
            output=record.output,
            reasoning=record.reasoning,
            teacher_model=record.teacher_model,
            prompt_version=record.prompt_version,
            source_kind=self.kind,
            annotations=record_annotations(record, original=True),
            source_text=record_source_text(record),
            license=record.license,
            source=record.source,
        )

    async def _rephrase(self, record: Record, original: Sample, ctx: SourceContext) -> list[str]:
        messages = iset_rephrase_messages(
            record.instruction, record.input, self.num_aug, language=ctx.config.language
        )
        teacher = ctx.teacher
        try:
            texts, _ = await teacher.chat(
                messages,
                lambda result: parse_rephrasings(result, n=self.num_aug),
                kind="rephrasings",
            )
        except LLMError as exc:
            log_failure(log, f"{original.id}: rephrasing", exc)
            ctx.stats.generation_failed_chunks += 1
            ctx.on_failure(
                Failure.from_error(
                    exc, "augment_rephrase", slice_id=original.slice_id, sample_id=original.id
                )
            )
            return []
        return texts

    async def _variant(
        self, original: Sample, index: int, instruction: str, ctx: SourceContext
    ) -> Sample | None:
        # Answered and judged with what the original had: its source and its (kept) answer.
        got = await teacher_answer(
            ctx,
            instruction,
            original.input,
            failure_kind="augment_answer",
            slice_id=original.slice_id,
            sample_id=original.id,
            document=original.source_text,
            reference=original.output,
        )
        if got is None:
            return None
        answer, reasoning = got
        return Sample(
            id=stable_id("augment", original.id, instruction, original.input, answer),
            slice_id=original.slice_id,
            chunk_index=index,
            instruction=instruction,
            input=original.input,
            output=answer,
            reasoning=reasoning,
            teacher_model=ctx.teacher.model,
            prompt_version=ISET_PROMPT_VERSION,
            source_kind=self.kind,
            reference_output=original.output,
            annotations={"augmented_from": original.id, "variant": index},
            source_text=original.source_text,
            license=original.license,
            source=original.source,
        )

    async def _augment(
        self, record: Record, ctx: SourceContext, known: dict[bytes, str]
    ) -> list[Sample]:
        original = self._original(record)
        ctx.stats.chunks += 1
        candidates = await self._rephrase(record, original, ctx)
        kept, dropped = filter_rephrasings(original.id, record.instruction, candidates, known)
        if dropped:
            original.annotations["rephrasings_dropped"] = dropped
            log.info("%s: %d rephrasing(s) dropped as duplicates", original.id, len(dropped))
        self.counts["originals"] += 1
        self.counts["rephrasings"] += len(candidates)
        self.counts["rephrasings_duplicate"] += len(dropped)
        variants = await asyncio.gather(
            *(self._variant(original, i, text, ctx) for i, text in enumerate(kept, start=1))
        )
        out = [original, *(v for v in variants if v is not None)]
        self.counts["variants"] += len(out) - 1
        ctx.stats.samples_generated += len(out)
        return out

    async def samples(self, ctx: SourceContext) -> AsyncIterator[Sample]:
        # A full pass over the input: off the event loop, so signals and progress keep working.
        known = await asyncio.to_thread(self._known_instructions)

        # Every shard reads every line: the first alone counts the rows it skips.
        counts_skips = (self.shard_index or (0, 1))[0] == 0

        def skip(data: dict[str, Any]) -> bool:
            if _is_not_kept(data):
                self.counts["not_kept_skipped"] += counts_skips
                return True
            return False

        records = aiter_records(
            self.path,
            self.field_map,
            ctx,
            output_required=True,
            key_on_output=True,
            skip=skip,
            shard=self.shard_index,
        )

        async def one(record: Record) -> list[Sample]:
            samples = await self._augment(record, ctx, known)
            ctx.progress(1)  # a record counts once its rephrasings are answered
            return samples

        limit = 2 * ctx.teacher.config.max_concurrent
        async for group in bounded_map(records, one, limit=limit):
            for sample in group:
                yield sample
        log.info(
            "augment: %d originals, %d variants, %d duplicate rephrasing(s) dropped, "
            "%d not-kept row(s) skipped",
            self.counts["originals"],
            self.counts["variants"],
            self.counts["rephrasings_duplicate"],
            self.counts["not_kept_skipped"],
        )
