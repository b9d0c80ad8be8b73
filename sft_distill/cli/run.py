"""``sft-distill [run]``: the main job's flags, and how any mode is run, summarised and stopped.

Every mode (``run`` here; ``topics``, ``distill``, ``augment`` in their modules) is a ``Mode``:
its own flags and how to build its source of samples; ``run_mode`` does the rest.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .. import __version__
from ..errors import EXIT_INTERRUPTED, ConfigError, DistillError, interrupted_message
from ..text import plural
from . import COMMANDS, EXIT_OK, EXIT_PARTIAL, EXIT_QUALITY, EXIT_TERMINATED, EXIT_USAGE
from .estimate import add_estimate_arguments
from .flags import (
    add_compliance_arguments,
    add_output_arguments,
    compliance_overrides,
    flag_names,
    output_overrides,
)

if TYPE_CHECKING:
    from ..pipeline import DatasetDistillationPipeline, RunResult
    from ..sources.base import SampleSource

T = TypeVar("T")

EPILOG = (
    "Exit status: 0 done, 2 bad usage/config/input/output, 3 done with failures (see "
    "failures.jsonl), 4 a run-level quality floor failed, 130/143 interrupted by SIGINT/SIGTERM "
    "(rerun the same command to resume)."
)


@dataclass(frozen=True)
class Mode:
    """A subcommand: its own flags and how to build its source of samples from them."""

    name: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    source: Callable[[argparse.Namespace], SampleSource]
    description: str = ""


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", required=True, help="JSONL file of {id, content, metadata}")


def _slice_source(args: argparse.Namespace) -> SampleSource:
    from ..sources.slices import SliceSource

    return SliceSource(args.input)


MODE = Mode(
    "run",
    _add_run_arguments,
    _slice_source,
    "Turn knowledge slices (JSONL lines of {id, content, metadata}) into SFT data: a "
    "teacher LLM writes instruction/answer pairs from each slice, LLM judges score them, "
    "and the pairs that pass are deduplicated and written as train/val files.",
)
_HELP_WIDTH = 79


def _commands_text() -> str:
    """The subcommand list of the top-level help."""
    lines = [f"  {name:<9} {text}" for name, text in COMMANDS.items()]
    return "commands (sft-distill COMMAND --help for each):\n" + "\n".join(lines)


def build_parser(mode: Mode | str = MODE) -> argparse.ArgumentParser:
    """The parser of one subcommand (a ``Mode``, or its name): the main job's flags plus its own."""
    if isinstance(mode, str):
        mode = importlib.import_module(f"{__package__}.{mode}").MODE
    main_job = mode.name == "run"
    description = textwrap.fill(mode.description, _HELP_WIDTH)
    p = argparse.ArgumentParser(
        prog="sft-distill [run]" if main_job else f"sft-distill {mode.name}",
        description=f"{description}\n\n{_commands_text()}" if main_job else description,
        epilog=textwrap.fill(EPILOG, _HELP_WIDTH),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode.add_arguments(p)
    p.add_argument("--output", "-o", help="output directory (default: config output_dir)")
    p.add_argument("--config", "-c", help="JSON config merged over the defaults")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="run against the built-in simulator on loopback (no API key, no network)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="discard the output directory's cache and outputs and start over",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace another run's outputs in --output (its cached replies are reused)",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="rebuild a damaged cache.sqlite3 from its readable replies, then run",
    )
    p.add_argument("--strict", action="store_true", help="fail on the first bad input line")
    p.add_argument(
        "--batch",
        action="store_true",
        default=None,
        help="send requests through the endpoints' Batch APIs (about half price; replies within "
        "24 h; a rerun resumes the batches in flight); an endpoint's batch setting wins",
    )
    _add_engine_arguments(p)
    add_estimate_arguments(p)
    p.add_argument("--samples-per-slice", type=int, help="override samples_per_slice")
    p.add_argument("--min-score-threshold", type=float, help="override min_score_threshold")
    p.add_argument("--min-votes", type=int, help="override min_votes")
    p.add_argument(
        "--no-early-drop",
        action="store_true",
        help="set early_drop to false: ask every judge about every sample (for calibrate)",
    )
    p.add_argument("--no-dedup", action="store_true", help="set enable_dedup to false")
    add_output_arguments(p)
    add_compliance_arguments(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--verbose", "-v", action="store_true", help="log every step")
    p.add_argument("--version", action="version", version=f"sft-distill {__version__}")
    if main_job:
        # The usage names every subcommand; errors still say "sft-distill: error: ...".
        usage = p.format_usage().removeprefix("usage: ").rstrip()
        p.usage = f"{usage}\n       sft-distill {{{','.join(list(COMMANDS)[1:])}}} ..."
        p.prog = "sft-distill"
    return p


def _add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """``--engine ray`` and its settings (Ray is imported only when it runs)."""
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: shards on Ray workers with global endpoint limits "
        "(pip install 'sft-distill[ray]')",
    )
    p.add_argument("--workers", type=int, help="--engine ray: shards run at once (default 2)")
    p.add_argument(
        "--shards",
        type=int,
        help="--engine ray: shards the input is cut into (default: as recorded, else --workers)",
    )
    p.add_argument(
        "--address",
        help="--engine ray: the cluster to join (auto, ray://HOST:10001); default a local one",
    )


