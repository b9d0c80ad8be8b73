"""Stage 3: the evaluators score each sample as soon as it is generated.

They are asked together, except that with ``early_drop`` (the default) a judge is not asked
about a sample the judges before it have already voted down: see ``evaluate_group``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from ..config.defaults import DIMENSIONS, JUDGE_BATCH_REPLY_TOKENS, MEAN_DIMENSIONS
from ..config.models import DistillConfig
from ..errors import (
    ContextOverflowError,
    LLMError,
    TruncatedReplyError,
    UnusableReplyError,
)
from ..llm.client import ChatResult, LLMClient, log_failure
from ..llm.json_extract import extract_json, split_reasoning
from ..llm.prompts import BatchItem, evaluation_batch_messages, evaluation_messages
from ..llm.structured import JudgeBatchReply, JudgeReply, JudgeResult
from ..models import Failure, Judgement, Sample, ScoredSample
from ..selection.thresholds import apply_thresholds, decide, is_unjudged_drop, weighted_mean
from .gates.base import GATE_PREFIX, Gate, run_gates
from .gates.quality import judge_flags
from .stream import bounded_map

log = logging.getLogger(__name__)

EVAL_BUFFER_SAMPLES = 1024
# A scored sample's decision fields: a gate's verdict replaces them.
_DECISION = {"passed", "drop_reason", "drop_detail", "duplicate_of"}


@dataclass
class JudgeCounts:
    """What the judging stage counts; the names are the funnel's (``metadata.json`` counts)."""

    samples_evaluated: int = 0
    evaluation_failures: int = 0
    # judges not asked about a sample the judges before them had voted down (early_drop)
    judgements_skipped: int = 0


def parse_judgement(result: ChatResult, *, required: Sequence[str] = MEAN_DIMENSIONS) -> JudgeReply:
    """A judge's reply read by the judge reply model (``llm.structured``, kind "judge").

    The eval-v2 shape ``{"claims": [...], "analysis": ..., "reason": ..., "scores": {...}}`` and
    the flat ``{"accuracy": 8, ..., "reason": ...}`` of eval-v1 (cached replies) both read.
    Every dimension in ``required`` must be scored (default the five of eval-v1; the stage
    asks for ``required_dimensions``). Scores given as "x/y" are read as ratios;
    when a reply's plain numbers run above 10 (but not above 100) it used a 0-100 scale and is
    scaled down.

    Raises:
        JSONExtractionError: no JSON in the reply.
        ValueError: a required dimension is missing or a score is out of range (retried like a
            bad reply, within the same budget).
    """
    _, content = split_reasoning(result.content)
    data = extract_json(content, expect=dict)
    if not isinstance(data, (dict, list)):
        raise ValueError(f"expected a JSON object of scores, got {type(data).__name__}")
    if isinstance(data, list) and not (data and isinstance(data[0], dict)):
        raise ValueError("expected a JSON object of scores, got list")
    reply: JudgeReply = JudgeReply.unwrap(data, required=tuple(required))
    return reply


def parse_scores(
    result: ChatResult, *, required: Sequence[str] = MEAN_DIMENSIONS
) -> tuple[dict[str, float], str | None]:
    """(dimension scores on 0-10, reason) of a judge's reply; see ``parse_judgement``."""
    reply = parse_judgement(result, required=required)
    return reply.score_dict(), reply.reason


def required_dimensions(
    weights: Mapping[str, float] | None, floors: Mapping[str, float] | None = None
) -> tuple[str, ...]:
    """The dimensions a judge must score: all of them, or those weighed above 0 and floored."""
    if not weights:
        return DIMENSIONS
    return tuple(d for d in DIMENSIONS if weights.get(d, 0) > 0 or d in (floors or {}))


def judge_reference(sample: Sample) -> str | None:
    """The answer the judge is shown as a guide: a reference that is not the output itself."""
    ref = sample.reference_output
    if ref is None or not ref.strip() or ref.strip() == sample.output.strip():
        # distill --skip-generation judges the existing answer: it is the output, no guide.
        return None
    return ref


def _claims(reply: JudgeReply) -> list[dict[str, str]]:
    out = []
    for c in reply.claims:
        row = {"claim": c.claim, "verdict": c.verdict}
        if c.evidence:
            row["evidence"] = c.evidence
        out.append(row)
    return out


def judge_messages(sample: Sample) -> list[dict[str, str]]:
    """The single-sample judging request of ``sample`` (its cache key is the sample's)."""
    return evaluation_messages(
        sample.source_text,
        sample.instruction,
        sample.input,
        sample.output,
        reference=judge_reference(sample),
        flags=judge_flags(sample),
    )


