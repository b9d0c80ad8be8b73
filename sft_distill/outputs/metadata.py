"""``metadata.json``: what a run records beside its data: source, funnel, usage, timings, settings.

``run_metadata`` is what the run itself knows; ``selection.finalize.record_kept_set`` adds what
follows from the settings and the kept set (counts, formats, dedup, caps, floors, report).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..config.defaults import DIMENSIONS
from ..llm.prompts import EVAL_PROMPT_VERSION, GEN_PROMPT_VERSION
from ..models import ScoredSample
from .failures import FailureLog

METADATA_FILE = "metadata.json"


class ScoreStats:
    """Running means of every evaluator's scores per dimension."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.models: dict[str, str] = {}

    def add(self, sample: ScoredSample) -> None:
        for j in sample.judgements:
            if not j.ok:
                continue
            self.models[j.evaluator] = j.model
            for dim, score in j.scores.items():
                self.sums[j.evaluator][dim] += score
                self.counts[j.evaluator][dim] += 1
            if j.weighted_mean is not None:
                self.sums[j.evaluator]["weighted_mean"] += j.weighted_mean
                self.counts[j.evaluator]["weighted_mean"] += 1

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, sums in self.sums.items():
            counts = self.counts[name]
            dims = [*DIMENSIONS, "weighted_mean"]
            out[name] = {
                "model": self.models.get(name),
                "judged": counts.get("weighted_mean", 0),
                "mean": {d: round(sums[d] / counts[d], 3) for d in dims if counts.get(d)},
            }
        return out


def run_metadata(
    *,
    described: Mapping[str, Any],
    lines: int | None,
    simulator: bool,
    bad_lines: list[str],
    failures: FailureLog,
    scores: ScoreStats,
    usage: dict[str, Any],
    timings: dict[str, float],
    whole_run: dict[str, Any],
    gates: list[str],
) -> dict[str, Any]:
    """What the run itself knows; the keys keep the order ``metadata.json`` has always had.

    The sections set to None are filled in from the kept set by ``record_kept_set``.
    """
    return {
        "package": "sft_distill",
        "version": __version__,
        "simulator": simulator,
        "source": dict(described),
        "input": {
            "path": described.get("input"),
            "lines": lines,
            "blake2b": described.get("input_blake2b"),
        },
        "output_format": None,
        "output_formats": None,
        "prompt_versions": {"generation": GEN_PROMPT_VERSION, "evaluation": EVAL_PROMPT_VERSION},
        "counts": None,
        "bad_lines": bad_lines,
        "failures": failures.count,
        "failure_causes": dict(sorted(failures.causes.items())),
        "scores": scores.summary(),
        # the whole run's calls and tokens; "this_invocation" for this command alone
        "usage": usage,
        "dedup": None,
        "timings_s": timings,  # this invocation
        "whole_run": whole_run,
        "config": None,
        "quality_gates": {"gates": gates},
    }
