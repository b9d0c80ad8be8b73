"""``--estimate``: its flags, and the estimate printed (calls, tokens, cost; no LLM call)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from . import EXIT_OK

if TYPE_CHECKING:
    from ..config.models import DistillConfig
    from ..models import PathLike
    from ..planning.estimate import Estimate
    from ..sources.base import SampleSource


def add_estimate_arguments(p: argparse.ArgumentParser) -> None:
    """``--estimate`` and ``--no-probe``, for every mode."""
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the expected calls, tokens and cost, and exit without any LLM call",
    )
    p.add_argument(
        "--no-probe",
        action="store_true",
        help="with --estimate: do not ask the servers (GET /v1/models) for their context length",
    )


def print_estimate(
    source: PathLike | SampleSource,
    config: DistillConfig,
    *,
    strict: bool = False,
    probe: bool = False,
) -> int:
    """``--estimate``: print the expected calls, tokens and cost; no LLM request is sent.

    ``source`` is a slices file or any mode's source. With ``probe`` each endpoint without
    ``context_tokens`` is asked for its context length (one GET, failing soft).
    """
    from ..llm.server_context import context_limits
    from ..planning.modes import estimate_source
    from ..sources.slices import SliceSource

    if isinstance(source, str | Path):
        source = SliceSource(source)
    contexts = context_limits(config, probe=probe)
    print(format_estimate(estimate_source(source, config, strict=strict, contexts=contexts)))
    return EXIT_OK


def _headline(est: Estimate) -> str:
    """The first line: what was read and what it makes, in the mode's own words."""
    d = est.detail
    skipped = f"{est.bad_lines} bad lines skipped"
    if est.kind == "topics":
        if d.get("tree"):
            return (
                f"sft-distill estimate for tree {d['root']!r}: {d['leaves']:,} leaves "
                f"({d['given_questions']:,} questions given), {d['questions_per_tag']} questions "
                f"per leaf -> ~{est.expected_samples:,} samples"
            )
        return (
            f"sft-distill estimate for topic {d['root']!r}: {d['levels']} levels x "
            f"{d['tags_per_level']} sub-topics per level x {d['questions_per_tag']} questions per "
            f"leaf -> up to {d['leaves']:,} leaves and {est.expected_samples:,} samples"
        )
    if est.kind == "distill":
        asked = (
            "no teacher requests (--skip-generation)"
            if d.get("skip_generation")
            else f"{est.chunks:,} teacher requests"
        )
        return (
            f"sft-distill estimate for {est.input}: {est.slices:,} records ({skipped}) -> "
            f"{asked} -> ~{est.expected_samples:,} samples"
        )
    if est.kind == "augment":
        return (
            f"sft-distill estimate for {est.input}: {est.slices:,} kept samples ({skipped}, "
            f"{d.get('not_kept', 0):,} not-kept rows passed over) -> {est.chunks:,} rephrase "
            f"requests -> up to {d.get('variants', 0):,} variants, {est.expected_samples:,} "
            "samples judged with the originals"
        )
    langs = ", ".join(f"{n} {lang}" for lang, n in est.languages.items()) or "none"
    requests = d.get("teacher_requests", est.chunks)
    # A big chunk is asked in several requests (max_samples_per_request).
    asked = f" -> {requests} teacher requests" if requests != est.chunks else ""
    return (
        f"sft-distill estimate for {est.input}: {est.slices} slices ({est.chars:,} characters"
        f", {skipped}) -> {est.chunks} chunks ({langs}){asked} -> ~{est.expected_samples} samples"
    )


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.4f}"


