"""``sft-distill distill``: an existing instruction set in, new (or judged) answers out."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..sources.distill import DistillSource
from ..sources.fields import (
    EVIDENCE_ALIASES,
    INPUT_ALIASES,
    INSTRUCTION_ALIASES,
    OUTPUT_ALIASES,
    REASONING_ALIASES,
    SOURCE_TEXT_ALIASES,
    FieldMap,
)
from .run import Mode, run_mode


def add_column_arguments(parser: argparse.ArgumentParser) -> None:
    """``--instruction-col``, ``--input-col``, ``--output-col``, ``--reasoning-col``."""
    aliases = "; ".join(
        f"{role}: {', '.join(names)}"
        for role, names in (
            ("instruction", INSTRUCTION_ALIASES),
            ("input", INPUT_ALIASES),
            ("output", OUTPUT_ALIASES),
            ("reasoning", REASONING_ALIASES),
        )
    )
    g = parser.add_argument_group(
        "columns",
        f"found automatically ({aliases}); ShareGPT and OpenAI-messages records are read too",
    )
    g.add_argument("--instruction-col", metavar="COL", help="column holding the instruction")
    g.add_argument(
        "--input-col", metavar="COL", help="column holding the input ('none': no input column)"
    )
    g.add_argument(
        "--output-col", metavar="COL", help="column holding the existing answer ('none': none)"
    )
    g.add_argument(
        "--reasoning-col", metavar="COL", help="column holding the reasoning ('none': none)"
    )


def add_distill_arguments(parser: argparse.ArgumentParser) -> None:
    """The distill mode's own flags (``--input`` is the main job's)."""
    parser.add_argument(
        "--skip-generation",
        action="store_true",
        help="judge and filter the existing answers instead of asking the teacher for new ones",
    )
    add_column_arguments(parser)
    g = parser.add_argument_group(
        "source document",
        f"each pair's document, read by the checks and shown to the judges, never written to the "
        f"outputs (found automatically: {', '.join(SOURCE_TEXT_ALIASES)}; context and source "
        f"only when another column is the input), and its evidence quotes "
        f"({', '.join(EVIDENCE_ALIASES)})",
    )
    g.add_argument(
        "--source-col", metavar="COL", help="column holding the source text ('none': none)"
    )
    g.add_argument(
        "--evidence-col", metavar="COL", help="column holding the evidence quotes ('none': none)"
    )


def field_map_from_args(args: argparse.Namespace) -> FieldMap | None:
    """The column overrides given on the command line, or None."""
    over = FieldMap(
        instruction=getattr(args, "instruction_col", None),
        input=getattr(args, "input_col", None),
        output=getattr(args, "output_col", None),
        reasoning=getattr(args, "reasoning_col", None),
        source_text=getattr(args, "source_col", None),
        evidence=getattr(args, "evidence_col", None),
    )
    return over if over.overrides_anything or over.overrides_extra else None


def distill_source_from_args(args: argparse.Namespace) -> DistillSource:
    """The distill source the parsed command line asks for."""
    return DistillSource(
        args.input,
        columns=field_map_from_args(args),
        skip_generation=bool(getattr(args, "skip_generation", False)),
    )


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", required=True, help="JSONL, JSON array or Parquet file")
    add_distill_arguments(p)


MODE = Mode(
    "distill",
    _add_arguments,
    distill_source_from_args,
    "Give an existing instruction set (JSONL, a JSON array or Parquet) new answers from "
    "the teacher, or judge the answers it has with --skip-generation; the samples are "
    "judged, filtered and written as in a run.",
)


def main(argv: Sequence[str]) -> int:
    """``sft-distill distill ...``; returns the exit status."""
    return run_mode(MODE, argv)
