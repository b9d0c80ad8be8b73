"""``python -m sft_distill.simulator``: the simulator's flags, and serving until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from .faults import _ALL_FAULT_KINDS, FAULT_KINDS
from .response_formats import SERVER_DIALECTS
from .server import Simulator, SimulatorConfig, _check_loopback
from .students import parse_answer_gaps


def _loopback_host(value: str) -> str:
    try:
        _check_loopback(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _rate(value: str) -> float:
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return v


def _optional_seconds(value: str) -> float | None:
    if value.strip().lower() in ("none", "off", ""):
        return None
    v = float(value)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'none', got {value}")
    return v


def _context_tokens(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _faults(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    unknown = sorted(set(kinds) - _ALL_FAULT_KINDS)
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown fault kind(s) {unknown}")
    return kinds


def _answer_gap(value: str) -> tuple[str, float]:
    model, sep, _ = value.rpartition("=")
    try:
        parsed = parse_answer_gaps(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not sep or not model.strip():
        raise argparse.ArgumentTypeError(f"expected MODEL=GAP, got {value!r}")
    return model.strip(), parsed[model.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse CLI flags; exits with status 2 on a non-loopback host or a bad value."""
    p = argparse.ArgumentParser(
        prog="python -m sft_distill.simulator",
        description="OpenAI-compatible simulator for sft_distill (loopback only).",
    )
    p.add_argument("--port", type=int, default=0, help="port (0 = pick a free one; printed)")
    p.add_argument("--host", type=_loopback_host, default="127.0.0.1", help="loopback host only")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--fail-rate", type=_rate, default=0.0)
    p.add_argument("--rate-limit-rate", type=_rate, default=0.0)
    p.add_argument(
        "--retry-after-s",
        type=_optional_seconds,
        default=1.0,
        help="Retry-After on 429s ('none' = no header)",
    )
    p.add_argument("--malformed-rate", type=_rate, default=0.0)
    p.add_argument("--messy", action="store_true", help="wrap JSON like real models do")
    p.add_argument("--reasoning", action="store_true", help="add message.reasoning_content")
    p.add_argument("--score-bias", type=float, default=0.0)
    p.add_argument("--timeout-s", type=float, default=30.0, help="hang of a 'timeout' fault")
    p.add_argument(
        "--faults", type=_faults, default=FAULT_KINDS, help="comma-separated fault kinds"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--defect-rate",
        type=_rate,
        default=0.0,
        help="share of generated samples given a seeded defect (number_swapped, wrong_article, "
        "context_dependent, truncated, non_answer, misattributed, invented_sentence); the "
        "ground truth is at GET /defects",
    )
    p.add_argument(
        "--context-tokens",
        type=_context_tokens,
        default=None,
        help="context length: /v1/models reports it as max_model_len, and longer prompts get "
        "vLLM's HTTP 400 (tokens = characters / 2)",
    )
    _wire_arguments(p)
    _eval_and_batch_arguments(p)
    return p.parse_args(argv)


def _wire_arguments(p: argparse.ArgumentParser) -> None:
    """What it plays on the wire: structured-output forms, usage dialect, prefix cache."""
    p.add_argument(
        "--structured-output",
        choices=SERVER_DIALECTS,
        default="openai",
        help="which response_format forms it takes: openai (json_schema), llamacpp (json_object "
        "with a schema; HTTP 500 for json_schema), json_object (DeepSeek), none",
    )
    p.add_argument(
        "--usage-dialect",
        choices=("openai", "deepseek", "dashscope"),
        default="openai",
        help="how usage reports cached prompt tokens (prompt_tokens_details.cached_tokens, or "
        "DeepSeek's prompt_cache_hit_tokens/prompt_cache_miss_tokens)",
    )
    p.add_argument(
        "--prefix-cache-min-tokens",
        type=_context_tokens,
        default=1024,
        help="shortest prompt prefix the prefix cache hits (tokens; OpenAI: 1024)",
    )
    p.add_argument(
        "--prefix-cache-ttl-s",
        type=float,
        default=300.0,
        help="how long a prompt prefix stays cached after its last use",
    )


def _eval_and_batch_arguments(p: argparse.ArgumentParser) -> None:
    """Students and pairwise bias for ``sft-distill eval``; batched judging and Batch API knobs."""
    p.add_argument(
        "--answer-gap",
        action="append",
        type=_answer_gap,
        default=[],
        metavar="MODEL=GAP",
        help="sft-distill eval: MODEL answers plain questions as a student, GAP from -1 (worse "
        "than the teacher's answers) to 1 (better); repeatable",
    )
    p.add_argument(
        "--position-bias",
        type=_rate,
        default=0.0,
        help="sft-distill eval: share of pairwise verdicts that name answer A whatever it says",
    )
    p.add_argument(
        "--judge-batch-faults",
        action="store_true",
        help="batched judging replies (3+ samples) omit one entry and spoil another (seeded)",
    )
    p.add_argument(
        "--batch-delay-s",
        type=float,
        default=0.0,
        help="Batch API: seconds a batch stays in_progress before its lines are answered",
    )
    p.add_argument(
        "--batch-fail-lines",
        type=int,
        default=0,
        help="Batch API: this many lines (the first ones answered) fail with a server_error",
    )
    p.add_argument(
        "--batch-expire",
        type=int,
        default=0,
        help="Batch API: this many batches (the first ones) expire with half their lines undone",
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The ``SimulatorConfig`` described by parsed CLI flags."""
    return SimulatorConfig(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        fail_rate=args.fail_rate,
        rate_limit_rate=args.rate_limit_rate,
        retry_after_s=args.retry_after_s,
        malformed_rate=args.malformed_rate,
        messy=args.messy,
        reasoning=args.reasoning,
        score_bias=args.score_bias,
        seed=args.seed,
        faults=args.faults,
        timeout_s=args.timeout_s,
        context_tokens=args.context_tokens,
        defect_rate=args.defect_rate,
        structured_output=args.structured_output,
        usage_dialect=args.usage_dialect,
        prefix_cache_min_tokens=args.prefix_cache_min_tokens,
        prefix_cache_ttl_s=args.prefix_cache_ttl_s,
        answer_gaps=dict(args.answer_gap),
        position_bias=args.position_bias,
        judge_batch_faults=args.judge_batch_faults,
        batch_delay_s=args.batch_delay_s,
        batch_fail_lines=args.batch_fail_lines,
        batch_expire=args.batch_expire,
    )


async def _serve(cfg: SimulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows: KeyboardInterrupt ends asyncio.run there instead.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Simulator(cfg, host=host, port=port) as sim:
        print(f"simulator listening on {sim.url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM."""
    args = parse_args(argv)
    try:
        asyncio.run(_serve(config_from_args(args), args.host, args.port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
