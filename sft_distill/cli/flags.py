"""Flags ``run`` (and every mode) and ``refilter`` share: formats, reasoning, split and caps."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ..outputs.formats import FORMATS

__all__ = [
    "add_compliance_arguments",
    "add_output_arguments",
    "compliance_overrides",
    "flag_names",
    "output_overrides",
]


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
    "early_drop": "--no-early-drop",
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


def add_compliance_arguments(p: argparse.ArgumentParser, *, run: bool = True) -> None:
    """Personal data (a run only), eval sets and licences; ``refilter`` takes the last two."""
    g = p.add_argument_group("compliance")
    if run:
        g.add_argument(
            "--pii",
            choices=("redact", "drop", "tag", "off"),
            help="personal data in samples: replace it (default), drop the sample, only "
            "record it, or do not look",
        )
        g.add_argument(
            "--pii-scrub-slices",
            action="store_true",
            default=None,
            help="replace personal data in slices before the teacher sees them",
        )
    g.add_argument(
        "--decontaminate",
        action="append",
        metavar="EVAL_FILE",
        help="drop samples that repeat a question of this eval set (JSONL, JSON, Parquet); "
        "repeat for several",
    )
    g.add_argument(
        "--require-license",
        action="store_true",
        default=None,
        help="exit 4 when a kept sample's slice has no metadata.license or a non-commercial one",
    )


def compliance_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides from the compliance flags that were given."""
    keys = ("pii", "pii_scrub_slices", "decontaminate", "require_license")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
