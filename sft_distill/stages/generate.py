"""Stage 2: the teacher turns slices into instruction/response samples (an async generator).

Each chunk is shown with where it comes from (the slice's title and the headings above it) and
asked for its share of samples (``samples_per_slice``) or as many as its text calls for (a
density setting), with a planned mix of question types and difficulties; a chunk asking more
than ``max_samples_per_request`` is asked in several requests over ranges of its articles
(``sources.plan``). The requests of one slice run in order, each shown the questions already
made for the slice so that later chunks do not ask them again in other words; slices run
concurrently. A question that repeats an earlier one of its slice (exactly once normalised, or
by character 3-gram Jaccard >= 0.8 when both cite the same articles and numbers) is dropped
before any judge sees it (``duplicate_question``).

``generation: "two_stage"`` asks for the questions first, drops referential and duplicate
ones, then asks one answer (with evidence) per question left.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.models import DistillConfig
from ..errors import LLMError
from ..ids import stable_id
from ..llm.client import ChatResult, LLMClient, log_failure
from ..llm.json_extract import JSONExtractionError, extract_json, split_reasoning
from ..llm.prompts import (
    GEN_PROMPT_VERSION,
    Message,
    answer_messages,
    detect_language,
    generation_messages,
    question_messages,
)
from ..llm.structured import AnswerReply, GenerationReply, QuestionsReply, SampleItem
from ..models import Chunk, Failure, Sample, ScoredSample, Slice, origin_of
from ..selection.thresholds import DROP_DUPLICATE_QUESTION
from ..sources.chunking import allocate_samples, split_text
from ..sources.headings import (
    article_coverage,
    chunk_starts,
    find_article_refs,
    find_articles,
    format_context_header,
    heading_paths,
    is_article_structured,
    slice_title,
)
from ..sources.plan import RequestPart, chunk_sample_count, question_mix, split_requests
from .gates.checks.referential import find_referential
from .stream import bounded_flat_map

log = logging.getLogger(__name__)

DROP_REFERENTIAL_QUESTION = "referential_question"


@dataclass
class GenerationCounts:
    """What a teacher stage counts; the names are the funnel's (``metadata.json`` counts).

    ``slices`` are the units taken in (slices, topic leaves, records, samples to rephrase),
    ``chunks`` the teacher requests they make (chunks, question or rephrase requests).
    ``questions_dropped`` counts two-stage questions dropped before an answer was asked, by
    reason; ``article_totals`` the articles of each article-structured slice (coverage).
    """

    slices: int = 0
    chunks: int = 0
    generation_failed_chunks: int = 0
    generation_unparsable_items: int = 0
    samples_generated: int = 0
    questions_dropped: dict[str, int] = field(default_factory=dict)
    article_totals: dict[str, int] = field(default_factory=dict)


# --- chunks and their requests ---------------------------------------------------------------


def chunk_slice(
    slice_: Slice,
    *,
    samples_per_slice: int,
    chunk_chars: int,
    samples_per_1k_chars: float | None = None,
    samples_per_article: bool = False,
) -> list[Chunk]:
    """Split a slice on paragraph then sentence boundaries, each chunk with its heading path.

    Samples: a density setting decides each chunk's own count; otherwise ``samples_per_slice``
    is shared among the chunks by length.
    """
    parts = split_text(slice_.content, chunk_chars)
    if not parts:
        return []
    density = [
        chunk_sample_count(
            p, samples_per_1k_chars=samples_per_1k_chars, per_article=samples_per_article
        )
        for p in parts
    ]
    if density[0] is None:
        shares = allocate_samples([len(p) for p in parts], samples_per_slice)
    else:
        shares = [max(1, n or 1) for n in density]
    starts = chunk_starts(slice_.content, parts)
    paths = heading_paths(slice_.content, starts)
    title = slice_title(slice_.content, slice_.metadata)
    return [
        Chunk(
            slice_id=slice_.id,
            index=i,
            total=len(parts),
            text=p,
            n_samples=n,
            metadata=slice_.metadata,
            title=title,
            heading_path=path,
            start=start,
        )
        for i, (p, n, path, start) in enumerate(zip(parts, shares, paths, starts, strict=True))
    ]


def slice_chunks(slice_: Slice, config: DistillConfig) -> list[Chunk]:
    """``chunk_slice`` with the run's settings (the run and ``--estimate`` both use this)."""
    return chunk_slice(
        slice_,
        samples_per_slice=config.samples_per_slice,
        chunk_chars=config.chunk_chars,
        samples_per_1k_chars=config.samples_per_1k_chars,
        samples_per_article=config.samples_per_article,
    )


