"""Score thresholds and voting over evaluator judgements, then near-duplicate removal.

The pipeline streams: ``apply_thresholds`` per sample, ``dedup.make_deduplicator`` at the end
(both in ``selection``). ``DataFilter`` wraps both for in-memory lists (notebooks, tests).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..config.defaults import DIMENSIONS
from ..config.models import DistillConfig
from ..models import Judgement, ScoredSample
from ..stages.gates.base import GATE_PREFIX
from .dedup import make_deduplicator

log = logging.getLogger(__name__)

__all__ = [
    "DROP_CONTAMINATED",
    "DROP_DUPLICATE",
    "DROP_LOW_VOTES",
    "DROP_NO_EVALUATION",
    "SCORE_DECIMALS",
    "DataFilter",
    "FilterResult",
    "apply_thresholds",
    "weighted_mean",
]

DROP_LOW_VOTES = "low_votes"
DROP_NO_EVALUATION = "no_evaluation"
DROP_DUPLICATE = "duplicate"
# Repeats an eval item (selection.decontaminate): dropped before any judge, like a gate's drop.
DROP_CONTAMINATED = "contaminated"

# A mean like (6.9 + 7.1) / 2 lands a hair under 7.0 in floating point; it must still vote.
_SCORE_SLACK = 1e-9
# Means are rounded when computed, so the score written (8.6, not 8.600000000000001) is the
# very number the threshold was compared with: a written 7.0 always passed a 7.0 threshold.
SCORE_DECIMALS = 2


def weighted_mean(
    scores: Mapping[str, float], weights: Mapping[str, float] | None = None
) -> float | None:
    """Weighted mean over the known dimensions present in ``scores`` (None if none is present).

    Missing or non-finite dimensions are skipped, not counted as 0; weights default to equal and a
    dimension absent from ``weights`` weighs 0. None also when the present weights sum to 0.
    Rounded to ``SCORE_DECIMALS``.
    """
    total = 0.0
    weight_sum = 0.0
    for dim in DIMENSIONS:
        value = scores.get(dim)
        if value is None or not math.isfinite(value):
            continue
        w = 1.0 if weights is None else float(weights.get(dim, 0.0))
        total += w * value
        weight_sum += w
    if weight_sum <= 0:
        return None
    return round(total / weight_sum, SCORE_DECIMALS)


def _rescored(j: Judgement, weights: Mapping[str, float] | None) -> Judgement:
    """The judgement with its weighted mean recomputed from its scores under ``weights``."""
    if j.error is not None:
        return j
    # A judgement with no known dimension (e.g. only an overall score) keeps its own mean.
    if not any(dim in j.scores for dim in DIMENSIONS):
        return j
    wm = weighted_mean(j.scores, weights)
    return j if wm == j.weighted_mean else j.model_copy(update={"weighted_mean": wm})


def apply_thresholds(
    sample: ScoredSample,
    *,
    min_score_threshold: float,
    min_votes: int,
    weights: Mapping[str, float] | None = None,
) -> ScoredSample:
    """Return a copy of ``sample`` with votes, avg_score, passed and drop_reason decided.

    Each ok judgement whose weighted mean reaches ``min_score_threshold`` is one vote; a failed
    evaluator casts no vote and is left out of ``avg_score``. ``passed`` is ``votes >= min_votes``;
    otherwise ``drop_reason`` is "no_evaluation" (no judgement ok) or "low_votes" (the counts are
    in ``votes`` and ``avg_score``). ``duplicate_of`` is cleared: dedup decides it afterwards. A
    sample dropped by a gate or as contaminated was never judged and stays dropped.
    """
    reason = sample.drop_reason
    if reason is not None and (reason.startswith(GATE_PREFIX) or reason == DROP_CONTAMINATED):
        return sample
    judgements = [_rescored(j, weights) for j in sample.judgements]
    means = [j.weighted_mean for j in judgements if j.ok and j.weighted_mean is not None]
    votes = sum(1 for m in means if m >= min_score_threshold - _SCORE_SLACK)
    passed = votes >= min_votes
    reason = None
    if not passed:
        reason = DROP_NO_EVALUATION if not means else DROP_LOW_VOTES
    return sample.model_copy(
        update={
            "judgements": judgements,
            "votes": votes,
            "avg_score": round(sum(means) / len(means), SCORE_DECIMALS) if means else None,
            "passed": passed,
            "drop_reason": reason,
            "duplicate_of": None,
        }
    )


@dataclass
class FilterResult:
    """What ``DataFilter.filter`` kept and dropped, each list in input order."""

    kept: list[ScoredSample] = field(default_factory=list)
    dropped: list[ScoredSample] = field(default_factory=list)

    def drop_counts(self) -> dict[str, int]:
        """Dropped samples per ``drop_reason``, sorted by reason."""
        return dict(sorted(Counter(s.drop_reason or "unknown" for s in self.dropped).items()))


class DataFilter:
    """Thresholds, votes and dedup from one ``DistillConfig``, for in-memory sample lists."""

    def __init__(self, config: DistillConfig) -> None:
        self.config = config

    def apply(self, sample: ScoredSample) -> ScoredSample:
        """``apply_thresholds`` with the config's threshold, votes and weights."""
        return apply_thresholds(
            sample,
            min_score_threshold=self.config.min_score_threshold,
            min_votes=self.config.min_votes,
            weights=self.config.dimension_weights,
        )

    def check(self, sample: ScoredSample) -> tuple[bool, str | None]:
        """(keep, reason) for the thresholds alone; dedup needs the whole set, see ``filter``."""
        decided = self.apply(sample)
        return decided.passed, decided.drop_reason

    async def filter(self, samples: Iterable[ScoredSample]) -> FilterResult:
        """Apply thresholds, then drop near-duplicates (if ``enable_dedup``) among the passing.

        A duplicate gets ``passed=False``, ``drop_reason="duplicate"`` and ``duplicate_of`` = the
        id of the kept sample it repeats.
        """
        decided = [self.apply(s) for s in samples]
        duplicates: dict[str, str] = {}
        if self.config.enable_dedup:
            dedup = make_deduplicator(self.config)
            for s in decided:
                if s.passed:
                    score = s.avg_score if s.avg_score is not None else -math.inf
                    dedup.add(s.id, s.text_for_dedup, score)
            duplicates = await dedup.aresolve()
        result = FilterResult()
        for s in decided:
            if not s.passed:
                result.dropped.append(s)
            elif s.id in duplicates:
                result.dropped.append(
                    s.model_copy(
                        update={
                            "passed": False,
                            "drop_reason": DROP_DUPLICATE,
                            "duplicate_of": duplicates[s.id],
                        }
                    )
                )
            else:
                result.kept.append(s)
        log.info(
            "filter: %d kept, %d dropped %s",
            len(result.kept),
            len(result.dropped),
            result.drop_counts(),
        )
        return result