def _judgement(
    reply: JudgeReply | JudgeResult,
    name: str,
    client: LLMClient,
    weights: Mapping[str, float] | None,
) -> Judgement:
    scores = reply.score_dict()
    return Judgement(
        evaluator=name,
        model=client.model,
        scores=scores,
        weighted_mean=weighted_mean(scores, dict(weights) if weights else None),
        reason=reply.reason,
        claims=_claims(reply),  # type: ignore[arg-type]
    )


async def judge(
    sample: Sample,
    name: str,
    client: LLMClient,
    weights: Mapping[str, float] | None = None,
    *,
    floors: Mapping[str, float] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
) -> Judgement:
    """One evaluator's judgement; a failure after retries is recorded, not raised."""
    messages = judge_messages(sample)
    try:
        reply, _ = await client.chat(
            messages,
            partial(parse_judgement, required=required_dimensions(weights, floors)),
            kind="judge",
        )
    except LLMError as exc:
        log_failure(log, f"sample {sample.id} (slice {sample.slice_id}): evaluation", exc)
        if on_failure is not None:
            on_failure(
                Failure.from_error(exc, "evaluation", slice_id=sample.slice_id, sample_id=sample.id)
            )
        return Judgement(evaluator=name, model=client.model, error=str(exc))
    return _judgement(reply, name, client, weights)


# --- batched judging (issue 13) ---------------------------------------------------------------
# One call scores several samples of one chunk: rubric once, the source once, then the samples.
# Each sample's judgement is then stored under its own single-sample request's cache key
# (``LLMClient.remember``) and looked up there first (``replay``), so resume, refilter, a new
# evaluator and a change of batch size all find per-sample replies, and a rerun sends nothing.


def batch_limits(config: DistillConfig, client: LLMClient) -> tuple[int, int | None]:
    """(most samples per judge call, token budget of their text or None) for an evaluator."""
    return config.judge_batch_limits(client.config)


def sample_tokens(sample: Sample) -> int:
    """A sample's text in tokens, roughly (two characters a token across Chinese and English)."""
    ref = judge_reference(sample) or ""
    return (len(sample.instruction) + len(sample.input) + len(sample.output) + len(ref)) // 2 + 1


def split_batches(samples: Sequence[Sample], size: int, tokens: int | None) -> list[list[Sample]]:
    """``samples`` in order, cut into batches of at most ``size`` and ``tokens`` (a sample over
    the budget goes alone)."""
    out: list[list[Sample]] = []
    cur: list[Sample] = []
    used = 0
    for s in samples:
        t = sample_tokens(s)
        if cur and (len(cur) >= size or (tokens is not None and used + t > tokens)):
            out.append(cur)
            cur, used = [], 0
        cur.append(s)
        used += t
    if cur:
        out.append(cur)
    return out


def parse_judgement_batch(
    result: ChatResult, *, required: Sequence[str] = MEAN_DIMENSIONS
) -> JudgeBatchReply:
    """A batched judging reply; entries that do not read are left out (``JudgeBatchReply``)."""
    _, content = split_reasoning(result.content)
    data = extract_json(content, expect=dict)
    reply: JudgeBatchReply = JudgeBatchReply.unwrap(data, required=tuple(required))
    return reply


def _single_reply(entry: JudgeResult) -> str:
    """A batch entry as the reply its sample's own request would have had."""
    return json.dumps(entry.model_dump(mode="json", exclude={"id"}), ensure_ascii=False)


# Failures of a batched request that one-sample requests may not meet.
_BATCH_TROUBLE = (TruncatedReplyError, ContextOverflowError, UnusableReplyError)
_REQUEST_STATUSES = frozenset({400, 413, 422})


