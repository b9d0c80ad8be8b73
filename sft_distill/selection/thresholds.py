"""Score thresholds, floors and voting over evaluator judgements, then near-duplicate removal.

The pipeline streams: ``apply_thresholds`` per sample, ``dedup.make_deduplicator`` at the end
(both in ``selection``). ``DataFilter`` wraps both for in-memory lists (notebooks, tests).
``decide`` is the one vote: the pipeline, ``refilter``, the report and ``calibration`` all call it.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..config.defaults import DIMENSIONS, LATER_DIMENSIONS, MEAN_DIMENSIONS
from ..config.models import DistillConfig
from ..models import Judgement, ScoredSample
from ..stages.gates.base import GATE_PREFIX
from .dedup import make_deduplicator

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FLOOR_DIMENSION",
    "DROP_BELOW_FLOOR",
    "DROP_CONTAMINATED",
    "DROP_DUPLICATE",
    "DROP_DUPLICATE_QUESTION",
    "DROP_JUDGE_FAILED",
    "DROP_LOW_VOTES",
    "DROP_NOT_JUDGED",
    "DROP_NO_EVALUATION",
    "SCORE_DECIMALS",
    "DataFilter",
    "Decision",
    "FilterResult",
    "apply_thresholds",
    "decide",
    "floor_score",
    "judge_mean",
    "meets_floors",
    "weighted_mean",
]

DROP_LOW_VOTES = "low_votes"
# Judges scored the sample high enough, but too few of them gave a floored dimension its floor.
DROP_BELOW_FLOOR = "below_floor"
# Every judge asked failed (after retries): no verdict on the sample at all; a rerun asks again.
DROP_JUDGE_FAILED = "judge_failed"
# No usable score and no failure: no judge at all, or only scores the weights ignore.
DROP_NO_EVALUATION = "no_evaluation"
DROP_DUPLICATE = "duplicate"
# A question repeating an earlier one of its slice, dropped as it was generated (never judged).
DROP_DUPLICATE_QUESTION = "duplicate_question"
# Judges not asked (early_drop) could carry it under these settings: only asking them decides.
DROP_NOT_JUDGED = "not_judged"

DEFAULT_FLOOR_DIMENSION = "accuracy"

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

    Missing or non-finite dimensions are skipped, not counted as 0; without ``weights`` the five
    ``MEAN_DIMENSIONS`` weigh 1 and ``standalone`` 0, and a dimension absent from ``weights``
    weighs 0. None also when the present weights sum to 0. Rounded to ``SCORE_DECIMALS``.
    """
    total = 0.0
    weight_sum = 0.0
    for dim in DIMENSIONS:
        value = scores.get(dim)
        if value is None or not math.isfinite(value):
            continue
        if weights is None:
            w = 1.0 if dim in MEAN_DIMENSIONS else 0.0
        else:
            w = float(weights.get(dim, 0.0))
        total += w * value
        weight_sum += w
    if weight_sum <= 0:
        return None
    return round(total / weight_sum, SCORE_DECIMALS)


def judge_mean(j: Judgement, weights: Mapping[str, float] | None = None) -> float | None:
    """The judgement's weighted mean under ``weights`` (None: failed, or nothing weighed)."""
    if j.error is not None:
        return None
    # A judgement with no known dimension (e.g. only an overall score) keeps its own mean.
    if not any(dim in j.scores for dim in DIMENSIONS):
        return j.weighted_mean
    return weighted_mean(j.scores, weights)


def floor_score(j: Judgement, dim: str) -> float:
    """The score a floor on ``dim`` compares: NaN when missing (never meets a floor).

    A failed judge, or one that did not score ``dim``, cannot vouch for it; except a dimension
    added after the judgement's prompt (``LATER_DIMENSIONS``: a judgement that has scores but none
    for it was never asked), which meets any floor (+inf).
    """
    if j.error is not None:
        return math.nan
    value = j.scores.get(dim)
    if value is None:
        later = dim in LATER_DIMENSIONS and any(d in j.scores for d in DIMENSIONS)
        return math.inf if later else math.nan
    return float(value) if math.isfinite(value) else math.nan


def meets_floors(j: Judgement, floors: Mapping[str, float] | None) -> bool:
    """Whether the judgement gives every floored dimension at least its floor."""
    return all(floor_score(j, d) >= f - _SCORE_SLACK for d, f in (floors or {}).items())


@dataclass(frozen=True)
class Decision:
    """The panel's decision on one sample under one setting, and why."""

    passed: bool
    votes: int
    means: tuple[float | None, ...]  # per judgement, None when the judge failed
    voted: tuple[bool, ...]
    floor_blocked: int  # judges whose mean reached the threshold but a floor score did not
    avg_score: float | None
    # None when passed; else below_floor, low_votes, judge_failed, no_evaluation or not_judged
    drop_reason: str | None = None


def _drop_reason(
    passed: bool,
    means: Sequence[float | None],
    failed: int,
    votes: int,
    blocked: int,
    k: int,
    skipped: int = 0,
) -> str | None:
    if passed:
        return None
    if skipped and votes + skipped >= k:
        # Judges not asked (early_drop) could still carry it: their votes are unknown.
        return DROP_NOT_JUDGED
    if all(m is None for m in means):
        return DROP_JUDGE_FAILED if failed else DROP_NO_EVALUATION
    # The floors, not the means, decided it: with them met the sample would have passed (a
    # judge not asked counted as one that would have voted).
    return DROP_BELOW_FLOOR if blocked and votes + blocked + skipped >= k else DROP_LOW_VOTES


