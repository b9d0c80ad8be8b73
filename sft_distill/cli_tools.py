"""Command-line pieces for output formats, ``--estimate`` and the ``refilter`` subcommand.

``cli.py`` wires them in: ``add_output_arguments(parser)`` and ``output_overrides(args)`` for the
run flags, ``print_estimate(...)`` for ``--estimate``, ``refilter_main(argv)`` for
``sft-distill refilter``. Exit status as for a run: 0 done, 2 usage/config/input/output error,
4 a run-level quality floor failed under the new settings.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config.merging import deep_merge, format_config_error, read_config_file
from .config.models import DistillConfig
from .errors import ConfigError, DistillError
from .models import PathLike
from .outputs.formats import FORMATS
from .planning.estimate import format_estimate

if TYPE_CHECKING:
    from .sources.base import SampleSource

__all__ = [
    "EXIT_OK",
    "EXIT_QUALITY",
    "EXIT_USAGE",
    "add_estimate_arguments",
    "add_output_arguments",
    "build_refilter_parser",
    "flag_names",
    "output_overrides",
    "print_estimate",
    "refilter_main",
]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_QUALITY = 4  # as for a run: a run-level quality floor failed under the new settings


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``run`` and ``refilter``: formats, reasoning, split and caps."""
    g = p.add_argument_group("output")
    g.add_argument(
        "--format",
        dest="output_formats",
        metavar="LIST",
        help=f"comma list of {', '.join(FORMATS)} (default sharegpt; the first one is "
        "train.jsonl/val.jsonl, others train.<format>.jsonl)",
    )
    g.add_argument(
        "--include-reasoning",
        action="store_true",
        default=None,
        help="write the teacher's reasoning: <think> block (sharegpt, alpaca), "
        "reasoning_content (openai)",
    )
    g.add_argument(
        "--split-by",
        choices=("sample", "slice"),
        help="slice: no slice has samples in both train and val",
    )
    g.add_argument("--max-per-slice", type=int, metavar="N", help="keep the N best per slice")
    g.add_argument("--balance-by", metavar="FIELD", help="slice metadata field to cap groups by")
    g.add_argument(
        "--max-per-group", type=int, metavar="N", help="keep the N best per --balance-by value"
    )
    g.add_argument("--dataset-name", metavar="NAME", help="prefix of dataset_info.json entries")


# Config keys whose flag is not simply "--" + the key with dashes.
_FLAG_OF_KEY = {
    "output_dir": "--output",
    "output_formats": "--format",
    "enable_dedup": "--dedup/--no-dedup",
}


def flag_names(overrides: Mapping[str, Any]) -> dict[str, str]:
    """The flag that set each key of ``overrides`` (for errors that name the flag, not the key)."""
    return {k: _FLAG_OF_KEY.get(k, "--" + k.replace("_", "-")) for k in overrides}


def output_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides from the output flags that were given."""
    keys = (
        "output_formats",
        "include_reasoning",
        "split_by",
        "max_per_slice",
        "balance_by",
        "max_per_group",
        "dataset_name",
    )
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


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
    from .llm.server_context import context_limits
    from .planning.modes import estimate_source
    from .sources.slices import SliceSource

    if isinstance(source, str | Path):
        source = SliceSource(source)
    contexts = context_limits(config, probe=probe)
    print(format_estimate(estimate_source(source, config, strict=strict, contexts=contexts)))
    return EXIT_OK


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
    return flags


def refilter_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Overrides for ``refilter`` from ``--config`` then the flags (flags win)."""
    out: dict[str, Any] = read_config_file(args.config) if args.config else {}
    return deep_merge(out, refilter_flag_overrides(args))


def refilter_main(argv: Sequence[str]) -> int:
    """Entry point of ``sft-distill refilter``; returns the exit status."""
    from .selection.refilter import format_refilter, refilter

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