def chunk_language(chunk: Chunk, config: DistillConfig) -> str:
    """The prompt language of a chunk: the config's, or detected from its text."""
    return detect_language(chunk.text) if config.language == "auto" else config.language


def context_header(chunk: Chunk, lang: str) -> str:
    """The "资料：《title》 › 第二章 … › 第一节 …" line shown above the chunk."""
    return format_context_header(chunk.title, chunk.heading_path, lang)


def chunk_requests(chunk: Chunk, config: DistillConfig) -> list[RequestPart]:
    """The teacher requests that ask a chunk's samples (several for a big chunk)."""
    return split_requests(chunk.text, chunk.n_samples, config.max_samples_per_request)


def request_messages(
    chunk: Chunk,
    part: RequestPart,
    config: DistillConfig,
    previous: Sequence[str] = (),
    *,
    lang: str | None = None,
) -> list[Message]:
    """The one-stage request for ``part`` of ``chunk``; its plan follows the part's own text.

    ``lang`` overrides the chunk's language (``--estimate`` builds the template alone).
    """
    lang = lang or chunk_language(chunk, config)
    return generation_messages(
        chunk.text,
        part.n,
        language=lang,
        system_prompt=config.system_prompt,
        header=context_header(chunk, lang),
        previous=previous,
        part=part,
        mix=question_mix(part.n, chunk.text[part.start : part.end] or chunk.text),
    )


def questions_request_messages(
    chunk: Chunk,
    part: RequestPart,
    config: DistillConfig,
    previous: Sequence[str] = (),
    *,
    lang: str | None = None,
) -> list[Message]:
    """The two-stage question request for ``part`` of ``chunk``."""
    lang = lang or chunk_language(chunk, config)
    return question_messages(
        chunk.text,
        part.n,
        language=lang,
        header=context_header(chunk, lang),
        previous=previous,
        part=part,
        mix=question_mix(part.n, chunk.text[part.start : part.end] or chunk.text),
    )


def answer_request_messages(
    chunk: Chunk, question: str, config: DistillConfig, *, lang: str | None = None
) -> list[Message]:
    """The two-stage answer request for one question about ``chunk``."""
    lang = lang or chunk_language(chunk, config)
    return answer_messages(
        chunk.text,
        question,
        language=lang,
        system_prompt=config.system_prompt,
        header=context_header(chunk, lang),
    )


async def iter_chunks(
    slices: AsyncIterable[Slice], config: DistillConfig, counts: GenerationCounts | None = None
) -> AsyncIterator[Chunk]:
    """Chunks of every slice, in input order, streamed."""
    async for slice_ in slices:
        chunks = slice_chunks(slice_, config)
        if counts is not None:
            counts.slices += 1
            counts.chunks += len(chunks)
        for chunk in chunks:
            yield chunk


# --- replies ---------------------------------------------------------------------------------


def parse_samples(result: ChatResult) -> list[dict[str, Any]]:
    """Valid sample dicts from a teacher reply: ``{"samples": [...]}`` or a bare array.

    Each has instruction, input, output, reasoning, evidence, question_type, difficulty and
    ``_total`` (the items of the reply, usable or not).

    Raises:
        JSONExtractionError: no JSON in the reply.
        ValueError: JSON found but no usable sample in it (retried like a bad reply).
    """
    reasoning, content = split_reasoning(result.content)
    data = extract_json(content, expect=list)
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON array of samples, got {type(data).__name__}")
    reply = GenerationReply.unwrap(data)
    return [_item(s, reasoning or result.reasoning, len(data)) for s in reply.samples]


