"""Stage 3: every evaluator scores every sample, concurrently, as soon as it is generated."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from .concurrency import bounded_map
from .config import DIMENSIONS, DistillConfig
from .errors import LLMError
from .filtering import apply_thresholds, weighted_mean
from .gates import GATE_PREFIX, Gate, run_gates
from .llm_client import ChatResult, LLMClient
from .models import Failure, Judgement, Sample, ScoredSample, StageCounts
from .prompts import evaluation_messages
from .utils import extract_json, split_reasoning

log = logging.getLogger(__name__)

EVAL_BUFFER_SAMPLES = 1024

_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def _to_score(value: Any) -> float | None:
    """A 0-10 score from a number or a string like "8", "8/10", "8.5分"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str):
        m = _NUMBER_RE.search(value)
        if not m:
            return None
        x = float(m.group())
    elif isinstance(value, dict):
        return _to_score(value.get("score"))
    else:
        return None
    if not math.isfinite(x):
        return None
    return min(10.0, max(0.0, x))


def parse_scores(result: ChatResult) -> tuple[dict[str, float], str | None]:
    """Dimension scores and the reason from an evaluator reply.

    Raises:
        JSONExtractionError: no JSON in the reply.
        ValueError: JSON without any known dimension (retried like a bad reply).
    """
    _, content = split_reasoning(result.content)
    data = extract_json(content, expect=dict)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object of scores, got {type(data).__name__}")
    if isinstance(data.get("scores"), dict):
        data = {**data["scores"], "reason": data.get("reason")}
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    scores = {}
    for dim in DIMENSIONS:
        s = _to_score(lowered.get(dim))
        if s is not None:
            scores[dim] = s
    if not scores:
        raise ValueError(f"no score for any of {', '.join(DIMENSIONS)}")
    reason = lowered.get("reason")
    return scores, (str(reason) if reason is not None else None)


async def judge(
    sample: Sample,
    name: str,
    client: LLMClient,
    weights: Mapping[str, float] | None = None,
    *,
    on_failure: Callable[[Failure], None] | None = None,
) -> Judgement:
    """One evaluator's judgement; a failure after retries is recorded, not raised."""
    messages = evaluation_messages(
        sample.source_text, sample.instruction, sample.input, sample.output
    )
    try:
        (scores, reason), _ = await client.chat(messages, parse_scores)
    except LLMError as exc:
        if on_failure is not None:
            on_failure(
                Failure(
                    kind="evaluation",
                    slice_id=sample.slice_id,
                    sample_id=sample.id,
                    endpoint=name,
                    model=client.model,
                    status=exc.status,
                    reason=str(exc),
                    attempts=exc.attempts,
                )
            )
        return Judgement(evaluator=name, model=client.model, error=str(exc))
    return Judgement(
        evaluator=name,
        model=client.model,
        scores=scores,
        weighted_mean=weighted_mean(scores, dict(weights) if weights else None),
        reason=reason,
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
            judge(sample, name, client, config.dimension_weights, on_failure=on_failure)
            for name, client in evaluators.items()
        )
    )
    scored = ScoredSample(**sample.model_dump(), judgements=list(judgements))
    return apply_thresholds(
        scored,
        min_score_threshold=config.min_score_threshold,
        min_votes=config.min_votes,
        weights=config.dimension_weights,
    )


async def evaluate_samples(
    samples: AsyncIterable[Sample],
    evaluators: Mapping[str, LLMClient],
    config: DistillConfig,
    *,
    stats: StageCounts | None = None,
    on_failure: Callable[[Failure], None] | None = None,
    gates: Sequence[Gate] = (),
) -> AsyncIterator[ScoredSample]:
    """Yield each sample scored by every evaluator, in completion order.

    ``gates`` run first; a sample a gate drops is yielded unjudged (``drop_reason`` "gate:<name>")
    so that no evaluator is paid for it.
    """
    # Samples waiting for judges are small (the chunk text is shared), so buffer plenty: the
    # teacher then runs ahead instead of being throttled to the judges' pace, and a late
    # teacher retry no longer stretches the end of the run. Still a constant bound on memory.
    limit = max(EVAL_BUFFER_SAMPLES, 4 * max(c.config.max_concurrent for c in evaluators.values()))

    async def one(sample: Sample) -> ScoredSample:
        if gates:
            verdict, gate_name = await run_gates(sample, gates)
            if verdict is not None:
                return ScoredSample(
                    **sample.model_dump(),
                    passed=False,
                    drop_reason=f"{GATE_PREFIX}{gate_name}",
                    drop_detail=verdict.reason,
                )
        scored = await evaluate_sample(sample, evaluators, config, on_failure=on_failure)
        if stats is not None:
            stats.samples_evaluated += 1
            stats.evaluation_failures += sum(1 for j in scored.judgements if j.error is not None)
        return scored

    async for scored in bounded_map(samples, one, limit=limit):
        yield scored
