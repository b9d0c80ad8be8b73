"""Stage 2: the teacher turns slices into instruction/response samples (an async generator)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..config.models import DistillConfig
from ..errors import LLMError
from ..ids import stable_id
from ..llm.client import ChatResult, LLMClient, log_failure
from ..llm.json_extract import extract_json, split_reasoning
from ..llm.prompts import GEN_PROMPT_VERSION, generation_messages
from ..models import Chunk, Failure, Sample, Slice
from ..sources.chunking import allocate_samples, split_text
from .stream import bounded_map

log = logging.getLogger(__name__)


@dataclass
class GenerationCounts:
    """What a teacher stage counts; the names are the funnel's (``metadata.json`` counts).

    ``slices`` are the units taken in (slices, topic leaves, records, samples to rephrase),
    ``chunks`` the teacher requests they make (chunks, question or rephrase requests).
    """

    slices: int = 0
    chunks: int = 0
    generation_failed_chunks: int = 0
    generation_unparsable_items: int = 0
    samples_generated: int = 0


_INSTRUCTION_KEYS = ("instruction", "question", "prompt", "query")
_OUTPUT_KEYS = ("output", "answer", "response")


def chunk_slice(slice_: Slice, *, samples_per_slice: int, chunk_chars: int) -> list[Chunk]:
    """Split a slice on paragraph then sentence boundaries; share the samples by length."""
    parts = split_text(slice_.content, chunk_chars)
    if not parts:
        return []
    shares = allocate_samples([len(p) for p in parts], samples_per_slice)
    return [
        Chunk(
            slice_id=slice_.id,
            index=i,
            total=len(parts),
            text=p,
            n_samples=n,
            metadata=slice_.metadata,
        )
        for i, (p, n) in enumerate(zip(parts, shares, strict=True))
    ]


async def iter_chunks(
    slices: AsyncIterable[Slice], config: DistillConfig, counts: GenerationCounts | None = None
) -> AsyncIterator[Chunk]:
    """Chunks of every slice, in input order, streamed."""
    async for slice_ in slices:
        chunks = chunk_slice(
            slice_, samples_per_slice=config.samples_per_slice, chunk_chars=config.chunk_chars
        )
        if counts is not None:
            counts.slices += 1
            counts.chunks += len(chunks)
        for chunk in chunks:
            yield chunk


def _first_str(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    for k in keys:
        v = item.get(k)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return ""


def parse_samples(result: ChatResult) -> list[dict[str, Any]]:
    """Valid sample dicts from a teacher reply.

    Raises:
        JSONExtractionError: no JSON in the reply.
        ValueError: JSON found but no usable sample in it (retried like a bad reply).
    """
    reasoning, content = split_reasoning(result.content)
    data = extract_json(content, expect=list)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON array of samples, got {type(data).__name__}")
    items = []
    for item in data:
        if not isinstance(item, dict):
            continue
        instruction = _first_str(item, _INSTRUCTION_KEYS)
        output = _first_str(item, _OUTPUT_KEYS)
        if not instruction or not output:
            continue
        inp = item.get("input")
        item_reasoning = item.get("reasoning") or item.get("reasoning_content")
        items.append(
            {
                "instruction": instruction,
                "input": inp.strip() if isinstance(inp, str) else "",
                "output": output,
                "reasoning": (item_reasoning if isinstance(item_reasoning, str) else None)
                or reasoning
                or result.reasoning,
                "_total": len(data),
            }
        )
    if not items:
        raise ValueError(f"no sample with both instruction and output among {len(data)} item(s)")
    return items


async def generate_chunk(
    chunk: Chunk,
    client: LLMClient,
    config: DistillConfig,
    *,
    counts: GenerationCounts | None = None,
    on_failure: Callable[[Failure], None] | None = None,
) -> list[Sample]:
    """Ask the teacher for one chunk's samples; a chunk that fails for good returns []."""
    messages = generation_messages(
        chunk.text, chunk.n_samples, language=config.language, system_prompt=config.system_prompt
    )
    try:
        items, _ = await client.chat(messages, parse_samples, kind="generation")
    except LLMError as exc:
        log_failure(log, f"slice {chunk.slice_id} chunk {chunk.index}: generation", exc)
        if counts is not None:
            counts.generation_failed_chunks += 1
        if on_failure is not None:
            on_failure(Failure.from_error(exc, "generation", slice_id=chunk.slice_id))
        return []
    samples: list[Sample] = []
    seen: set[str] = set()
    for item in items:
        sid = stable_id(
            chunk.slice_id, str(chunk.index), item["instruction"], item["input"], item["output"]
        )
        if sid in seen:  # the teacher repeated an item verbatim
            continue
        seen.add(sid)
        samples.append(
            Sample(
                id=sid,
                slice_id=chunk.slice_id,
                chunk_index=chunk.index,
                instruction=item["instruction"],
                input=item["input"],
                output=item["output"],
                reasoning=item["reasoning"],
                teacher_model=client.model,
                prompt_version=GEN_PROMPT_VERSION,
                source_text=chunk.text,
            )
        )
    if counts is not None:
        counts.samples_generated += len(samples)
        counts.generation_unparsable_items += max(0, items[0]["_total"] - len(items))
    return samples


async def generate_samples(
    slices: AsyncIterable[Slice],
    client: LLMClient,
    config: DistillConfig,
    *,
    counts: GenerationCounts | None = None,
    on_failure: Callable[[Failure], None] | None = None,
    on_slice_done: Callable[[str], None] | None = None,
) -> AsyncIterator[Sample]:
    """Yield samples as soon as each chunk's reply is parsed, while later slices are still read.

    ``on_slice_done`` is called with a slice's id once every chunk of it is answered (or failed).
    """
    limit = 2 * client.config.max_concurrent
    answered: dict[str, int] = {}  # slice id -> chunks answered, while some are not

    async def one(chunk: Chunk) -> list[Sample]:
        samples = await generate_chunk(chunk, client, config, counts=counts, on_failure=on_failure)
        if on_slice_done is not None:
            n = answered.pop(chunk.slice_id, 0) + 1
            if n < chunk.total:
                answered[chunk.slice_id] = n
            else:
                on_slice_done(chunk.slice_id)
        return samples

    async for samples in bounded_map(iter_chunks(slices, config, counts), one, limit=limit):
        for sample in samples:
            yield sample