def _item(s: SampleItem, reasoning: str | None, total: int) -> dict[str, Any]:
    return {
        "instruction": s.instruction,
        "input": s.input,
        "output": s.output,
        "reasoning": s.reasoning or reasoning,
        "evidence": list(s.evidence),
        "question_type": s.question_type,
        "difficulty": s.difficulty,
        "_total": total,
    }


def parse_questions(result: ChatResult) -> list[dict[str, Any]]:
    """Questions (with their type and difficulty when given) from a question reply.

    ``{"questions": [...]}`` or a bare array, of strings or of objects with a question field.

    Raises:
        JSONExtractionError: no JSON in the reply.
        ValueError: no usable question in it.
    """
    _, content = split_reasoning(result.content)
    data = extract_json(content, expect=list)
    texts = QuestionsReply.unwrap(data).texts() if isinstance(data, list) else []
    if not texts:
        raise ValueError("the reply lists no question")
    out = []
    items = [i for i in data if isinstance(i, str | dict)]
    for k, text in enumerate(texts):
        item = items[k] if len(items) == len(texts) and isinstance(items[k], dict) else {}
        labels = SampleItem.model_validate({**item, "instruction": text, "output": "-"})
        out.append(
            {
                "question": text,
                "question_type": labels.question_type,
                "difficulty": labels.difficulty,
            }
        )
    return out


def parse_answer(result: ChatResult) -> dict[str, Any]:
    """The answer, its evidence quotes and reasoning: ``{"evidence", "answer"}`` or plain text.

    Raises:
        ValueError: an empty answer.
    """
    reasoning, content = split_reasoning(result.content)
    evidence: list[str] = []
    data: Any = content
    if content.lstrip()[:1] in ("{", "`"):
        try:
            data = extract_json(content, expect=dict)
        except JSONExtractionError:
            data = content
    if isinstance(data, dict):
        raw = data.get("evidence")
        raw = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        evidence = [e.strip() for e in raw if isinstance(e, str) and e.strip()]
    answer = AnswerReply.unwrap(data).answer
    return {"answer": answer, "evidence": evidence, "reasoning": reasoning or result.reasoning}


# --- questions already made for a slice ------------------------------------------------------

_NEAR_DUPLICATE = 0.8
_GRAM = 3
_DIGITS = re.compile(r"\d+(?:\.\d+)?")


