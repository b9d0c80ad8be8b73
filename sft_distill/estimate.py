"""``--estimate``: expected calls, tokens and cost of a run, from the input and settings alone.

Reads and chunks the slices exactly as the pipeline does and builds the real prompts, but sends
nothing. Tokens are approximated from characters: about 1.6 characters per token for Chinese
text and 4 for English (``prompts.detect_language`` decides, per text), plus a few tokens per
message. Replies are assumed to be a typical size, capped by each endpoint's ``max_tokens``.
Retries, re-asks and reasoning tokens are not included; replies already in the output
directory's cache cost nothing on a rerun.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import DistillConfig, EndpointConfig
from .data_io import BadLine, PathLike, iter_slices
from .generator import chunk_slice
from .prompts import detect_language, evaluation_messages, generation_messages
from .report import model_price

__all__ = [
    "CHARS_PER_TOKEN",
    "EndpointEstimate",
    "Estimate",
    "estimate",
    "estimate_tokens",
    "format_estimate",
]

CHARS_PER_TOKEN = {"zh": 1.6, "en": 4.0}
# Chat formats wrap each message in a few special tokens, and the reply is primed with a few more.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3
# A generated sample (instruction + input + output + JSON syntax), by the document's language.
TYPICAL_SAMPLE_TOKENS = {"zh": 250, "en": 200}
# An evaluator's reply: five scores and a one-sentence reason as JSON.
TYPICAL_JUDGEMENT_TOKENS = 80


def estimate_tokens(text: str) -> int:
    """Approximate token count of ``text`` from its length and detected language."""
    if not text:
        return 0
    return math.ceil(len(text) / CHARS_PER_TOKEN[detect_language(text)])


def _messages_tokens(messages: list[dict[str, str]]) -> int:
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
    completion_tokens: int = 0
    completion_tokens_max: int | None = None
    cost: float | None = None


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
    unpriced: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Expected LLM calls in all (no retries)."""
        return sum(e.calls for e in self.endpoints)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "calls": self.calls}


def _max(ep: EndpointConfig, calls: int) -> int | None:
    return None if ep.max_tokens is None else ep.max_tokens * calls


