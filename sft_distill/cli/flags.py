"""Flags ``run`` (and every mode) and ``refilter`` share: formats, reasoning, split and caps."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ..outputs.formats import FORMATS

__all__ = ["add_output_arguments", "flag_names", "output_overrides"]


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