@dataclass
class _BatchJudge:
    """One evaluator judging one chunk's samples in batches (re-asking what a batch missed)."""

    name: str
    client: LLMClient
    weights: Mapping[str, float] | None
    floors: Mapping[str, float] | None
    on_failure: Callable[[Failure], None] | None

    def _required(self) -> tuple[str, ...]:
        return required_dimensions(self.weights, self.floors)

    async def _single(self, sample: Sample) -> Judgement:
        return await judge(
            sample,
            self.name,
            self.client,
            self.weights,
            floors=self.floors,
            on_failure=self.on_failure,
        )

    async def run(
        self, samples: Sequence[Sample], size: int, tokens: int | None
    ) -> dict[str, Judgement]:
        """Each sample's judgement, by sample id: cached ones first, the rest in batches."""
        out: dict[str, Judgement] = {}
        parse = partial(parse_judgement, required=self._required())
        pending = []
        for sample in samples:
            hit = self.client.replay(judge_messages(sample), parse, kind="judge")
            if hit is not None:
                out[sample.id] = _judgement(hit, self.name, self.client, self.weights)
            else:
                pending.append(sample)
        batches = split_batches(pending, size, tokens)
        for found in await asyncio.gather(*(self._batch(b, retry=True) for b in batches)):
            out.update(found)
        return out

    async def _batch(self, batch: list[Sample], *, retry: bool) -> dict[str, Judgement]:
        """One batch judged; entries missing or unreadable are asked again, fewer at a time."""
        if len(batch) == 1:
            return {batch[0].id: await self._single(batch[0])}
        # Ids local to the request ("1", "2", ...): short to copy, and a model copies them right
        # more often than 16 hex digits.
        items = [
            BatchItem(str(n), s.instruction, s.input, s.output, judge_reference(s), judge_flags(s))
            for n, s in enumerate(batch, 1)
        ]
        messages = evaluation_batch_messages(batch[0].source_text, items)
        overrides = self._reply_room(messages, len(batch))
        try:
            reply, _ = await self.client.chat(
                messages,
                partial(parse_judgement_batch, required=self._required()),
                overrides=overrides,
                kind="judge_batch",
            )
        except LLMError as exc:
            if isinstance(exc, _BATCH_TROUBLE) or exc.status in _REQUEST_STATUSES:
                # Trouble with the batch itself (too long a reply or prompt, no usable entry,
                # a request the server refuses): each sample alone may well go through.
                log.info("%s: batched judging failed (%s); judging one at a time", self.name, exc)
                return await self._singles(batch)
            # The endpoint failed (a dead connection, a missing model, 5xx after retries):
            # asking again one sample at a time would only multiply the failed calls.
            return self._failed(batch, exc)
        got = reply.by_id()
        out: dict[str, Judgement] = {}
        missing = []
        for n, sample in enumerate(batch, 1):
            entry = got.get(str(n))
            if entry is None:
                missing.append(sample)
                continue
            self.client.remember(judge_messages(sample), _single_reply(entry), kind="judge")
            out[sample.id] = _judgement(entry, self.name, self.client, self.weights)
        if missing:
            log.info(
                "%s: %d of %d batch entries missing or unreadable; asking again",
                self.name,
                len(missing),
                len(batch),
            )
            if retry and len(missing) > 1:
                out.update(await self._batch(missing, retry=False))
            else:
                out.update(await self._singles(missing))
        return out

    def _reply_room(self, messages: list[dict[str, str]], n: int) -> dict[str, int] | None:
        """``max_tokens`` for a batch of ``n``: the endpoint's once per sample (max_tokens is not
        part of the cache key), within JUDGE_BATCH_REPLY_TOKENS and the known context."""
        per_sample = self.client.config.max_tokens
        if not per_sample:
            return None
        room = min(per_sample * n, max(per_sample, JUDGE_BATCH_REPLY_TOKENS))
        context = self.client.config.context_tokens
        if context:
            # 1.5 characters a token: above what Chinese text takes, so the prompt fits.
            prompt = int(sum(len(m["content"]) for m in messages) / 1.5) + 64
            room = min(room, max(per_sample, context - prompt))
        return {"max_tokens": room}

    def _failed(self, batch: Sequence[Sample], exc: LLMError) -> dict[str, Judgement]:
        """Every sample of a batch whose call failed: recorded, logged once."""
        ids = ", ".join(s.id for s in batch)
        log_failure(log, f"samples {ids} (slice {batch[0].slice_id}): evaluation", exc)
        for s in batch:
            if self.on_failure is not None:
                self.on_failure(
                    Failure.from_error(exc, "evaluation", slice_id=s.slice_id, sample_id=s.id)
                )
        return {
            s.id: Judgement(evaluator=self.name, model=self.client.model, error=str(exc))
            for s in batch
        }

    async def _singles(self, samples: Sequence[Sample]) -> dict[str, Judgement]:
        judged = await asyncio.gather(*(self._single(s) for s in samples))
        return {s.id: j for s, j in zip(samples, judged, strict=True)}