def estimate(
    input_path: PathLike,
    config: DistillConfig,
    *,
    prices: Mapping[str, Any] | None = None,
    strict: bool = False,
) -> Estimate:
    """Count slices, chunks and expected samples, and estimate calls, tokens and cost per model.

    ``prices`` (default: the config's ``prices`` when it has them) maps a model name to
    ``{"input_per_1k": x, "output_per_1k": y}``.

    Raises:
        InputError: the input cannot be read (or, with ``strict``, its first bad line).
    """
    if prices is None:
        prices = getattr(config, "prices", None)
    est = Estimate(input=str(input_path))
    gen = EndpointEstimate("generator", config.generator.model, "generation")
    judges = {
        name: EndpointEstimate(name, ep.model, "evaluation")
        for name, ep in config.evaluators.items()
    }
    languages: Counter[str] = Counter()

    def on_bad_line(bad: BadLine) -> None:
        if bad.skipped:
            est.bad_lines += 1

    for slice_ in iter_slices(input_path, strict=strict, on_bad_line=on_bad_line):
        est.slices += 1
        est.chars += len(slice_.content)
        chunks = chunk_slice(
            slice_, samples_per_slice=config.samples_per_slice, chunk_chars=config.chunk_chars
        )
        for chunk in chunks:
            lang = detect_language(chunk.text) if config.language == "auto" else config.language
            languages[lang] += 1
            doc_tokens = estimate_tokens(chunk.text)
            # The template alone (empty document), in the language the run would use.
            template = generation_messages(
                "", chunk.n_samples, language=lang, system_prompt=config.system_prompt
            )
            gen.calls += 1
            gen.prompt_tokens += _messages_tokens(template) + doc_tokens
            reply = chunk.n_samples * TYPICAL_SAMPLE_TOKENS[lang]
            if config.generator.max_tokens is not None:
                reply = min(reply, config.generator.max_tokens)
            gen.completion_tokens += reply
            sample_tokens = TYPICAL_SAMPLE_TOKENS[lang]
            eval_prompt = _messages_tokens(evaluation_messages("", "", "", "")) + doc_tokens
            est.expected_samples += chunk.n_samples
            for name, ep in config.evaluators.items():
                j = judges[name]
                j.calls += chunk.n_samples
                j.prompt_tokens += chunk.n_samples * (eval_prompt + sample_tokens)
                per_call = TYPICAL_JUDGEMENT_TOKENS
                if ep.max_tokens is not None:
                    per_call = min(per_call, ep.max_tokens)
                j.completion_tokens += chunk.n_samples * per_call
        est.chunks += len(chunks)
    est.languages = dict(sorted(languages.items()))

    gen.completion_tokens_max = _max(config.generator, gen.calls)
    for name, j in judges.items():
        j.completion_tokens_max = _max(config.evaluators[name], j.calls)
    est.endpoints = [gen, *judges.values()]
    for e in est.endpoints:
        m = est.per_model.setdefault(
            e.model, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": None}
        )
        m["calls"] += e.calls
        m["prompt_tokens"] += e.prompt_tokens
        m["completion_tokens"] += e.completion_tokens
    if prices:
        total = 0.0
        for model, m in est.per_model.items():
            price = model_price(prices, model)
            if price is None:
                est.unpriced.append(model)
                continue
            m["cost"] = (
                m["prompt_tokens"] / 1000 * price[0] + m["completion_tokens"] / 1000 * price[1]
            )
            total += m["cost"]
        for e in est.endpoints:
            price = model_price(prices, e.model)
            if price is not None:
                e.cost = e.prompt_tokens / 1000 * price[0] + e.completion_tokens / 1000 * price[1]
        est.total_cost = total
    return est


def format_estimate(est: Estimate) -> str:
    """A readable table of the estimate (what ``--estimate`` prints)."""
    langs = ", ".join(f"{n} {lang}" for lang, n in est.languages.items()) or "none"
    lines = [
        f"sft-distill estimate for {est.input}: {est.slices} slices ({est.chars:,} characters"
        f", {est.bad_lines} bad lines skipped) -> {est.chunks} chunks ({langs})"
        f" -> ~{est.expected_samples} samples",
        "",
    ]
    header = (
        "endpoint",
        "model",
        "stage",
        "calls",
        "prompt tokens",
        "completion tokens",
        "max",
        "cost",
    )
    rows = [header]
    for e in est.endpoints:
        rows.append(
            (
                e.endpoint,
                e.model,
                e.stage,
                f"{e.calls:,}",
                f"{e.prompt_tokens:,}",
                f"{e.completion_tokens:,}",
                "–" if e.completion_tokens_max is None else f"{e.completion_tokens_max:,}",
                "–" if e.cost is None else f"{e.cost:,.4f}",
            )
        )
    rows.append(
        (
            "total",
            "",
            "",
            f"{est.calls:,}",
            f"{sum(e.prompt_tokens for e in est.endpoints):,}",
            f"{sum(e.completion_tokens for e in est.endpoints):,}",
            "",
            "–" if est.total_cost is None else f"{est.total_cost:,.4f}",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for k, r in enumerate(rows):
        cells = [
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0 or k == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        "Tokens are estimates (~1.6 characters per token for Chinese, ~4 for English; replies of "
        "typical size, capped by max_tokens; 'max' = max_tokens x calls). Retries, re-asks and "
        "reasoning tokens are not included; cached replies are free on a rerun."
    )
    if est.total_cost is None:
        lines.append(
            'No prices configured: add "prices": '
            '{"MODEL": {"input_per_1k": X, "output_per_1k": Y}} to the config.'
        )
    elif est.unpriced:
        lines.append(f"No price for: {', '.join(est.unpriced)} (not in the total).")
    return "\n".join(lines)