def decide(
    sample_judgements: Sequence[Judgement],
    threshold: float,
    min_votes: int,
    weights: Mapping[str, float] | None = None,
    floor_dim: str = DEFAULT_FLOOR_DIMENSION,
    floor: float | None = None,
    *,
    floors: Mapping[str, float] | None = None,
) -> Decision:
    """Votes and pass for one sample's judgements, recomputed from their scores.

    A judge votes when its weighted mean >= ``threshold`` and it meets every floor: ``floors``
    (the config's ``score_floors``) and, when given, ``floor`` on ``floor_dim`` (calibration
    searches one dimension's floor with the others fixed). The sample passes with >=
    ``min_votes``. A failed judge, or one not asked (``Judgement.skipped``, ``early_drop``),
    neither votes nor counts in ``avg_score``; a sample that judges not asked could still carry
    is dropped as "not_judged" (asking them decides it).
    """
    active = dict(floors or {})
    if floor is not None:
        active[floor_dim] = floor
    means = tuple(judge_mean(j, weights) for j in sample_judgements)
    reach = [m is not None and m >= threshold - _SCORE_SLACK for m in means]
    floor_ok = [meets_floors(j, active) for j in sample_judgements]
    voted = tuple(r and f for r, f in zip(reach, floor_ok, strict=True))
    present = [m for m in means if m is not None]
    votes = sum(voted)
    blocked = sum(1 for r, f in zip(reach, floor_ok, strict=True) if r and not f)
    failed = sum(1 for j in sample_judgements if j.error is not None)
    skipped = sum(1 for j in sample_judgements if j.skipped)
    passed = votes >= min_votes
    return Decision(
        passed=passed,
        votes=votes,
        means=means,
        voted=voted,
        floor_blocked=blocked,
        avg_score=round(sum(present) / len(present), SCORE_DECIMALS) if present else None,
        drop_reason=_drop_reason(passed, means, failed, votes, blocked, min_votes, skipped),
    )


def _rescored(j: Judgement, weights: Mapping[str, float] | None) -> Judgement:
    """The judgement with its weighted mean recomputed from its scores under ``weights``."""
    if j.error is not None:
        return j
    wm = judge_mean(j, weights)
    return j if wm == j.weighted_mean else j.model_copy(update={"weighted_mean": wm})


def _floor_detail(judgements: Sequence[Judgement], floors: Mapping[str, float]) -> str:
    """Which judge gave which floored dimension less than its floor ("primary: accuracy 3 < 6")."""
    parts = []
    for j in judgements:
        low = [
            f"{d} {floor_score(j, d):g} < {f:g}"
            for d, f in floors.items()
            if not floor_score(j, d) >= f - _SCORE_SLACK
        ]
        if j.ok and low:
            parts.append(f"{j.evaluator}: {', '.join(low)}")
    return "; ".join(parts)


def is_unjudged_drop(sample: ScoredSample) -> bool:
    """Whether ``sample`` was dropped before any judge (a gate, a duplicate question, an eval
    item it repeats)."""
    reason = sample.drop_reason
    return reason is not None and (
        reason.startswith(GATE_PREFIX) or reason in (DROP_DUPLICATE_QUESTION, DROP_CONTAMINATED)
    )


def apply_thresholds(
    sample: ScoredSample,
    *,
    min_score_threshold: float,
    min_votes: int,
    weights: Mapping[str, float] | None = None,
    floors: Mapping[str, float] | None = None,
) -> ScoredSample:
    """Return a copy of ``sample`` with votes, avg_score, passed and drop_reason decided.

    The vote is ``decide``'s: each ok judgement whose weighted mean reaches
    ``min_score_threshold`` and that meets every floor of ``floors`` is one vote; a failed
    evaluator casts no vote and is left out of ``avg_score``. ``passed`` is ``votes >=
    min_votes``; otherwise ``drop_reason`` is "below_floor" (the floors blocked votes that would
    have carried it; ``drop_detail`` names them), "low_votes", "judge_failed" (every judge
    failed) or "no_evaluation" (no judge, or no score the weights count). ``duplicate_of`` is
    cleared: dedup decides it afterwards. A sample dropped by a gate, as a duplicate question or
    as contaminated was never judged and stays dropped.
    """
    if is_unjudged_drop(sample):
        return sample
    judgements = [_rescored(j, weights) for j in sample.judgements]
    d = decide(judgements, min_score_threshold, min_votes, weights, floors=floors)
    reason = d.drop_reason
    return sample.model_copy(
        update={
            "judgements": judgements,
            "votes": d.votes,
            "avg_score": d.avg_score,
            "passed": d.passed,
            "drop_reason": reason,
            "drop_detail": _floor_detail(judgements, floors or {})
            if reason == DROP_BELOW_FLOOR
            else None,
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
        """``apply_thresholds`` with the config's threshold, votes, weights and floors."""
        return apply_thresholds(
            sample,
            min_score_threshold=self.config.min_score_threshold,
            min_votes=self.config.min_votes,
            weights=self.config.dimension_weights,
            floors=self.config.score_floors,
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
