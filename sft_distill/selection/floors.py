"""Run-level quality floors: the run fails (exit status 4) when its data is not good enough."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config.models import DistillConfig
from ..models import StageCounts


def check_run_gates(
    config: DistillConfig,
    counts: StageCounts,
    *,
    mean_score: float | None,
    exec_pass_rate: float | None,
) -> list[str]:
    """Each floor the run fell under, as a sentence; [] when all hold (or none is set)."""
    problems: list[str] = []
    generated = counts.samples_generated
    keep_rate = counts.after_dedup / generated if generated else 0.0
    if config.min_keep_rate is not None and keep_rate < config.min_keep_rate:
        problems.append(
            f"keep rate {keep_rate:.1%} ({counts.after_dedup} of {generated}) is under "
            f"min_keep_rate {config.min_keep_rate:.1%}"
        )
    if config.min_mean_score is not None and (
        mean_score is None or mean_score < config.min_mean_score
    ):
        shown = "n/a" if mean_score is None else f"{mean_score:.2f}"
        problems.append(f"mean score {shown} is under min_mean_score {config.min_mean_score:g}")
    if config.min_exec_pass_rate is not None and (
        exec_pass_rate is None or exec_pass_rate < config.min_exec_pass_rate
    ):
        shown = "n/a (no SQL was executed)" if exec_pass_rate is None else f"{exec_pass_rate:.1%}"
        problems.append(
            f"execution pass rate {shown} is under min_exec_pass_rate "
            f"{config.min_exec_pass_rate:.1%}"
        )
    return problems


def license_problems(config: DistillConfig, licenses: Mapping[str, Any]) -> list[str]:
    """With ``require_license``: kept samples from non-commercial or unlicensed sources."""
    if not config.require_license:
        return []
    parts = []
    for flag, words in (
        ("non_commercial", "under a non-commercial licence"),
        ("unlicensed", "with no licence"),
    ):
        found = licenses.get(flag) or {}
        if not found.get("samples"):
            continue
        named = found.get("sources") or []
        shown = ", ".join(repr(s) for s in named[:3]) + (", ..." if len(named) > 3 else "")
        unnamed = found.get("without_source", 0)
        where = [f"sources {shown}"] if named else []
        where += [f"{unnamed} with no metadata.source"] if unnamed else []
        parts.append(f"{found['samples']} {words} ({'; '.join(where)})")
    if not parts:
        return []
    return [f"kept samples: {', '.join(parts)}; require_license accepts neither"]