def _wave(config: DistillConfig, asked: int, total: int, votes: int) -> int:
    """How many more judges to ask at once: all of them, unless ``early_drop`` may spare some.

    After ``asked`` of ``total`` judges gave ``votes``, the sample is voted down once the judges
    left cannot reach ``min_votes``: asking the next ``w`` judges together, w = left - (needed) +
    1, is the fewest after which every one of them voting no decides it. So nothing is asked in
    turn that could not spare a call (``min_votes`` 1 of 2: both at once), and nothing that a
    vote already made needless.
    """
    left = total - asked
    if not config.early_drop:
        return left
    return max(1, min(left, left - (config.min_votes - votes) + 1))


def _votes(judgements: Sequence[Judgement], config: DistillConfig) -> int:
    return decide(
        judgements,
        config.min_score_threshold,
        config.min_votes,
        config.dimension_weights,
        floors=config.score_floors,
    ).votes


def _spared(sample: Sample, name: str, client: LLMClient, config: DistillConfig) -> Judgement:
    """A judge ``early_drop`` does not ask: its cached judgement when it has one (a run at other
    settings asked it, so it is free and refilter can use it), else a skipped judgement."""
    parse = partial(
        parse_judgement, required=required_dimensions(config.dimension_weights, config.score_floors)
    )
    hit = client.replay(judge_messages(sample), parse, kind="judge")
    if hit is not None:
        return _judgement(hit, name, client, config.dimension_weights)
    return Judgement(evaluator=name, model=client.model, skipped=True)


def _decided(sample: Sample, judgements: list[Judgement], config: DistillConfig) -> ScoredSample:
    scored = ScoredSample(**sample.model_dump(), judgements=judgements)
    return apply_thresholds(
        scored,
        min_score_threshold=config.min_score_threshold,
        min_votes=config.min_votes,
        weights=config.dimension_weights,
        floors=config.score_floors,
    )


async def evaluate_group(
    samples: Sequence[Sample],
    evaluators: Mapping[str, LLMClient],
    config: DistillConfig,
    *,
    on_failure: Callable[[Failure], None] | None = None,
) -> list[ScoredSample]:
    """Samples of one chunk scored by the evaluators (in batches where set), and decided.

    The evaluators are asked in waves (``_wave``; one wave of all of them without
    ``early_drop``): a sample the judges so far have voted down is not sent to the rest, who
    get a skipped judgement for it instead.
    """
    if len(samples) <= 1 or len({s.id for s in samples}) < len(samples):
        return list(
            await asyncio.gather(
                *(evaluate_sample(s, evaluators, config, on_failure=on_failure) for s in samples)
            )
        )
    return await _in_waves(samples, evaluators, config, on_failure)


async def _in_waves(
    samples: Sequence[Sample],
    evaluators: Mapping[str, LLMClient],
    config: DistillConfig,
    on_failure: Callable[[Failure], None] | None,
) -> list[ScoredSample]:
    """``samples`` (distinct ids) judged wave by wave (``_wave``), then decided: a sample the
    judges so far have voted down is left out of the later waves and ``_spared`` by the rest."""
    items = list(evaluators.items())
    found: dict[str, list[Judgement]] = {s.id: [] for s in samples}
    asked = 0
    while asked < len(items):
        votes = {s.id: _votes(found[s.id], config) for s in samples}
        left = len(items) - asked
        down = config.early_drop and asked > 0
        open_ = [s for s in samples if not (down and votes[s.id] + left < config.min_votes)]
        if not open_:
            break
        size = min(_wave(config, asked, len(items), votes[s.id]) for s in open_)
        wave = items[asked : asked + size]
        by_evaluator = await asyncio.gather(
            *(
                _BatchJudge(
                    name, client, config.dimension_weights, config.score_floors, on_failure
                ).run(open_, *batch_limits(config, client))
                if len(open_) > 1
                else _single_judgement(open_[0], name, client, config, on_failure)
                for name, client in wave
            )
        )
        for sample in samples:
            for (name, client), got in zip(wave, by_evaluator, strict=True):
                j = got.get(sample.id)
                found[sample.id].append(
                    j if j is not None else _spared(sample, name, client, config)
                )
        asked += len(wave)
    for sample in samples:
        for name, client in items[len(found[sample.id]) :]:
            found[sample.id].append(_spared(sample, name, client, config))
    return [_decided(s, found[s.id], config) for s in samples]


async def _single_judgement(
    sample: Sample,
    name: str,
    client: LLMClient,
    config: DistillConfig,
    on_failure: Callable[[Failure], None] | None,
) -> dict[str, Judgement]:
    j = await judge(
        sample,
        name,
        client,
        config.dimension_weights,
        floors=config.score_floors,
        on_failure=on_failure,
    )
    return {sample.id: j}


