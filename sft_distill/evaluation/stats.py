"""Statistics for comparing a student model with a reference: pairwise verdicts, bootstrap CIs.

Pure functions for ``sft-distill eval``. Pairwise judging asks each question twice, the student
first (position A) and then swapped (student in position B); a verdict names the winning
position, "A", "B" or "tie". Two orders that disagree count as a tie, so a judge's preference
for one position cancels out (MT-Bench, Zheng et al. 2023).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..selection.calibration import cohen_kappa

__all__ = [
    "OUTCOMES",
    "Interval",
    "Outcome",
    "Verdict",
    "biggest_changes",
    "bootstrap_ci",
    "judge_agreement",
    "mean_scores_by",
    "pairwise_verdict",
    "position_consistency",
    "win_rate_ci",
    "win_tie_loss",
]

Verdict = Literal["A", "B", "tie"]
Outcome = Literal["win", "tie", "loss"]
OUTCOMES: tuple[Outcome, ...] = ("win", "tie", "loss")

# Cells of one bootstrap block (resamples x values): bounds memory for large inputs.
_BLOCK_CELLS = 1 << 22


def _verdict(value: str) -> Verdict:
    """``value`` as "A", "B" or "tie" (case and outer spaces ignored)."""
    v = str(value).strip()
    if v.upper() in ("A", "B"):
        return v.upper()  # type: ignore[return-value]
    if v.lower() == "tie":
        return "tie"
    raise ValueError(f"pairwise verdict must be 'A', 'B' or 'tie', got {value!r}")


def pairwise_verdict(first_order: str, swapped_order: str) -> Outcome:
    """The student's outcome from both orders: student in A first, then in B (swapped).

    Each verdict names the winning position in its own order. Both orders favouring the student
    is a win, both favouring the reference a loss; anything else (a tie, or orders that disagree,
    i.e. the judge picked a position rather than an answer) is a tie.
    """
    first = {"A": "win", "B": "loss", "tie": "tie"}[_verdict(first_order)]
    swapped = {"A": "loss", "B": "win", "tie": "tie"}[_verdict(swapped_order)]
    return first if first == swapped else "tie"  # type: ignore[return-value]


def _outcome(value: str) -> Outcome:
    v = str(value).strip().lower()
    if v not in OUTCOMES:
        raise ValueError(f"outcome must be 'win', 'tie' or 'loss', got {value!r}")
    return v


def win_tie_loss(verdicts: Iterable[str]) -> dict[str, Any]:
    """Counts and rates of win/tie/loss (rates NaN when there is none)."""
    counts = Counter(_outcome(v) for v in verdicts)
    n = sum(counts.values())
    out: dict[str, Any] = {
        "n": n,
        "wins": counts["win"],
        "ties": counts["tie"],
        "losses": counts["loss"],
    }
    return out | {f"{o}_rate": (counts[o] / n if n else math.nan) for o in OUTCOMES}


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval (NaN for no data)."""

    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        """The three numbers with NaN as None, for JSON."""
        return {k: (v if math.isfinite(v) else None) for k, v in vars(self).items()}


