"""``sft-distill calibrate --output DIR --labels FILE``: the judges against a person's labels.

Exit status: 0 done; 2 usage, config, input or output error (one line naming the file, line or
flag). No LLM call.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import DistillError
from . import EXIT_OK, EXIT_USAGE


def build_calibrate_parser() -> argparse.ArgumentParser:
    """``sft-distill calibrate --output DIR --labels FILE``."""
    p = argparse.ArgumentParser(
        prog="sft-distill calibrate",
        description="Compare a finished run's judges with a person's pass/fail labels: Cohen's "
        "kappa and precision/recall of each judge and of the panel, and the threshold and "
        "accuracy floor that best match the labels. Recorded in metadata.json (calibration) "
        "and report.html. No LLM call.",
    )
    p.add_argument("--output", "-o", required=True, help="the run's output directory")
    p.add_argument(
        "--labels",
        "-l",
        required=True,
        help='JSONL, one {"id": SAMPLE_ID, "label": "pass"|"fail", "defect": TAG?} per line',
    )
    p.add_argument(
        "--no-write",
        action="store_true",
        help="print only; leave metadata.json and report.html as they are",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="log every step")
    return p


def main(argv: Sequence[str]) -> int:
    """Entry point of ``sft-distill calibrate``; returns the exit status."""
    from ..selection.calibration import format_calibration
    from ..selection.calibration_run import calibrate_run

    args = build_calibrate_parser().parse_args(list(argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        result = calibrate_run(args.output, args.labels, write=not args.no_write)
    except DistillError as exc:
        print(f"sft-distill calibrate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if result.unknown_ids:
        first = result.report.get("unknown_ids") or ["?"]
        print(
            f"sft-distill calibrate: warning: {result.unknown_ids} labelled id(s) are not in "
            f"this run's samples (first: {first[0]!r}); they are left out",
            file=sys.stderr,
        )
    print(format_calibration(result.report), end="")
    best = result.report["best"]
    floor = "none" if best["floor"] is None else f"{best['floor']:g}"
    print(
        f"\nbest match: min_score_threshold {best['threshold']:g}, "
        f"{result.report['floor_dimension']} floor {floor}, min_votes {best['min_votes']}; "
        "apply it with sft-distill refilter"
    )
    if result.written:
        print(f"recorded in {result.output_dir / 'metadata.json'} and report.html")
    return EXIT_OK
