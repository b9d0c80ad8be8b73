"""Stage 3: every evaluator scores every sample, concurrently, as soon as it is generated."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..config.defaults import DIMENSIONS
from ..config.models import DistillConfig
from ..errors import LLMError
from ..llm.client import ChatResult, LLMClient, log_failure
from ..llm.json_extract import extract_json, split_reasoning
from ..llm.prompts import evaluation_messages
from ..models import Failure, Judgement, Sample, ScoredSample
from ..selection.thresholds import apply_thresholds, weighted_mean
from .gates.base import GATE_PREFIX, Gate, run_gates
from .stream import bounded_map

log = logging.getLogger(__name__)

EVAL_BUFFER_SAMPLES = 1024


@dataclass
class JudgeCounts:
    """What the judging stage counts; the names are the funnel's (``metadata.json`` counts)."""

    samples_evaluated: int = 0
    evaluation_failures: int = 0


_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


_RATIO_RE = re.compile(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")


def _raw_score(value: Any) -> tuple[float, bool] | None:
    """(number, already out of 10) from a number or a string like "8", "8/10", "4.5/5", "8.5分"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        x = float(value)
        return (x, False) if math.isfinite(x) else None
    if isinstance(value, str):
        ratio = _RATIO_RE.search(value)
        if ratio and float(ratio.group(2)) > 0:  # "4.5/5" means 9 out of 10
            return 10.0 * float(ratio.group(1)) / float(ratio.group(2)), True
        m = _NUMBER_RE.search(value)
        return (float(m.group()), False) if m else None
    if isinstance(value, dict):
        return _raw_score(value.get("score"))
    return None


def parse_scores(
    result: ChatResult, *, required: Sequence[str] = DIMENSIONS
) -> tuple[dict[str, float], str | None]:
    """Dimension scores (0-10) and the reason from an evaluator reply.

    Every dimension in ``required`` must be scored. Scores given as "x/y" are read as ratios;
    when a reply's plain numbers run above 10 (but not above 100) it used a 0-100 scale and is
    scaled down.

    Raises:
        JSONExtractionError: no JSON in the reply.
        ValueError: a required dimension is missing or a score is out of range (retried like a
            bad reply, within the same budget).
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
    raw = {dim: _raw_score(lowered.get(dim)) for dim in DIMENSIONS}
    found = {dim: r for dim, r in raw.items() if r is not None}
    missing = [dim for dim in required if dim not in found]
    if missing:
        raise ValueError(f"no score for {', '.join(missing)}")
    plain = [x for x, scaled in found.values() if not scaled]
    if any(x < 0 or x > 100 for x in plain):
        raise ValueError("scores must be between 0 and 10")
    factor = 0.1 if any(x > 10 for x in plain) else 1.0
    scores = {
        dim: min(10.0, max(0.0, x if scaled else x * factor)) for dim, (x, scaled) in found.items()
    }
    reason = lowered.get("reason")
    return scores, (str(reason) if reason is not None else None)


def required_dimensions(weights: Mapping[str, float] | None) -> tuple[str, ...]:
    """The dimensions a judge must score: all of them, or those with a weight above 0."""
    if not weights:
        return DIMENSIONS
    return tuple(d for d in DIMENSIONS if weights.get(d, 0) > 0)


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
        (scores, reason), _ = await client.chat(
            messages, partial(parse_scores, required=required_dimensions(weights)), kind="judge"
        )
    except LLMError as exc:
        log_failure(log, f"sample {sample.id} (slice {sample.slice_id}): evaluation", exc)
        if on_failure is not None:
            on_failure(
                Failure.from_error(exc, "evaluation", slice_id=sample.slice_id, sample_id=sample.id)
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
    counts: JudgeCounts | None = None,
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
        if counts is not None:
            counts.samples_evaluated += 1
            counts.evaluation_failures += sum(1 for j in scored.judgements if j.error is not None)
        return scored

    async for scored in bounded_map(samples, one, limit=limit):
        yield scored
