"""Stage 3: every evaluator scores every sample, concurrently, as soon as it is generated."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from ..config.defaults import DIMENSIONS, MEAN_DIMENSIONS
from ..config.models import DistillConfig
from ..errors import LLMError
from ..llm.client import ChatResult, LLMClient, log_failure
from ..llm.json_extract import extract_json, split_reasoning
from ..llm.prompts import evaluation_messages
from ..llm.structured import JudgeReply
from ..models import Failure, Judgement, Sample, ScoredSample
from ..selection.thresholds import apply_thresholds, is_unjudged_drop, weighted_mean
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
    messages = evaluation_messages(
        sample.source_text,
        sample.instruction,
        sample.input,
        sample.output,
        reference=judge_reference(sample),
        flags=judge_flags(sample),
    )
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
    scores = reply.score_dict()
    return Judgement(
        evaluator=name,
        model=client.model,
        scores=scores,
        weighted_mean=weighted_mean(scores, dict(weights) if weights else None),
        reason=reply.reason,
        claims=_claims(reply),
    )


async def evaluate_sample(
    sample: Sample,
    evaluators: Mapping[str, LLMClient],
    config: DistillConfig,
    *,
    on_failure: Callable[[Failure], None] | None = None,
) -> ScoredSample:
    """All evaluators' judgements for one sample, and the threshold decision."""
    judgements = await asyncio.gather(
        *(
            judge(
                sample,
                name,
                client,
                config.dimension_weights,
                floors=config.score_floors,
                on_failure=on_failure,
            )
            for name, client in evaluators.items()
        )
    )
    scored = ScoredSample(**sample.model_dump(), judgements=list(judgements))
    return apply_thresholds(
        scored,
        min_score_threshold=config.min_score_threshold,
        min_votes=config.min_votes,
        weights=config.dimension_weights,
        floors=config.score_floors,
    )


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

    async def one(sample: Sample) -> ScoredSample:
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
        scored = await evaluate_sample(sample, evaluators, config, on_failure=on_failure)
        if counts is not None:
            counts.samples_evaluated += 1
            counts.evaluation_failures += sum(1 for j in scored.judgements if j.error is not None)
        return scored

    async for scored in bounded_map(samples, one, limit=limit):
        yield scored
