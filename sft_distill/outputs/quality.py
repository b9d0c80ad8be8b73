"""Dataset quality figures that need no model: evidence, referential wording, question types.

``QualityStats`` is fed every judged sample by the ``ReportBuilder`` (a run as samples are
judged, ``refilter`` from the raw file) and gives ``metadata.json`` → ``quality``:

- ``evidence_verified_share``: of the kept samples, the share whose evidence quotes were all
  found in the source (``annotations.evidence_verified``, set by the evidence gate); ``evidence``
  counts verified, failed (``on_missing: "flag"`` keeps those) and unchecked (no quotes, no
  source, or no evidence gate) among generated and kept samples.
- ``referential_rate``: the share of samples whose question (or answer) leans on a text the
  student will not have, by the referential check, among generated and kept samples.
- ``question_types`` and ``difficulty``: histograms of ``Sample.question_type`` / ``difficulty``
  (or the same keys in ``annotations``) among generated and kept samples; empty when the teacher
  gives none.
- ``check_drops``: samples each configured gate dropped (0 included), from the funnel.
- ``check_flags``: samples each check kept with a suspect finding for the judges to verify
  (``annotations.quality_flags``), among generated (judged) and kept samples: how many the
  judges then let through.

"Kept" is what the splits hold: passed the thresholds, not a duplicate, not capped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..models import ScoredSample
from ..stages.gates.checks.referential import find_referential

__all__ = ["QualityStats"]

_GATE_PREFIX = "gate:"

# The most distinct question types or difficulty values kept apart; the rest are "other".
_MAX_LABELS = 50

# evidence states
_UNCHECKED, _VERIFIED, _FAILED = 0, 1, 2


@dataclass
class _Tally:
    """Counts over a set of samples."""

    n: int = 0
    evidence: Counter[int] = field(default_factory=Counter)
    referential: int = 0
    question_types: Counter[str] = field(default_factory=Counter)
    difficulty: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)

    def count(self, facts: _Facts, sign: int = 1) -> None:
        self.n += sign
        for check in facts.flags:
            self.flags[check] += sign
        self.evidence[facts.evidence] += sign
        self.referential += sign * facts.referential
        if facts.question_type is not None:
            self.question_types[facts.question_type] += sign
        if facts.difficulty is not None:
            self.difficulty[facts.difficulty] += sign

    def evidence_counts(self) -> dict[str, int]:
        return {
            "verified": self.evidence[_VERIFIED],
            "failed": self.evidence[_FAILED],
            "unchecked": self.evidence[_UNCHECKED],
        }


@dataclass(frozen=True)
class _Facts:
    """What the figures need of one sample."""

    evidence: int
    referential: bool
    question_type: str | None
    difficulty: str | None
    flags: frozenset[str] = frozenset()


def _label(value: Any) -> str | None:
    """A question type or difficulty as a short label (None when absent)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text[:40] or None


def _field(sample: ScoredSample, name: str) -> Any:
    """``sample.<name>`` when the model has that field, else ``annotations[name]``."""
    value = getattr(sample, name, None)
    return value if value is not None else sample.annotations.get(name)


def _flagged_checks(sample: ScoredSample) -> frozenset[str]:
    """The checks that flagged the sample for the judges (``annotations.quality_flags``)."""
    flags: Any = sample.annotations.get("quality_flags")
    if not isinstance(flags, list):
        return frozenset()
    return frozenset(str(f["check"])[:40] for f in flags if isinstance(f, dict) and f.get("check"))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _histogram(counts: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0}


class QualityStats:
    """The quality figures of a run, gathered one judged sample at a time.

    Memory: one small code per sample that passed the thresholds (a later duplicate or cap
    takes it back out of the kept figures), nothing for the others.
    """

    def __init__(self) -> None:
        self.generated = _Tally()
        self.kept = _Tally()
        self._passed: dict[str, _Facts] = {}
        # Interned facts: a run has few distinct combinations, so each code is shared.
        self._interned: dict[_Facts, _Facts] = {}
        self._labels: dict[str, set[str]] = {"question_type": set(), "difficulty": set()}

    def _facts(self, sample: ScoredSample) -> _Facts:
        verified = sample.annotations.get("evidence_verified")
        evidence = _VERIFIED if verified is True else _FAILED if verified is False else _UNCHECKED
        if sample.drop_reason == f"{_GATE_PREFIX}referential":
            referential = True  # the gate said so: no need to look again
        else:
            found = find_referential(sample.instruction, sample.output, input=sample.input)
            referential = found is not None
        facts = _Facts(
            evidence,
            referential,
            self._bounded("question_type", _label(_field(sample, "question_type"))),
            self._bounded("difficulty", _label(_field(sample, "difficulty"))),
            _flagged_checks(sample),
        )
        return self._interned.setdefault(facts, facts)

    def _bounded(self, kind: str, label: str | None) -> str | None:
        """``label``, or "other" once ``_MAX_LABELS`` distinct ones were seen."""
        seen = self._labels[kind]
        if label is None or label in seen:
            return label
        if len(seen) >= _MAX_LABELS:
            return "other"
        seen.add(label)
        return label

    def add(self, sample: ScoredSample) -> None:
        """Count one judged sample (among the kept ones when it passed the thresholds)."""
        facts = self._facts(sample)
        self.generated.count(facts)
        if sample.passed:
            self.kept.count(facts)
            self._passed[sample.id] = facts

    def drop_late(self, ids: Iterable[str]) -> None:
        """Passing samples dropped after judging (duplicates, capped): no longer kept."""
        for sid in ids:
            facts = self._passed.pop(sid, None)
            if facts is not None:
                self.kept.count(facts, -1)

    def summary(self, drops: Mapping[str, int], gates: Sequence[str] = ()) -> dict[str, Any]:
        """``metadata.json`` → ``quality``; ``drops`` the funnel's drop reasons, ``gates`` the
        names of the gates the run had (each shown, 0 when it dropped nothing)."""
        check_drops = {name: 0 for name in gates}
        for reason, n in drops.items():
            if reason.startswith(_GATE_PREFIX):
                check_drops[reason[len(_GATE_PREFIX) :]] = int(n)
        gen, kept = self.generated, self.kept
        return {
            "evidence_verified_share": _rate(kept.evidence[_VERIFIED], kept.n),
            "evidence": {"generated": gen.evidence_counts(), "kept": kept.evidence_counts()},
            "referential_rate": {
                "generated": _rate(gen.referential, gen.n),
                "kept": _rate(kept.referential, kept.n),
            },
            "question_types": {
                "generated": _histogram(gen.question_types),
                "kept": _histogram(kept.question_types),
            },
            "difficulty": {
                "generated": _histogram(gen.difficulty),
                "kept": _histogram(kept.difficulty),
            },
            "check_drops": check_drops,
            "check_flags": {
                "generated": _histogram(gen.flags),
                "kept": _histogram(kept.flags),
            },
            "samples": {"generated": gen.n, "kept": kept.n},
        }
