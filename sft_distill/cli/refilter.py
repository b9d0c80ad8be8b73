"""``sft-distill refilter --output DIR [settings]``: re-decide a finished run, no LLM call.

Exit status as for a run: 0 done, 2 usage/config/input/output error, 4 a run-level quality floor
failed under the new settings.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..config.merging import deep_merge, format_config_error, read_config_file
from ..errors import ConfigError, DistillError
from ..text import plural
from . import EXIT_OK, EXIT_QUALITY, EXIT_USAGE
from .flags import (
    add_compliance_arguments,
    add_output_arguments,
    compliance_overrides,
    flag_names,
    output_overrides,
)

if TYPE_CHECKING:
    from ..selection.refilter import RefilterResult


def build_refilter_parser() -> argparse.ArgumentParser:
    """``sft-distill refilter --output DIR [settings]``."""
    p = argparse.ArgumentParser(
        prog="sft-distill refilter",
        description="Re-apply thresholds, votes, weights, dedup, caps and split to a finished "
        "run from its recorded scores, and rewrite the splits and the report. No LLM call.",
    )
    p.add_argument("--output", "-o", required=True, help="the run's output directory")
    p.add_argument(
        "--config",
        "-c",
        help='JSON object of settings to change, e.g. {"dimension_weights": {...}, '
        '"prices": {...}}',
    )
    p.add_argument("--min-score-threshold", type=float, help="new min_score_threshold")
    p.add_argument("--min-votes", type=int, help="new min_votes")
    p.add_argument("--train-val-split", type=float, help="new train_val_split")
    p.add_argument("--seed", type=int, help="new split seed")
    dedup = p.add_mutually_exclusive_group()
    dedup.add_argument("--no-dedup", action="store_true", help="set enable_dedup to false")
    dedup.add_argument("--dedup", action="store_true", help="set enable_dedup to true")
    p.add_argument("--dedup-threshold", type=float, help="new dedup_threshold")
    add_output_arguments(p)
    add_compliance_arguments(p, run=False)
    p.add_argument("--quiet", "-q", action="store_true", help="warnings only (the default)")
    p.add_argument("--verbose", "-v", action="store_true", help="log every step")
    return p


def refilter_flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``refilter``'s own flags change."""
    flags: dict[str, Any] = {}
    for key in ("min_score_threshold", "min_votes", "train_val_split", "seed", "dedup_threshold"):
        if getattr(args, key) is not None:
            flags[key] = getattr(args, key)
    if args.no_dedup:
        flags["enable_dedup"] = False
    elif args.dedup:
        flags["enable_dedup"] = True
    flags.update(output_overrides(args))
    flags.update(compliance_overrides(args))
    return flags


def refilter_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Overrides for ``refilter`` from ``--config`` then the flags (flags win)."""
    out: dict[str, Any] = read_config_file(args.config) if args.config else {}
    return deep_merge(out, refilter_flag_overrides(args))


def main(argv: Sequence[str]) -> int:
    """Entry point of ``sft-distill refilter``; returns the exit status."""
    from ..selection.refilter import refilter

    args = build_refilter_parser().parse_args(list(argv))
    # Quiet by default, as a run: the summary says what changed; -v logs each step.
    logging.basicConfig(
        level=logging.INFO if args.verbose and not args.quiet else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        result = refilter(args.output, overrides=refilter_overrides(args))
    except ConfigError as exc:
        message = format_config_error(exc, flag_names(refilter_flag_overrides(args)))
        print(f"sft-distill refilter: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except DistillError as exc:
        print(f"sft-distill refilter: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(format_refilter(result))
    for problem in result.quality_problems:
        print(f"sft-distill refilter: quality gate failed: {problem}", file=sys.stderr)
    return EXIT_QUALITY if result.quality_problems else EXIT_OK


def format_refilter(result: RefilterResult) -> str:
    """The short summary ``sft-distill refilter`` prints."""
    from ..selection.thresholds import DROP_NOT_JUDGED

    before, after = result.previous_counts, result.counts

    def change(key: str) -> str:
        return f"{before.get(key, '?')} -> {after.get(key)}"

    def kept(counts: Mapping[str, Any]) -> Any:
        # What was written: dedup and the caps both removed samples before the split.
        if not isinstance(counts.get("train"), int) or not isinstance(counts.get("val"), int):
            return "?"
        return counts["train"] + counts["val"]

    lines = [
        f"sft-distill refilter: passed {change('passed_thresholds')}, "
        f"kept {kept(before)} -> {kept(after)} ({after['train']} train / {after['val']} val); "
        "no LLM call",
        f"  output: {result.output_dir} ({', '.join(result.outputs.files)})",
        f"  report: {result.output_dir / 'report.html'}",
    ]
    if after.get("dropped"):
        lines.append("  dropped: " + ", ".join(f"{k} {v}" for k, v in after["dropped"].items()))
    unknown = (after.get("dropped") or {}).get(DROP_NOT_JUDGED, 0)
    if unknown:
        lines.append(
            f"  {plural(unknown, 'sample')} {'is' if unknown == 1 else 'are'} {DROP_NOT_JUDGED}: "
            "judges the run did not ask (early_drop) could carry "
            f"{'it' if unknown == 1 else 'them'} under these settings; `sft-distill run` with "
            "these settings, the same --input and this --output asks only those judges"
        )
    return "\n".join(lines)


refilter_main = main  # the old name (sft_distill.cli_tools.refilter_main)