def _check_engine(args: argparse.Namespace) -> None:
    """Refuse Ray flags without ``--engine ray``, and ``--engine ray`` without Ray installed.

    Raises:
        ConfigError: naming the flag, or what to install.
    """
    if args.engine != "ray":
        for flag in ("workers", "shards", "address"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag} needs --engine ray")
        return
    for flag in ("workers", "shards"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag} must be at least 1, got {value}")
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        from ..engine import INSTALL_HINT

        raise ConfigError(INSTALL_HINT)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.output:
        out["output_dir"] = args.output
    if args.samples_per_slice is not None:
        out["samples_per_slice"] = args.samples_per_slice
    if args.min_score_threshold is not None:
        out["min_score_threshold"] = args.min_score_threshold
    if args.min_votes is not None:
        out["min_votes"] = args.min_votes
    if args.no_dedup:
        out["enable_dedup"] = False
    if args.no_early_drop:
        out["early_drop"] = False
    if args.batch:
        out["batch"] = True
    out.update(output_overrides(args))
    out.update(compliance_overrides(args))
    return out


# What the first two funnel counts mean in each mode: (singular, plural) of each.
_FUNNEL_WORDS = {
    "slices": (("slice", "slices"), ("chunk", "chunks")),
    "topics": (("leaf", "leaves"), ("question request", "question requests")),
    "distill": (("record", "records"), ("teacher request", "teacher requests")),
    "augment": (("sample", "samples"), ("rephrase request", "rephrase requests")),
}


def format_summary(result: RunResult) -> str:
    """The short report printed at the end of a run."""
    c = result.counts
    kind = (result.metadata.get("source") or {}).get("kind", "slices")
    units, requests = _FUNNEL_WORDS.get(kind, _FUNNEL_WORDS["slices"])
    # "kept" is what was written: dedup and the caps (max_per_slice, max_per_group) both drop.
    lines = [
        f"sft-distill: {plural(c.slices, *units)} -> {plural(c.chunks, *requests)} -> "
        f"{plural(c.samples_generated, 'sample')} -> {c.passed_thresholds} passed -> "
        f"{c.train + c.val} kept ({c.train} train / {c.val} val)",
        f"  output: {result.output_dir}",
    ]
    usage = result.metadata["usage"]
    mine = {name: u.get("this_invocation") or u for name, u in usage.items()}
    calls = ", ".join(
        f"{n} {plural(u['calls'], 'call')}"
        + (f" ({u['batch_calls']} batched)" if u.get("batch_calls") else "")
        + f" + {u['cached']} cached"
        for n, u in mine.items()
    )
    if c.judgements_skipped:
        calls += (
            f"; {plural(c.judgements_skipped, 'judgement')} not asked (early_drop: the judges "
            "before had voted the sample down)"
        )
    lines.append(f"  {calls}")
    cost = (result.metadata.get("report") or {}).get("cost")
    if cost:
        now = (cost.get("this_invocation") or {}).get("total", 0.0)
        lines.append(f"  cost: {cost['total']:,.4f} for the whole run, {now:,.4f} this invocation")
    if c.dropped:
        lines.append("  dropped: " + ", ".join(f"{k} {v}" for k, v in c.dropped.items()))
    if c.bad_lines:
        lines.append(f"  skipped {plural(c.bad_lines, 'bad input line')}; see metadata.json")
    if result.metadata.get("simulator"):
        lines.append("  (dry run: replies came from the built-in simulator)")
    if result.failures:
        lines.extend(_failure_lines(result))
    stopped = result.metadata.get("stopped")
    if stopped:
        lines.append(
            f"  STOPPED early: endpoint {stopped['endpoint']} failed "
            f"{stopped['consecutive_failures']} calls in a row (the error is logged above and in "
            "failures.jsonl); work not done was not sent - fix the endpoint and rerun the same "
            "command to resume"
        )
    return "\n".join(lines)