def format_estimate(est: Estimate) -> str:
    """A readable table of the estimate (what ``--estimate`` prints)."""
    lines = [_headline(est), ""]
    header = (
        "endpoint",
        "model",
        "stage",
        "calls",
        "prompt tokens",
        "cached",
        "completion tokens",
        "max",
        "cost",
        "without cache",
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
                f"{e.cached_prompt_tokens:,}",
                f"{e.completion_tokens:,}",
                "–" if e.completion_tokens_max is None else f"{e.completion_tokens_max:,}",
                _money(e.cost),
                _money(e.cost_without_cache),
            )
        )
    rows.append(
        (
            "total",
            "",
            "",
            f"{est.calls:,}",
            f"{sum(e.prompt_tokens for e in est.endpoints):,}",
            f"{sum(e.cached_prompt_tokens for e in est.endpoints):,}",
            f"{sum(e.completion_tokens for e in est.endpoints):,}",
            "",
            _money(est.total_cost),
            _money(est.total_cost_without_cache),
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
    lines.extend(est.notes)
    lines.append(
        "Tokens are estimates (~1.6 characters per token for Chinese, ~4 for English; replies of "
        "typical size, capped by max_tokens; 'max' = max_tokens x calls). Retries, re-asks and "
        "reasoning tokens are not included; cached replies are free on a rerun."
    )
    lines.append(
        "'cached': prompt tokens a server's prefix cache is expected to serve (the start a prompt "
        "shares with an earlier one, from 1,024 tokens in 128-token steps), billed at "
        "cached_input_per_1k; 'without cache': the same calls with no cache hit."
    )
    batched = [e.endpoint for e in est.endpoints if e.batched]
    if batched:
        lines.append(
            f"Through the Batch API (--batch, or an endpoint's batch: true): "
            f"{', '.join(batched)}; costed at the batch price (batch_discount)."
        )
    if est.total_cost is None:
        lines.append(
            'No prices configured: add "prices": {"MODEL": {"input_per_1k": X, "output_per_1k": '
            'Y, "cached_input_per_1k": Z, "batch_discount": D}} to the config.'
        )
    else:
        if est.total_cost_batched is not None and est.total_cost_batched < est.total_cost:
            lines.append(
                f"Through a batch API (batch_discount): {_money(est.total_cost_batched)} in all."
            )
        if est.unpriced:
            lines.append(f"No price for: {', '.join(est.unpriced)} (not in the total).")
    context = _context_lines(est)
    if context:
        lines += ["", "Context:", *context]
    return "\n".join(lines)


# A prompt this close to the context may not fit: real tokenizers differ from our estimate.
NEAR_CONTEXT = 0.8


def _context_lines(est: Estimate) -> list[str]:
    """Per endpoint: its context, and a warning when the largest prompt does not fit it."""
    lines = []
    unknown: dict[str, list[str]] = {}  # why -> endpoints, so one reason is said once
    chunk_chars = est.detail.get("chunk_chars")
    for e in est.endpoints:
        if e.context_tokens is None:
            if e.context_source:
                unknown.setdefault(e.context_source, []).append(e.endpoint)
            continue
        if not e.calls:
            continue
        budget = e.max_tokens or 0
        need = e.max_prompt_tokens + budget
        head = (
            f"  {e.endpoint} ({e.model}): context {e.context_tokens:,} tokens ({e.context_source})"
            f"; largest prompt ~{e.max_prompt_tokens:,} tokens ({e.max_prompt_where})"
            + (f" + max_tokens {budget:,}" if budget else "")
        )
        if e.over_context:
            fix = f"lower chunk_chars (now {chunk_chars})" if chunk_chars else "shorten the input"
            lines.append(
                f"{head}\n  WARNING: ~{e.over_context:,} of {e.calls:,} requests to {e.endpoint} "
                f"will not fit its context: {fix} or max_tokens, or raise the server's context"
            )
        elif need > NEAR_CONTEXT * e.context_tokens:
            lines.append(
                f"{head}\n  close to the limit: tokenizers differ from this estimate (Chinese can "
                "take up to 3x), so some requests may not fit"
            )
        else:
            lines.append(f"{head}: fits")
    for why, names in unknown.items():
        lines.append(f"  {', '.join(names)}: context unknown, {why}")
    return lines