def _norm(text: str) -> str:
    """Letters, digits and CJK only, NFKC and case-folded."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).casefold() if c.isalnum())


def _grams(norm: str) -> frozenset[str]:
    if len(norm) <= _GRAM:
        return frozenset({norm})
    return frozenset(norm[i : i + _GRAM] for i in range(len(norm) - _GRAM + 1))


def _anchors(text: str) -> frozenset[Any]:
    """The articles and numbers a question names: two questions differing there differ."""
    nfkc = unicodedata.normalize("NFKC", text)
    refs = {(r.kind, r.number, r.sub) for r in find_article_refs(nfkc)}
    return frozenset(refs | set(_DIGITS.findall(nfkc)))


class SliceQuestions:
    """The questions kept for one slice so far: shown to its later requests, deduplicated.

    A question duplicates an earlier one when both are the same once normalised (NFKC, case,
    spaces and punctuation ignored), or when their character 3-grams overlap by Jaccard >= 0.8
    and they name the same articles and numbers ("第十条…" and "第十一条…" are different).
    """

    def __init__(self, threshold: float = _NEAR_DUPLICATE) -> None:
        self.threshold = threshold
        self.texts: list[str] = []
        self._exact: dict[str, str] = {}
        self._kept: list[tuple[frozenset[str], frozenset[Any], str]] = []

    def duplicate_of(self, question: str) -> str | None:
        """The key (sample id) of the earlier question this one repeats, or None."""
        norm = _norm(question)
        if norm in self._exact:
            return self._exact[norm]
        grams, anchors = _grams(norm), _anchors(question)
        for other, other_anchors, key in self._kept:
            small, big = sorted((len(grams), len(other)))
            if not big or small / big < self.threshold or anchors != other_anchors:
                continue  # Jaccard <= small / big
            inter = len(grams & other)
            if inter / (len(grams) + len(other) - inter) >= self.threshold:
                return key
        return None

    def add(self, question: str, key: str) -> None:
        """Keep ``question`` (``key``: its sample id, or any label)."""
        norm = _norm(question)
        self.texts.append(question)
        self._exact.setdefault(norm, key)
        self._kept.append((_grams(norm), _anchors(question), key))


# --- articles a sample covers ----------------------------------------------------------------

_MIN_QUOTE_CHARS = 8


class SliceArticles:
    """The articles of an article-structured slice, and which of them a sample cites or quotes."""

    def __init__(self, content: str) -> None:
        self.content = content
        arts = find_articles(content)
        self.labels = [a.label for a in arts]
        self._bodies = [(a.label, _norm(content[a.start : a.end])) for a in arts]

    @property
    def total(self) -> int:
        """Distinct article labels (the coverage denominator)."""
        return len(set(self.labels))

    def of(self, texts: Sequence[str], evidence: Sequence[str]) -> list[str]:
        """Labels of the articles ``texts`` cite by number or ``evidence`` quotes verbatim."""
        cov = article_coverage(self.content, ["\n".join(texts)])
        missing = Counter(cov.labels_missing)
        found: set[str] = set()
        for label in self.labels:
            if missing[label]:
                missing[label] -= 1
            else:
                found.add(label)
        for quote in evidence:
            q = _norm(quote)
            if len(q) < _MIN_QUOTE_CHARS:
                continue
            found.update(label for label, body in self._bodies if q in body)
        return [label for label in dict.fromkeys(self.labels) if label in found]


# --- one slice -------------------------------------------------------------------------------


class _SliceRun:
    """One slice's requests, in order, sharing its questions so far."""

    def __init__(
        self,
        slice_: Slice,
        client: LLMClient,
        config: DistillConfig,
        counts: GenerationCounts,
        on_failure: Callable[[Failure], None] | None,
    ) -> None:
        self.slice = slice_
        self.client = client
        self.config = config
        self.counts = counts
        self.on_failure = on_failure
        self.questions = SliceQuestions()
        self.articles: SliceArticles | None = None
        if is_article_structured(slice_.content):
            self.articles = SliceArticles(slice_.content)
            counts.article_totals[slice_.id] = self.articles.total

    async def samples(self) -> AsyncIterator[list[Sample]]:
        """Each request's samples, in order: the chunks, and each chunk's parts."""
        chunks = slice_chunks(self.slice, self.config)
        self.counts.slices += 1
        self.counts.chunks += len(chunks)
        two_stage = self.config.generation == "two_stage"
        for chunk in chunks:
            for part in chunk_requests(chunk, self.config):
                if two_stage:
                    yield await self._two_stage(chunk, part)
                else:
                    yield await self._one_stage(chunk, part)

    def _failed(self, chunk: Chunk, what: str, exc: LLMError) -> None:
        log_failure(log, f"slice {chunk.slice_id} chunk {chunk.index}: {what}", exc)
        self.counts.generation_failed_chunks += 1
        if self.on_failure is not None:
            self.on_failure(Failure.from_error(exc, "generation", slice_id=chunk.slice_id))

    async def _one_stage(self, chunk: Chunk, part: RequestPart) -> list[Sample]:
        messages = request_messages(chunk, part, self.config, self.questions.texts)
        try:
            items, result = await self.client.chat(messages, parse_samples, kind="generation")
        except LLMError as exc:
            self._failed(chunk, "generation", exc)
            return []
        self.counts.generation_unparsable_items += max(0, items[0]["_total"] - len(items))
        return self._keep(chunk, items, finish_reason=result.finish_reason)

    async def _two_stage(self, chunk: Chunk, part: RequestPart) -> list[Sample]:
        messages = questions_request_messages(chunk, part, self.config, self.questions.texts)
        try:
            # No structured kind yet: the "questions" schema is topics' list of strings, and
            # these carry a type and a difficulty each (so do the answers their evidence).
            asked, _ = await self.client.chat(messages, parse_questions)
        except LLMError as exc:
            self._failed(chunk, "questions", exc)
            return []
        kept: list[dict[str, Any]] = []
        batch = SliceQuestions()  # the reply's own repeats count too
        for q in asked:
            text = q["question"]
            if find_referential(text) is not None:
                self._drop_question(DROP_REFERENTIAL_QUESTION)
            elif self.questions.duplicate_of(text) is not None or batch.duplicate_of(text):
                self._drop_question(DROP_DUPLICATE_QUESTION)
            else:
                batch.add(text, text)
                kept.append(q)

        async def answer(q: dict[str, Any]) -> dict[str, Any] | None:
            try:
                got, result = await self.client.chat(
                    answer_request_messages(chunk, q["question"], self.config), parse_answer
                )
            except LLMError as exc:
                self._failed(chunk, "answer", exc)
                return None
            return {
                "instruction": q["question"],
                "input": "",
                "output": got["answer"],
                "reasoning": got["reasoning"],
                "evidence": got["evidence"],
                "question_type": q["question_type"],
                "difficulty": q["difficulty"],
                "finish_reason": result.finish_reason,
            }

        answered = await asyncio.gather(*(answer(q) for q in kept))
        return self._keep(chunk, [a for a in answered if a is not None])

    def _drop_question(self, reason: str) -> None:
        dropped = self.counts.questions_dropped
        dropped[reason] = dropped.get(reason, 0) + 1

    def _keep(
        self, chunk: Chunk, items: list[dict[str, Any]], *, finish_reason: str | None = None
    ) -> list[Sample]:
        """Samples of a reply; a question repeating an earlier one of the slice is dropped.

        ``finish_reason`` (the reply's, or each item's own in two-stage answers) is recorded in
        the annotations: the truncation gate drops what stopped at max_tokens ("length").
        """
        samples: list[Sample] = []
        seen: set[str] = set()
        for item in items:
            sid = stable_id(
                chunk.slice_id, str(chunk.index), item["instruction"], item["input"], item["output"]
            )
            if sid in seen:  # the teacher repeated an item verbatim
                continue
            seen.add(sid)
            fields = {
                "id": sid,
                "slice_id": chunk.slice_id,
                "chunk_index": chunk.index,
                "instruction": item["instruction"],
                "input": item["input"],
                "output": item["output"],
                "reasoning": item["reasoning"],
                "evidence": item["evidence"],
                "question_type": item["question_type"],
                "difficulty": item["difficulty"],
                "teacher_model": self.client.model,
                "prompt_version": GEN_PROMPT_VERSION,
                "source_text": chunk.text,
                "source_title": chunk.title,
                "heading_path": list(chunk.heading_path),
                **origin_of(chunk.metadata),  # the slice's source and licence
            }
            ended = item.get("finish_reason") or finish_reason
            if ended:
                fields["annotations"] = {"finish_reason": ended}
            if self.articles is not None:
                texts = (item["instruction"], item["input"], item["output"])
                fields["articles"] = self.articles.of(texts, item["evidence"])
            earlier = self.questions.duplicate_of(item["instruction"])
            if earlier is not None:
                # Written to the raw file as dropped: never judged, and counted in the funnel.
                samples.append(
                    ScoredSample(
                        **fields, drop_reason=DROP_DUPLICATE_QUESTION, duplicate_of=earlier
                    )
                )
                continue
            self.questions.add(item["instruction"], sid)
            samples.append(Sample(**fields))
        self.counts.samples_generated += len(samples)
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
    """Yield samples as soon as each request's reply is parsed, while later slices are read.

    The requests of a slice run one after the other (each shows the questions made so far);
    up to ``2 × max_concurrent`` slices run at once. ``on_slice_done`` is called with a
    slice's id once every request of it is answered (or failed).
    """
    counts = counts if counts is not None else GenerationCounts()
    limit = 2 * client.config.max_concurrent

    async def one(slice_: Slice) -> AsyncIterator[list[Sample]]:
        async for samples in _SliceRun(slice_, client, config, counts, on_failure).samples():
            yield samples
        if on_slice_done is not None:
            on_slice_done(slice_.id)

    async for samples in bounded_flat_map(slices, one, limit=limit):
        for sample in samples:
            yield sample