async def chunk_groups(
    samples: AsyncIterable[Sample], size: int, tokens: int | None
) -> AsyncIterator[list[Sample]]:
    """Consecutive samples of one chunk, in groups of at most ``size`` (and ``tokens``).

    A generation reply's samples arrive one after another, so a chunk's samples are judged
    together (and close in time: a provider's prefix cache still holds the chunk).
    """
    group: list[Sample] = []
    key: tuple[str, int, str] | None = None
    used = 0
    async for sample in samples:
        if not sample.source_text:
            # No chunk (topics mode, an instruction set): judged one by one, as before.
            if group:
                yield group
            group, key, used = [], None, 0
            yield [sample]
            continue
        k = (sample.slice_id, sample.chunk_index, sample.source_text)
        t = sample_tokens(sample)
        full = len(group) >= size or (tokens is not None and group and used + t > tokens)
        if group and (k != key or full):
            yield group
            group, used = [], 0
        group.append(sample)
        key = k
        used += t
    if group:
        yield group


async def evaluate_sample(
    sample: Sample,
    evaluators: Mapping[str, LLMClient],
    config: DistillConfig,
    *,
    on_failure: Callable[[Failure], None] | None = None,
) -> ScoredSample:
    """The evaluators' judgements for one sample (in waves, see ``evaluate_group``), decided."""
    return (await _in_waves([sample], evaluators, config, on_failure))[0]


async def evaluate_samples(
    samples: AsyncIterable[Sample],
    evaluators: Mapping[str, LLMClient],
    config: DistillConfig,
    *,
    counts: JudgeCounts | None = None,
    on_failure: Callable[[Failure], None] | None = None,
    gates: Sequence[Gate] = (),
) -> AsyncIterator[ScoredSample]:
    """Yield each sample scored by every evaluator, in completion order.

    ``gates`` run first; a sample a gate drops is yielded unjudged (``drop_reason`` "gate:<name>")
    so that no evaluator is paid for it. A sample dropped as it was generated (a repeated
    question) goes through the gates too, for what they redact, and is never judged.
    """
    # Samples waiting for judges are small (the chunk text is shared), so buffer plenty: the
    # teacher then runs ahead instead of being throttled to the judges' pace, and a late
    # teacher retry no longer stretches the end of the run. Still a constant bound on memory.
    limit = max(EVAL_BUFFER_SAMPLES, 4 * max(c.config.max_concurrent for c in evaluators.values()))

    async def gated(sample: Sample) -> ScoredSample | None:
        """The sample decided without judges (a gate, a repeated question), else None."""
        if gates:
            # Also on a sample already dropped (a duplicate question): the gates redact what
            # is written to the raw file, and a gate's reason comes first.
            verdict, gate_name = await run_gates(sample, gates)
            if verdict is not None:
                return ScoredSample(
                    **sample.model_dump(exclude=_DECISION),
                    passed=False,
                    drop_reason=verdict.drop_reason or f"{GATE_PREFIX}{gate_name}",
                    drop_detail=verdict.reason,
                )
        if isinstance(sample, ScoredSample) and is_unjudged_drop(sample):
            return sample  # dropped as it was generated (a duplicate question): never judged
        return None

    def counted(scored: list[ScoredSample]) -> list[ScoredSample]:
        if counts is not None:
            counts.samples_evaluated += len(scored)
            counts.evaluation_failures += sum(
                1 for s in scored for j in s.judgements if j.error is not None
            )
            counts.judgements_skipped += sum(1 for s in scored for j in s.judgements if j.skipped)
        return scored

    async def one(group: list[Sample]) -> list[ScoredSample]:
        decided = await asyncio.gather(*(gated(s) for s in group))
        judged = iter(
            counted(
                await evaluate_group(
                    [s for s, d in zip(group, decided, strict=True) if d is None],
                    evaluators,
                    config,
                    on_failure=on_failure,
                )
            )
        )
        return [d if d is not None else next(judged) for d in decided]

    limits = [batch_limits(config, c) for c in evaluators.values()]
    size = max(n for n, _ in limits)
    budgets = [t for n, t in limits if n > 1]
    tokens = None if size == 1 or None in budgets else max(t for t in budgets if t is not None)
    groups = chunk_groups(samples, size, tokens)
    # Judges asked in turn (early_drop) hold a group longer: keep as many calls in flight.
    waves = min(config.min_votes, len(evaluators)) if config.early_drop else 1
    async for scored in bounded_map(groups, one, limit=max(1, waves * limit // size)):
        for one_scored in scored:
            yield one_scored
