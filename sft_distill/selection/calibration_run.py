"""``sft-distill calibrate``: a finished run's judges against a person's labels, recorded in it.

Reads ``metadata.json`` (the run's threshold, votes, weights and ``score_floors``),
``generated_raw.jsonl`` (only the labelled samples) and the labels file, computes
``calibration.calibration_report`` and records it: ``metadata.json`` gets ``calibration`` (the
whole report), ``report.html`` a "Calibration" section. No LLM call; nothing else changes (apply
the best setting with ``sft-distill refilter``). The search moves the accuracy floor; the other
floors of ``score_floors`` stay as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..models import PathLike
from ..outputs.metadata import METADATA_FILE
from ..outputs.report import (
    RAW_FILE,
    REPORT_FILE,
    calibration_view,
    compute_report,
    rewrite_report_page,
)
from ..outputs.writers import lock_output_dir, write_json_atomic
from ..sources.jsonl import iter_scored
from .calibration import DEFAULT_FLOOR_DIMENSION, calibration_report, read_labels
from .refilter import _read_metadata, load_run_config

log = logging.getLogger(__name__)

__all__ = ["CalibrationResult", "calibrate_run"]


@dataclass
class CalibrationResult:
    """The calibration report and where it was recorded."""

    output_dir: Path
    report: dict[str, Any]
    unknown_ids: int
    written: bool


def calibrate_run(
    out_dir: PathLike, labels_path: PathLike, *, write: bool = True
) -> CalibrationResult:
    """Calibrate a finished run's judges against ``labels_path``; record it unless ``write`` is
    False.

    Raises:
        InputError: the run or the labels cannot be read, or no label matches a judged sample.
        ConfigError: the run's recorded config is invalid.
        OutputError: another process holds the directory, or a file cannot be written.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(f"{out}: not found; calibrate needs a finished run's output directory")
    with lock_output_dir(out):
        metadata = _read_metadata(out)
        config = load_run_config(metadata)
        raw = out / RAW_FILE
        if not raw.is_file():
            raise InputError(f"{raw}: not found; nothing to calibrate")
        labels = read_labels(labels_path)
        samples = [s for _, s in iter_scored(raw, ids=labels.keys(), unique=True)]
        floors = dict(config.score_floors or {})
        report = calibration_report(
            samples,
            labels,
            threshold=config.min_score_threshold,
            min_votes=config.min_votes,
            weights=config.dimension_weights,
            floor_dimension=DEFAULT_FLOOR_DIMENSION,
            floor=floors.get(DEFAULT_FLOOR_DIMENSION),
            other_floors=floors,
        )
        report["labels_file"] = str(labels_path)
        report["at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        unknown = int(report["counts"]["unknown_ids"])
        if write:
            _record(out, metadata, report)
    return CalibrationResult(out, report, unknown, write)


def _record(out: Path, metadata: dict[str, Any], report: dict[str, Any]) -> None:
    """``metadata.json`` gets the report, ``report.html`` its Calibration section."""
    metadata["calibration"] = report
    page = metadata.get("report")
    if not isinstance(page, dict):
        page = compute_report(out / RAW_FILE, metadata)
    page["calibration"] = calibration_view(report)
    metadata["report"] = page
    rewrite_report_page(out, page)
    write_json_atomic(out / METADATA_FILE, metadata)
    log.info("calibration recorded in %s and %s", METADATA_FILE, REPORT_FILE)
