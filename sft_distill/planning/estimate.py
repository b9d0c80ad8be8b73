"""``--estimate``: expected calls, tokens and cost of a run, from the input and settings alone.

Reads and chunks the slices exactly as the pipeline does and builds the real prompts, but sends
nothing. Tokens are approximated from characters: about 1.6 characters per token for Chinese
text and 4 for English (``prompts.detect_language`` decides, per text), plus a few tokens per
message. Replies are assumed to be a typical size, capped by each endpoint's ``max_tokens``.
Retries, re-asks and reasoning tokens are not included; replies already in the output
directory's cache cost nothing on a rerun.

Cached prompt tokens (a server's prefix cache, billed at ``cached_input_per_1k``) are counted
as OpenAI counts them: the part of a prompt shared with an earlier request, from 1,024 tokens,
in 128-token steps. A slice run shares the prompt template across teacher requests, and the
template plus the chunk's text across the judgements of that chunk's samples.

The other modes (``topics``, ``distill``, ``augment``) are estimated by ``planning.modes``; every
estimate counts each request through ``Tally``, which also notes the largest prompt per endpoint
and how many requests would not fit an endpoint's known context (``llm.server_context``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config.models import DistillConfig, EndpointConfig
from ..llm.prompts import (
    PREVIOUS_QUESTIONS_SHOWN,
    detect_language,
    evaluation_batch_messages,
    evaluation_messages,
)
from ..models import Chunk, PathLike
from ..outputs.report import BATCH_TOKEN_FIELDS, batched_part, model_card, priced_tokens
from ..sources.plan import RequestPart
from ..sources.reader import BadLine, iter_slices
from ..stages.generate import (
    answer_request_messages,
    chunk_language,
    chunk_requests,
    questions_request_messages,
    request_messages,
    slice_chunks,
)

if TYPE_CHECKING:
    from ..llm.server_context import ContextLimit

__all__ = [
    "CHARS_PER_TOKEN",
    "EndpointEstimate",
    "Estimate",
    "Tally",
    "estimate",
    "estimate_tokens",
    "eval_prompt_tokens",
    "messages_tokens",
]

CHARS_PER_TOKEN = {"zh": 1.6, "en": 4.0}
# Chat formats wrap each message in a few special tokens, and the reply is primed with a few more.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3
# A generated sample (instruction + input + output + JSON syntax), by the document's language.
TYPICAL_SAMPLE_TOKENS = {"zh": 250, "en": 200}
# What a generated sample adds in a teacher reply: its 1-3 evidence quotes, type and difficulty.
TYPICAL_EVIDENCE_TOKENS = {"zh": 60, "en": 40}
# One question (in a question reply, or in the list shown to a slice's later requests).
TYPICAL_QUESTION_TOKENS = {"zh": 30, "en": 25}
# An evaluator's reply (eval-v2): a few checked claims with short quotes, a brief analysis, a
# one-sentence reason and six scores, as JSON (eval-v1 asked for scores and a reason only: 80).
TYPICAL_JUDGEMENT_TOKENS = 400
# A prefix cache (OpenAI's, the strictest of wire.md's): from 1,024 tokens, in 128-token steps.
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128


def cacheable(tokens: int) -> int:
    """Prompt tokens a prefix cache serves of a prefix ``tokens`` long seen before."""
    return tokens // CACHE_STEP_TOKENS * CACHE_STEP_TOKENS if tokens >= CACHE_MIN_TOKENS else 0


def estimate_tokens(text: str) -> int:
    """Approximate token count of ``text`` from its length and detected language."""
    if not text:
        return 0
    return math.ceil(len(text) / CHARS_PER_TOKEN[detect_language(text)])


def messages_tokens(messages: list[dict[str, str]]) -> int:
    """Approximate prompt tokens of a chat request: each message, its wrapping, the reply primer."""
    return sum(estimate_tokens(m["content"]) + TOKENS_PER_MESSAGE for m in messages) + (
        TOKENS_PER_REPLY
    )


@dataclass
class EndpointEstimate:
    """Expected calls and tokens of one endpoint (the generator or one evaluator)."""

    endpoint: str
    model: str
    stage: str
    calls: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # expected prefix-cache hits (part of prompt_tokens)
    completion_tokens: int = 0
    completion_tokens_max: int | None = None
    cost: float | None = None  # cached prompt tokens at the cached price
    cost_without_cache: float | None = None
    cost_batched: float | None = None  # through a batch API (the model's batch_discount)
    batched: bool = False  # the run sends this endpoint's requests through its Batch API
    # The context check: the largest prompt, where it is, and the requests that would not fit.
    max_tokens: int | None = None
    max_prompt_tokens: int = 0
    max_prompt_where: str = ""
    context_tokens: int | None = None
    context_source: str = ""
    over_context: int = 0


@dataclass
class Estimate:
    """What a run over the input would cost, before running it."""

    input: str
    slices: int = 0
    bad_lines: int = 0
    chars: int = 0
    chunks: int = 0
    expected_samples: int = 0
    languages: dict[str, int] = field(default_factory=dict)
    endpoints: list[EndpointEstimate] = field(default_factory=list)
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    total_cost: float | None = None
    total_cost_without_cache: float | None = None
    total_cost_batched: float | None = None
    unpriced: list[str] = field(default_factory=list)
    # Which mode the figures are for, its settings and counts, and what the figures assume.
    kind: str = "slices"
    detail: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Expected LLM calls in all (no retries)."""
        return sum(e.calls for e in self.endpoints)