def _stat_rows(stat: Callable[..., Any], block: np.ndarray) -> np.ndarray:
    """``stat`` of each row: numpy reductions take ``axis``, other callables go row by row."""
    try:
        out = np.asarray(stat(block, axis=1), dtype=float)
    except TypeError:
        out = np.array([stat(row) for row in block], dtype=float)
    if out.shape != (block.shape[0],):
        raise ValueError("bootstrap stat must reduce each resample to one number")
    return out


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Callable[..., Any] = np.mean,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``stat`` over ``values``; the same seed, the same interval.

    Resamples are drawn in blocks (one numpy call each) from ``np.random.default_rng(seed)``;
    ``stat`` should accept ``axis=1`` (np.mean, np.median...) to be vectorised.

    Raises:
        ValueError: ``alpha`` not in (0, 1) or ``n_resamples`` < 1.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    x = np.asarray(values, dtype=float).ravel()
    n = x.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan)
    estimate = float(_stat_rows(stat, x[None, :])[0])
    rng = np.random.default_rng(seed)
    per_block = max(1, _BLOCK_CELLS // n)
    stats = np.empty(n_resamples)
    for start in range(0, n_resamples, per_block):
        stop = min(start + per_block, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        stats[start:stop] = _stat_rows(stat, x[idx])
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return Interval(estimate, float(low), float(high))


def win_rate_ci(
    verdicts: Sequence[str], *, n_resamples: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict[str, Any]:
    """``win_tie_loss`` plus bootstrap intervals for the win rate, win - loss, and the score.

    The score counts a win 1, a tie 0.5 and a loss 0. The three intervals use the same
    resamples (same seed and length), so they are consistent.
    """
    outcomes = [_outcome(v) for v in verdicts]
    win = np.array([o == "win" for o in outcomes], dtype=float)
    loss = np.array([o == "loss" for o in outcomes], dtype=float)

    def ci(values: np.ndarray) -> dict[str, float | None]:
        return bootstrap_ci(values, n_resamples=n_resamples, alpha=alpha, seed=seed).as_dict()

    return {
        **win_tie_loss(outcomes),
        "win_rate_ci": ci(win),
        "win_minus_loss_ci": ci(win - loss),
        "score_ci": ci(win + 0.5 * (1 - win - loss)),
        "confidence": 1 - alpha,
    }


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number, or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def mean_scores_by(
    rows: Iterable[Mapping[str, Any]],
    key: str | Callable[[Mapping[str, Any]], Hashable],
    *,
    scores_key: str = "scores",
) -> dict[Hashable, dict[str, Any]]:
    """Per group (``row[key]``, e.g. the model): row count and the mean of each score dimension.

    Each row holds ``scores`` {dimension: number}; a missing or non-finite score is left out of
    its dimension's mean (not counted as 0). Groups and dimensions come out sorted.
    """
    group_of = key if callable(key) else (lambda r: r.get(key))
    sums: dict[Hashable, dict[str, list[float]]] = {}
    counts: Counter[Hashable] = Counter()
    for row in rows:
        g = group_of(row)
        counts[g] += 1
        dims = sums.setdefault(g, {})
        for dim, value in (row.get(scores_key) or {}).items():
            v = _finite(value)
            if v is not None:
                dims.setdefault(dim, []).append(v)
    return {
        g: {
            "n": counts[g],
            "scores": {d: round(sum(v) / len(v), 4) for d, v in sorted(sums[g].items())},
        }
        for g in sorted(counts, key=str)
    }


def biggest_changes(
    rows: Iterable[Mapping[str, Any]],
    k: int = 10,
    *,
    id_key: str = "id",
    student_key: str = "student",
    reference_key: str = "reference",
) -> dict[str, list[dict[str, Any]]]:
    """The ``k`` questions where the student fell furthest below, and rose furthest above, the
    reference.

    Rows with the same id (one per judge) are averaged first; a row without both scores is
    skipped. ``regressions`` (delta < 0, worst first) and ``improvements`` (delta > 0, best
    first), each row ``{id, student, reference, delta, n}``; ties by id.
    """
    acc: dict[Hashable, list[tuple[float, float]]] = {}
    for row in rows:
        s, r = _finite(row.get(student_key)), _finite(row.get(reference_key))
        if s is not None and r is not None:
            acc.setdefault(row.get(id_key), []).append((s, r))
    changes: list[dict[str, Any]] = []
    for qid, pairs in acc.items():
        s = sum(p[0] for p in pairs) / len(pairs)
        r = sum(p[1] for p in pairs) / len(pairs)
        d = round(s - r, 6)  # so that 7.1 - 7.0 and 8.1 - 8.0 sort as equal
        changes.append({"id": qid, "student": s, "reference": r, "delta": d, "n": len(pairs)})
    worst = sorted((c for c in changes if c["delta"] < 0), key=lambda c: (c["delta"], str(c["id"])))
    best = sorted((c for c in changes if c["delta"] > 0), key=lambda c: (-c["delta"], str(c["id"])))
    return {"regressions": worst[:k], "improvements": best[:k]}


def judge_agreement(a: Mapping[Hashable, str], b: Mapping[Hashable, str]) -> dict[str, Any]:
    """Agreement of two judges' outcomes (win/tie/loss) on the items both judged.

    Percent agreement, Cohen's kappa over the three classes (NaN if both always gave the same
    one), the confusion counts ``confusion[a_outcome][b_outcome]``, and how many items only one
    judge has.
    """
    common = [i for i in a if i in b]
    xa = [_outcome(a[i]) for i in common]
    xb = [_outcome(b[i]) for i in common]
    confusion = {o: dict.fromkeys(OUTCOMES, 0) for o in OUTCOMES}
    for x, y in zip(xa, xb, strict=True):
        confusion[x][y] += 1
    n = len(common)
    return {
        "n": n,
        "agreement": sum(x == y for x, y in zip(xa, xb, strict=True)) / n if n else math.nan,
        "kappa": cohen_kappa(xa, xb),
        "confusion": confusion,
        "only_a": len(a) - n,
        "only_b": sum(1 for i in b if i not in a),
    }


def position_consistency(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """How often a judge's two orders agree, and which position it picks when they do not.

    ``pairs`` are (first_order, swapped_order) verdicts. ``first_position`` counts pairs where
    the judge chose position A both times (whatever answer sat there), ``second_position`` B.
    """
    n = consistent = first = second = 0
    for v1, v2 in pairs:
        a, b = _verdict(v1), _verdict(v2)
        n += 1
        # Consistent: the same answer won both times (A then B), or both orders tied.
        consistent += (a, b) in (("A", "B"), ("B", "A"), ("tie", "tie"))
        first += (a, b) == ("A", "A")
        second += (a, b) == ("B", "B")
    return {
        "n": n,
        "consistent": consistent,
        "consistency": consistent / n if n else math.nan,
        "first_position": first,
        "second_position": second,
    }
