"""``sft-distill eval --estimate``: the calls, tokens and cost of an eval, before any call.

Per question: one answer from the student and from each baseline (as long as the reference
answer, capped by the endpoint's ``max_tokens``); every judge scores every answer (the
reference included) and compares the student with the reference and with each baseline in both
orders. Prompts are built for real and counted like a run's (``planning.estimate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..llm.prompts import evaluation_messages
from ..outputs.report import model_price
from ..planning.estimate import (
    TYPICAL_JUDGEMENT_TOKENS,
    EndpointEstimate,
    Estimate,
    estimate_tokens,
    messages_tokens,
)
from .prompts import pairwise_messages, student_messages

if TYPE_CHECKING:
    from .runner import EvalSettings

__all__ = ["estimate_eval", "format_eval_estimate"]

# A student's answer when the question has no reference to size it by.
TYPICAL_ANSWER_TOKENS = 200
# A pairwise reply: a short analysis, a reason and the winner as JSON.
TYPICAL_PAIRWISE_TOKENS = 150


def estimate_eval(settings: EvalSettings) -> Estimate:
    """Expected calls and tokens per endpoint, and cost with the config's prices."""
    s = settings
    judges = s.config.evaluators
    targets = {t.label: EndpointEstimate(t.label, t.endpoint.model, "answer") for t in s.targets}
    scorers = {n: EndpointEstimate(n, ep.model, "evaluation") for n, ep in judges.items()}
    est = Estimate(input=str(s.questions.described.get("path", "")), kind="eval")

    def add(e: EndpointEstimate, prompt: int, reply: int, cap: int | None, calls: int) -> None:
        reply = reply if cap is None else min(reply, cap)
        e.calls += calls
        e.prompt_tokens += calls * prompt
        e.completion_tokens += calls * reply

    for q in s.questions.questions:
        answer = estimate_tokens(q.reference or "") or TYPICAL_ANSWER_TOKENS
        asked = messages_tokens(student_messages(q.instruction, q.input, system=q.system))
        for t in s.targets:
            add(targets[t.label], asked, answer, t.endpoint.max_tokens, 1)
        answers = len(s.targets) + (q.reference is not None)
        comparisons = len(s.baselines) + (q.reference is not None)
        doc = q.source_text
        score = messages_tokens(evaluation_messages(doc, q.instruction, q.input, "")) + answer
        pair = messages_tokens(pairwise_messages(doc, q.instruction, q.input, "", "")) + 2 * answer
        for name, ep in judges.items():
            add(scorers[name], score, TYPICAL_JUDGEMENT_TOKENS, ep.max_tokens, answers)
            add(scorers[name], pair, TYPICAL_PAIRWISE_TOKENS, ep.max_tokens, 2 * comparisons)
    est.slices = len(s.questions.questions)
    est.endpoints = [*targets.values(), *scorers.values()]
    _price(est, s.config.prices)
    est.detail = {
        "questions": est.slices,
        "with_reference": s.questions.with_reference,
        "with_source": s.questions.with_source,
        "baselines": len(s.baselines),
    }
    return est


def _price(est: Estimate, prices: Mapping[str, Any] | None) -> None:
    """Cost per endpoint and in all, when every model has a price."""
    if not prices:
        return
    total = 0.0
    for e in est.endpoints:
        price = model_price(prices, e.model)
        if price is None:
            if e.model not in est.unpriced:
                est.unpriced.append(e.model)
            continue
        e.cost = e.prompt_tokens / 1000 * price[0] + e.completion_tokens / 1000 * price[1]
        total += e.cost
    est.total_cost = total


def format_eval_estimate(est: Estimate) -> str:
    """What ``sft-distill eval --estimate`` prints: a headline, then the run estimate's table."""
    from ..cli.estimate import format_estimate

    d = est.detail
    headline = (
        f"sft-distill eval estimate for {est.input}: {d['questions']:,} questions "
        f"({d['with_reference']:,} with a reference answer, {d['with_source']:,} with their "
        f"source), {d['baselines']} baseline(s)"
    )
    lines = format_estimate(est).split("\n")
    return "\n".join([headline, *lines[1:]])