def _max(ep: EndpointConfig, calls: int) -> int | None:
    return None if ep.max_tokens is None else ep.max_tokens * calls


class Tally:
    """The endpoints of one estimate, and every request counted against them.

    Args:
        config: the run's settings (endpoints and their max_tokens).
        contexts: each endpoint's known context length (``llm.server_context.context_limits``).
    """

    def __init__(
        self, config: DistillConfig, contexts: Mapping[str, ContextLimit] | None = None
    ) -> None:
        self.config = config
        self.generator = EndpointEstimate("generator", config.generator.model, "generation")
        self.judges = {
            name: EndpointEstimate(name, ep.model, "evaluation")
            for name, ep in config.evaluators.items()
        }
        self._settings = {"generator": config.generator, **config.evaluators}
        self._replies: Counter[str] = Counter()
        for e in self.endpoints:
            e.max_tokens = self._settings[e.endpoint].max_tokens
            e.batched = config.batched(self._settings[e.endpoint])
            limit = (contexts or {}).get(e.endpoint)
            if limit is not None:
                # Where the length came from, or why it is unknown.
                e.context_tokens = limit.tokens
                e.context_source = limit.source if limit.tokens is not None else limit.note

    @property
    def endpoints(self) -> list[EndpointEstimate]:
        """The generator, then the evaluators."""
        return [self.generator, *self.judges.values()]

    def reply(self, name: str, tokens: int) -> int:
        """A reply of ``tokens``, capped by the endpoint's max_tokens."""
        cap = self._settings[name].max_tokens
        return tokens if cap is None else min(tokens, cap)

    def add(
        self,
        e: EndpointEstimate,
        prompt: int,
        completion: int,
        *,
        calls: int = 1,
        where: str = "",
        cached: int = 0,
        replies: int = 1,
    ) -> None:
        """Count ``calls`` requests of ``prompt`` tokens, each answered with ``completion``, of
        which ``cached`` prompt tokens are expected from the server's prefix cache. ``replies``:
        replies in one answer (a batched judgement), each allowed max_tokens."""
        if calls <= 0:
            return
        self._replies[e.endpoint] += calls * replies
        e.calls += calls
        e.prompt_tokens += calls * prompt
        e.cached_prompt_tokens += calls * min(cached, prompt)
        e.completion_tokens += calls * completion
        if prompt > e.max_prompt_tokens:
            e.max_prompt_tokens, e.max_prompt_where = prompt, where
        # Servers refuse a prompt whose tokens plus max_tokens exceed the context (vLLM, OpenAI).
        if e.context_tokens is not None and prompt + (e.max_tokens or 0) > e.context_tokens:
            e.over_context += calls

    def judge_all(
        self,
        prompt: int,
        *,
        calls: int = 1,
        sample_tokens: int = 0,
        where: str = "",
        shared: int = 0,
    ) -> None:
        """Every evaluator judges ``calls`` samples, each prompt ``prompt + sample_tokens``.

        ``shared``: the prompt's first tokens every one of these judgements has in common (the
        template and the source text): the first is sent in full, the others hit the cache.
        """
        if calls <= 0:
            return
        for j in self.judges.values():
            reply = self.reply(j.endpoint, TYPICAL_JUDGEMENT_TOKENS)
            self.add(j, prompt + sample_tokens, reply, where=where)
            self.add(
                j,
                prompt + sample_tokens,
                reply,
                calls=calls - 1,
                where=where,
                cached=cacheable(shared),
            )

    def judge_chunk(self, doc_tokens: int, n: int, *, sample_tokens: int, where: str = "") -> None:
        """Every evaluator judges one request's ``n`` samples of a chunk, in batches as set
        (``judge_batch_size``); one-by-one judging as ``judge_all``."""
        if n <= 0:
            return
        single = messages_tokens(evaluation_messages("", "", "", "")) + doc_tokens
        template = messages_tokens(evaluation_batch_messages("", []))
        for name, j in self.judges.items():
            size, budget = self.config.judge_batch_limits(self._settings[name])
            if size == 1 or n == 1:
                reply = self.reply(name, TYPICAL_JUDGEMENT_TOKENS)
                self.add(j, single + sample_tokens, reply, where=where)
                rest = n - 1
                self.add(
                    j,
                    single + sample_tokens,
                    reply,
                    calls=rest,
                    where=where,
                    cached=cacheable(single),
                )
                continue
            per_batch = (
                size if budget is None else max(1, min(size, budget // max(1, sample_tokens)))
            )
            cached = cacheable(template)  # the static part, sent by every batch of the run
            for first in range(0, n, per_batch):
                k = min(per_batch, n - first)
                cap = self._settings[name].max_tokens
                reply = k * (
                    TYPICAL_JUDGEMENT_TOKENS if cap is None else min(TYPICAL_JUDGEMENT_TOKENS, cap)
                )
                self.add(
                    j,
                    template + doc_tokens + k * sample_tokens,
                    reply,
                    where=where,
                    cached=cached,
                    replies=k,
                )
                cached = cacheable(template + doc_tokens)  # a later batch of the chunk

    def finish(self, est: Estimate, prices: Mapping[str, Any] | None) -> Estimate:
        """Put the endpoints into ``est`` with their caps, per-model sums and costs."""
        replies = self._replies
        self.generator.completion_tokens_max = _max(self.config.generator, replies["generator"])
        for name, j in self.judges.items():
            j.completion_tokens_max = _max(self.config.evaluators[name], replies[name])
        est.endpoints = self.endpoints
        _price(est, prices)
        return est


def eval_prompt_tokens(instruction: str, input_text: str, output_tokens: int) -> int:
    """Prompt tokens of one judgement of a sample with no source document."""
    return messages_tokens(evaluation_messages("", instruction, input_text, "")) + output_tokens


def _price(est: Estimate, prices: Mapping[str, Any] | None) -> None:
    """Sum calls and tokens per model, and cost them when prices are known: as billed with the
    expected cache hits, without any, and through a batch API."""
    for e in est.endpoints:
        m = est.per_model.setdefault(
            e.model,
            {
                "calls": 0,
                "prompt_tokens": 0,
                "cached_prompt_tokens": 0,
                "completion_tokens": 0,
                "cost": None,
            },
        )
        m["calls"] += e.calls
        m["prompt_tokens"] += e.prompt_tokens
        m["cached_prompt_tokens"] += e.cached_prompt_tokens
        m["completion_tokens"] += e.completion_tokens
        if e.batched:  # priced at the batch price (report.priced_tokens)
            for name, n in zip(BATCH_TOKEN_FIELDS, _batched(e), strict=True):
                m[name] = m.get(name, 0) + n
    if not prices:
        return
    totals = dict.fromkeys(("cost", "cost_without_cache", "cost_batched"), 0.0)
    for model, m in est.per_model.items():
        card = model_card(prices, model)
        if card is None:
            est.unpriced.append(model)
            continue
        figures = priced_tokens(
            m["prompt_tokens"],
            m["cached_prompt_tokens"],
            m["completion_tokens"],
            card,
            batched=batched_part(m),
        )
        m.update(figures)
        for k, v in figures.items():
            totals[k] += v
    for e in est.endpoints:
        card = model_card(prices, e.model)
        if card is not None:
            figures = priced_tokens(
                e.prompt_tokens,
                e.cached_prompt_tokens,
                e.completion_tokens,
                card,
                batched=_batched(e)[1:] if e.batched else (0, 0, 0),
            )
            e.cost = figures["cost"]
            e.cost_without_cache = figures["cost_without_cache"]
            e.cost_batched = figures["cost_batched"]
    est.total_cost = totals["cost"]
    est.total_cost_without_cache = totals["cost_without_cache"]
    est.total_cost_batched = totals["cost_batched"]


def _batched(e: EndpointEstimate) -> tuple[int, int, int, int]:
    """(calls, prompt, cached prompt, completion) of ``e`` (all of it, when it is batched)."""
    return (e.calls, e.prompt_tokens, e.cached_prompt_tokens, e.completion_tokens)


def estimate(
    input_path: PathLike,
    config: DistillConfig,
    *,
    prices: Mapping[str, Any] | None = None,
    strict: bool = False,
    contexts: Mapping[str, ContextLimit] | None = None,
) -> Estimate:
    """Count slices, chunks and expected samples, and estimate calls, tokens and cost per model.

    ``prices`` (default: the config's ``prices`` when it has them) maps a model name to
    ``{"input_per_1k": x, "output_per_1k": y}``. ``contexts`` gives endpoints' context lengths
    to check every request against.

    Raises:
        InputError: the input cannot be read (or, with ``strict``, its first bad line).
    """
    if prices is None:
        prices = getattr(config, "prices", None)
    est = Estimate(input=str(input_path))
    tally = Tally(config, contexts)
    languages: Counter[str] = Counter()
    split = {"chunks": 0, "requests": 0}
    requests = 0

    def on_bad_line(bad: BadLine) -> None:
        if bad.skipped:
            est.bad_lines += 1

    for slice_ in iter_slices(input_path, strict=strict, on_bad_line=on_bad_line):
        est.slices += 1
        est.chars += len(slice_.content)
        chunks = slice_chunks(slice_, config)
        asked = 0  # samples planned so far in this slice: later requests list their questions
        for chunk in chunks:
            lang = chunk_language(chunk, config)
            languages[lang] += 1
            doc_tokens = estimate_tokens(chunk.text)
            where = f"slice {chunk.slice_id!r} chunk {chunk.index}"
            parts = chunk_requests(chunk, config)
            if len(parts) > 1:
                split["chunks"] += 1
                split["requests"] += len(parts)
            for n_part, part in enumerate(parts):
                shown = min(asked, PREVIOUS_QUESTIONS_SHOWN) * TYPICAL_QUESTION_TOKENS[lang]
                asked += part.n
                _teacher_requests(
                    tally, config, chunk, part, doc_tokens, shown, lang, where, again=n_part > 0
                )
                requests += 1
                # A request's samples arrive together and are judged together (batched judging).
                tally.judge_chunk(
                    doc_tokens, part.n, sample_tokens=TYPICAL_SAMPLE_TOKENS[lang], where=where
                )
            est.expected_samples += chunk.n_samples
        est.chunks += len(chunks)
    est.languages = dict(sorted(languages.items()))
    est.detail = {
        "chunk_chars": config.chunk_chars,
        "generation": config.generation,
        "teacher_requests": requests,
        "split_chunks": split["chunks"],
    }
    if split["chunks"]:
        est.notes.append(
            f"{split['chunks']} chunk(s) asking more than max_samples_per_request "
            f"({config.max_samples_per_request}) samples are asked in {split['requests']} "
            "requests over ranges of their articles, so that replies stay within max_tokens."
        )
    if config.generation == "two_stage":
        est.notes.append(
            "two_stage: one question request per request above and one answer request per "
            "question (an upper bound: referential and duplicate questions are not answered)."
        )
    return tally.finish(est, prices)


def early_drop_note(config: DistillConfig) -> str | None:
    """What ``early_drop`` does to the judges' figures, when it can spare any call."""
    names = list(config.evaluators)
    first = len(names) - config.min_votes + 1
    if not config.early_drop or first >= len(names):
        return None
    later = names[first:]
    one = len(later) == 1
    return (
        f"early_drop: {', '.join(later)} judge{'s' if one else ''} only the samples the judges "
        f"before {'it' if one else 'them'} did not vote down, so {'its' if one else 'their'} "
        "figures are upper bounds."
    )


def _teacher_requests(
    tally: Tally,
    config: DistillConfig,
    chunk: Chunk,
    part: RequestPart,
    doc_tokens: int,
    shown: int,
    lang: str,
    where: str,
    *,
    again: bool = False,
) -> None:
    """Count the teacher's requests for one part of a chunk (one, or questions then answers).

    Cached tokens: the static instructions come first in every request (gen-v2 layout), so a
    prefix cache serves them; a chunk's later parts (``again``) and two-stage answers repeat
    the document right after them, so it serves that too.
    """
    gen = tally.generator
    # The template alone (empty document), in the language the run would use.
    bare = chunk.model_copy(update={"text": ""})
    if config.generation == "two_stage":
        template = messages_tokens(questions_request_messages(bare, part, config, lang=lang))
        reply = tally.reply("generator", part.n * TYPICAL_QUESTION_TOKENS[lang])
        shared = template + doc_tokens if again else template
        tally.add(gen, template + doc_tokens + shown, reply, where=where, cached=cacheable(shared))
        answer = messages_tokens(answer_request_messages(bare, "", config, lang=lang)) + doc_tokens
        answer_reply = tally.reply("generator", _reply_tokens(1, lang))
        tally.add(
            gen,
            answer + TYPICAL_QUESTION_TOKENS[lang],
            answer_reply,
            calls=part.n,
            where=where,
            cached=cacheable(answer),
        )
        return
    template = messages_tokens(request_messages(bare, part, config, lang=lang))
    reply = tally.reply("generator", _reply_tokens(part.n, lang))
    shared = template + doc_tokens if again else template
    tally.add(gen, template + doc_tokens + shown, reply, where=where, cached=cacheable(shared))


def _reply_tokens(samples: int, lang: str) -> int:
    """A teacher reply of ``samples`` samples, each with its evidence quotes."""
    return samples * (TYPICAL_SAMPLE_TOKENS[lang] + TYPICAL_EVIDENCE_TOKENS[lang])
