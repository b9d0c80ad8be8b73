"""Command line: ``sft-distill [run] --input slices.jsonl [--output DIR] [--config FILE]``.

Exit status: 0 completed; 2 usage, config, input or output error (one line, no traceback);
3 completed but some work failed after retries (see failures.jsonl); 4 completed but a run-level
quality floor (min_keep_rate, min_mean_score, min_exec_pass_rate) failed; 130 interrupted by SIGINT
(Ctrl-C), 143 by SIGTERM. An interrupted run leaves a resumable state: rerun the same command.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from . import __version__
from .cli_tools import (
    add_estimate_arguments,
    add_output_arguments,
    flag_names,
    output_overrides,
    print_estimate,
    refilter_main,
)
from .config.merging import format_config_error, load_config
from .errors import EXIT_INTERRUPTED, ConfigError, DistillError, interrupted_message
from .pipeline import DatasetDistillationPipeline, RunResult
from .sources.base import SampleSource
from .sources.slices import SliceSource
from .text import plural

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_QUALITY = 4
EXIT_TERMINATED = 143


EPILOG = (
    "Exit status: 0 done, 2 bad usage/config/input/output, 3 done with failures (see "
    "failures.jsonl), 4 a run-level quality floor failed, 130/143 interrupted by SIGINT/SIGTERM "
    "(rerun the same command to resume)."
)


@dataclass(frozen=True)
class Mode:
    """A subcommand: its own flags and how to build its source of samples from them."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    source: Callable[[argparse.Namespace], SampleSource]
    description: str = ""


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", required=True, help="JSONL file of {id, content, metadata}")


def _add_topics_arguments(p: argparse.ArgumentParser) -> None:
    from .sources.topics import add_topic_arguments

    add_topic_arguments(p)


def _topics_source(args: argparse.Namespace) -> SampleSource:
    from .sources.topics import topic_source_from_args

    return topic_source_from_args(args)


def _add_distill_arguments(p: argparse.ArgumentParser) -> None:
    from .sources.distill import add_distill_arguments

    p.add_argument("--input", "-i", required=True, help="JSONL, JSON array or Parquet file")
    add_distill_arguments(p)


def _distill_source(args: argparse.Namespace) -> SampleSource:
    from .sources.distill import distill_source_from_args

    return distill_source_from_args(args)


def _add_augment_arguments(p: argparse.ArgumentParser) -> None:
    from .sources.augment import add_augment_arguments

    p.add_argument("--input", "-i", required=True, help="kept samples (e.g. a train.jsonl)")
    add_augment_arguments(p)


def _augment_source(args: argparse.Namespace) -> SampleSource:
    from .sources.augment import augment_source_from_args

    return augment_source_from_args(args)


MODES: dict[str, Mode] = {
    "run": Mode(
        "knowledge slices -> teacher -> judges -> dataset (the default)",
        _add_run_arguments,
        lambda args: SliceSource(args.input),
        "Turn knowledge slices (JSONL lines of {id, content, metadata}) into SFT data: a "
        "teacher LLM writes instruction/answer pairs from each slice, LLM judges score them, "
        "and the pairs that pass are deduplicated and written as train/val files.",
    ),
    "topics": Mode(
        "expand a topic into a tree, ask and answer questions at its leaves",
        _add_topics_arguments,
        _topics_source,
        "Distil without documents: expand a topic into a tree of sub-topics (or read your own "
        "tree with --tree), ask questions at its leaves and answer them; the answers are "
        "judged, filtered and written as in a run.",
    ),
    "distill": Mode(
        "new answers for an existing instruction set (or judge the answers it has)",
        _add_distill_arguments,
        _distill_source,
        "Give an existing instruction set (JSONL, a JSON array or Parquet) new answers from "
        "the teacher, or judge the answers it has with --skip-generation; the samples are "
        "judged, filtered and written as in a run.",
    ),
    "augment": Mode(
        "rephrase kept samples N ways and answer the variants",
        _add_augment_arguments,
        _augment_source,
        "Rephrase kept samples (e.g. a train.jsonl) N ways and answer the variants; "
        "originals and variants are judged, deduplicated and written as in a run.",
    ),
}
REFILTER_HELP = "re-filter a finished run from its recorded scores, without LLM calls"
_HELP_WIDTH = 79
# Every subcommand, as the top-level usage lists them.
COMMANDS = (*MODES, "refilter")


def _commands_text() -> str:
    """The subcommand list of the top-level help."""
    helps = {**{name: m.help for name, m in MODES.items()}, "refilter": REFILTER_HELP}
    lines = [f"  {name:<9} {text}" for name, text in helps.items()]
    return "commands (sft-distill COMMAND --help for each):\n" + "\n".join(lines)


def build_parser(mode: str = "run") -> argparse.ArgumentParser:
    """The parser of one subcommand: the main job's flags plus the mode's own."""
    main_job = mode == "run"
    description = textwrap.fill(MODES[mode].description, _HELP_WIDTH)
    p = argparse.ArgumentParser(
        prog="sft-distill [run]" if main_job else f"sft-distill {mode}",
        description=f"{description}\n\n{_commands_text()}" if main_job else description,
        epilog=textwrap.fill(EPILOG, _HELP_WIDTH),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    MODES[mode].add_arguments(p)
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
    add_estimate_arguments(p)
    p.add_argument("--samples-per-slice", type=int, help="override samples_per_slice")
    p.add_argument("--min-score-threshold", type=float, help="override min_score_threshold")
    p.add_argument("--min-votes", type=int, help="override min_votes")
    p.add_argument("--no-dedup", action="store_true", help="set enable_dedup to false")
    add_output_arguments(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--verbose", "-v", action="store_true", help="log every step")
    p.add_argument("--version", action="version", version=f"sft-distill {__version__}")
    if main_job:
        # The usage names every subcommand; errors still say "sft-distill: error: ...".
        usage = p.format_usage().removeprefix("usage: ").rstrip()
        p.usage = f"{usage}\n       sft-distill {{{','.join(COMMANDS[1:])}}} ..."
        p.prog = "sft-distill"
    return p


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
    out.update(output_overrides(args))
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
        f"{n} {plural(u['calls'], 'call')} + {u['cached']} cached" for n, u in mine.items()
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
        return await pipeline.run(source=source, dry_run=dry_run)
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sft-distill`` and ``scripts/run_pipeline.py``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "refilter":
        return refilter_main(argv[1:])
    mode = "run"
    if argv and argv[0] in MODES:
        mode = argv.pop(0)
    args = build_parser(mode).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    overrides = _overrides(args)
    try:
        config = load_config(args.config, overrides)
        source = MODES[mode].source(args)
        if args.estimate:
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


if __name__ == "__main__":
    sys.exit(main())
