"""``sft-distill augment``: kept samples in, N rephrasings of each answered and judged."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..sources.augment import DEFAULT_NUM_AUG, MAX_NUM_AUG, AugmentSource
from .distill import add_column_arguments, field_map_from_args
from .run import Mode, run_mode


def _num_aug(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= n <= MAX_NUM_AUG:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_NUM_AUG}, got {n}")
    return n


def add_augment_arguments(parser: argparse.ArgumentParser) -> None:
    """The augment mode's own flags (``--input`` is the main job's)."""
    parser.add_argument(
        "--num-aug",
        type=_num_aug,
        default=DEFAULT_NUM_AUG,
        metavar="N",
        help=f"rephrasings per sample, 1..{MAX_NUM_AUG} (default {DEFAULT_NUM_AUG})",
    )
    add_column_arguments(parser)


def augment_source_from_args(args: argparse.Namespace) -> AugmentSource:
    """The augment source the parsed command line asks for."""
    return AugmentSource(
        args.input,
        num_aug=getattr(args, "num_aug", DEFAULT_NUM_AUG),
        columns=field_map_from_args(args),
    )


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", required=True, help="kept samples (e.g. a train.jsonl)")
    add_augment_arguments(p)


MODE = Mode(
    "augment",
    _add_arguments,
    augment_source_from_args,
    "Rephrase kept samples (e.g. a train.jsonl) N ways and answer the variants; "
    "originals and variants are judged, deduplicated and written as in a run.",
)


def main(argv: Sequence[str]) -> int:
    """``sft-distill augment ...``; returns the exit status."""
    return run_mode(MODE, argv)