def _failure_lines(result: RunResult) -> list[str]:
    """The summary's warnings about failures: a rerun retries some, but not context overflows."""
    path = result.paths["failures.jsonl"]
    overflow = (result.metadata.get("failure_causes") or {}).get("context_overflow", 0)
    others = result.failures - overflow
    lines = []
    if others:
        lines.append(
            f"  WARNING: {plural(others, 'unit')} of work failed after retries; see {path} - "
            "rerun the same command to retry them"
        )
    if overflow:
        lines.append(
            f"  WARNING: {plural(overflow, 'unit')} of work failed because the prompt is longer "
            f"than the endpoint's context (see {path}): lower chunk_chars or that endpoint's "
            "max_tokens, or raise the server's context length; an unchanged rerun will not fix them"
        )
    return lines


class Interrupted(Exception):
    """The run was stopped by a signal; the cache holds every finished call."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


async def run_until_signal(
    pipeline: DatasetDistillationPipeline, source: SampleSource, *, dry_run: bool
) -> RunResult:
    """Run the pipeline; SIGINT or SIGTERM cancels it cleanly (a second signal exits at once).

    Cancellation stops intake and abandons calls in flight; every reply already received is
    committed in the cache and every output line written is flushed, so a rerun resumes.
    """
    return await until_signal(pipeline.run(source=source, dry_run=dry_run))


async def until_signal(job: Awaitable[T]) -> T:
    """Await ``job``; SIGINT or SIGTERM cancels it and raises ``Interrupted`` (a second signal
    exits at once: the response cache is crash-safe)."""
    import asyncio

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        if received:  # impatient second signal: the cache is crash-safe, leave now
            os._exit(EXIT_INTERRUPTED if sig == signal.SIGINT else EXIT_TERMINATED)
        received.append(sig.name)
        print(
            f"\nsft-distill: {sig.name} received, stopping (finished calls are kept)...",
            file=sys.stderr,
            flush=True,
        )
        task.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            pass
    try:
        return await job
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str]) -> int:
    """``sft-distill [run] ...``; returns the exit status."""
    return run_mode(MODE, argv)


def run_mode(mode: Mode, argv: Sequence[str]) -> int:
    """Parse ``argv`` for ``mode``, run it (or ``--estimate`` it); returns the exit status."""
    args = build_parser(mode).parse_args(list(argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Imported only now: ``--help`` and bad flags need none of it (about a second).
    import asyncio

    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..config.merging import format_config_error, load_config
    from ..pipeline import DatasetDistillationPipeline

    overrides = _overrides(args)
    try:
        _check_engine(args)
        config = load_config(args.config, overrides)
        source = mode.source(args)
        if args.estimate:
            from .estimate import print_estimate

            # A dry run would talk to the simulator, whose context says nothing of the real one.
            probe = not (args.no_probe or args.dry_run)
            return print_estimate(source, config, strict=args.strict, probe=probe)
        pipeline = DatasetDistillationPipeline(
            config,
            show_progress=not args.quiet,
            strict=args.strict,
            fresh=args.fresh,
            overwrite=args.overwrite,
            repair=args.repair,
            engine=args.engine,
            workers=args.workers,
            address=args.address,
            shards=args.shards,
        )
        with logging_redirect_tqdm():
            result = asyncio.run(run_until_signal(pipeline, source, dry_run=args.dry_run))
    except ConfigError as exc:
        print(
            f"sft-distill: error: {format_config_error(exc, flag_names(overrides))}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except DistillError as exc:
        print(f"sft-distill: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (Interrupted, KeyboardInterrupt) as exc:
        signame = exc.signame if isinstance(exc, Interrupted) else "SIGINT"
        print(interrupted_message(signame), file=sys.stderr)
        return EXIT_TERMINATED if signame == "SIGTERM" else EXIT_INTERRUPTED
    print(format_summary(result))
    if result.quality_problems:
        for problem in result.quality_problems:
            print(f"sft-distill: quality gate failed: {problem}", file=sys.stderr)
        return EXIT_QUALITY
    return EXIT_PARTIAL if result.failures else EXIT_OK
