"""Quality gates: the deterministic checks of ``checks`` as gates, each with its own drop reason.

``{"type": "quality"}`` enables them all, cheapest first (``QUALITY_GATE_TYPES`` in ``registry``);
each is also a type of its own (``referential``, ``evidence``, ``numbers``, ``truncated``,
``non_answer``, ``support``). None runs unless configured.

Precision first: ``referential``, ``numbers`` and ``support`` tell a certain finding (structural
evidence: the source states another value in the same words) from a suspect one (a figure merely
absent, a loose alignment, an inference from words; see ``checks.base.Finding``). A certain
finding drops the sample. What a suspect one does is the gate's ``on_suspect``: ``"judge"``
(default) keeps the sample, records the finding in ``annotations["quality_flags"]`` and shows it
to every judge as a claim to verify; ``"drop"`` drops it like a certain one; ``"keep"`` records
it without showing it to the judges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...models import Sample
from .base import GateResult
from .checks.base import Finding
from .checks.evidence import check_evidence
from .checks.non_answer import find_non_answer
from .checks.numbers import check_numbers
from .checks.referential import find_referential
from .checks.support import find_unsupported
from .checks.truncation import find_truncation
from .rules import _bool_opt, _float_opt

KEEP = GateResult(keep=True)

ON_SUSPECT = ("judge", "drop", "keep")
FLAGS_KEY = "quality_flags"


def _on_suspect_opt(value: str) -> str:
    if value not in ON_SUSPECT:
        raise ValueError(f"on_suspect must be one of {', '.join(ON_SUSPECT)}; got {value!r}")
    return value


def flagged(
    sample: Sample, found: Finding, check: str, on_suspect: str, notes: dict[str, Any]
) -> GateResult:
    """The verdict on a finding: a certain one (or any, with ``on_suspect: "drop"``) drops; a
    suspect one keeps the sample and adds ``{check, reason, judge}`` to its quality flags
    (``judge``: whether the judges are shown it)."""
    if found.certain or on_suspect == "drop":
        return GateResult(False, found.reason, notes)
    flag = {"check": check, "reason": found.reason, "judge": on_suspect == "judge"}
    old: Any = sample.annotations.get(FLAGS_KEY)
    flags = [f for f in old if isinstance(f, dict)] if isinstance(old, list) else []
    if flag not in flags:  # a resumed run checks the sample again
        flags.append(flag)
    return GateResult(True, None, {**notes, FLAGS_KEY: flags})


def judge_flags(sample: Sample) -> list[str]:
    """The reasons of the sample's quality flags the judges are to be shown."""
    flags: Any = sample.annotations.get(FLAGS_KEY)
    if not isinstance(flags, list):
        return []
    return [
        str(f["reason"])
        for f in flags
        if isinstance(f, dict) and f.get("judge", True) and f.get("reason")
    ]


def _question(sample: Sample) -> str:
    """The whole user turn: numbers of a case may sit in the input."""
    return f"{sample.instruction}\n{sample.input}" if sample.input.strip() else sample.instruction


class ReferentialGate:
    """Drops a question that points at a text the student will not have ("根据上述资料…",
    "本合同…" with no product named, "according to the passage above"), and an answer that
    refers to "the text" ("文中提到", "the passage says") when ``check_output`` is on."""

    def __init__(
        self, *, check_output: bool = True, on_suspect: str = "judge", name: str = "referential"
    ) -> None:
        self.name = name
        self.check_output = _bool_opt("check_output", check_output)
        self.on_suspect = _on_suspect_opt(on_suspect)

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless the question or answer leans on an unseen text (see ``on_suspect``)."""
        output = sample.output if self.check_output else ""
        found = find_referential(sample.instruction, output, input=sample.input)
        return KEEP if found is None else flagged(sample, found, self.name, self.on_suspect, {})


_ON_MISSING = ("drop", "flag")


def sample_evidence(sample: Sample) -> list[str]:
    """The sample's evidence quotes: ``sample.evidence``, else ``annotations["evidence"]``."""
    if sample.evidence:
        return list(sample.evidence)
    quotes: Any = sample.annotations.get("evidence")
    if isinstance(quotes, str):
        return [quotes]
    if isinstance(quotes, Sequence):
        return [q for q in quotes if isinstance(q, str)]
    return []


class EvidenceGate:
    """Checks that every verbatim evidence quote of the sample is in its chunk.

    Matching is fuzzy (NFKC, case, spaces and punctuation ignored; otherwise the best aligned
    window must cover ``threshold`` of the quote's characters). A quote not found drops the
    sample (``on_missing: "drop"``) or only annotates it (``"flag"``). A sample with no quotes,
    or no chunk text, is kept with ``evidence_verified: null``.
    """

    def __init__(
        self, *, threshold: float = 0.85, on_missing: str = "drop", name: str = "evidence"
    ) -> None:
        self.name = name
        self.threshold = _float_opt("threshold", threshold)
        if on_missing not in _ON_MISSING:
            raise ValueError(f"on_missing must be 'drop' or 'flag', got {on_missing!r}")
        self.on_missing = on_missing

    async def check(self, sample: Sample) -> GateResult:
        """Keep when every quote is in the chunk (or on_missing is 'flag')."""
        quotes = sample_evidence(sample)
        if not quotes or not sample.source_text.strip():
            return GateResult(True, None, {"evidence_verified": None})
        result = check_evidence(quotes, sample.source_text, threshold=self.threshold)
        notes: dict[str, Any] = {
            "evidence_verified": result.verified,
            "evidence_scores": result.scores,
        }
        if result.verified:
            return GateResult(True, None, notes)
        notes["evidence_failed"] = result.failed
        reason = (
            f"{len(result.failed)} of {len(quotes)} evidence quotes not in the source: "
            f"{result.failed[0][:40]!r}"
        )
        return GateResult(self.on_missing == "flag", reason, notes)


class NumbersGate:
    """Drops an answer whose rule quantities (deadlines, percentages, multiples, amounts,
    defaults), cited articles or laws contradict the source: a clause of the source stating the
    same rule gives another value, a cited article is absent or says something else, a law is
    not the source's (see ``checks.numbers.check_numbers``). A number the source lacks is kept.
    Only certain contradictions drop; a suspect one goes by ``on_suspect``."""

    def __init__(self, *, on_suspect: str = "judge", name: str = "numbers") -> None:
        self.name = name
        self.on_suspect = _on_suspect_opt(on_suspect)

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless a number or reference of the answer contradicts the source."""
        found = check_numbers(sample.output, sample.source_text, _question(sample))
        if found is None:
            return KEEP
        return flagged(sample, found, self.name, self.on_suspect, {"numbers": found.details})


class TruncationGate:
    """Drops an answer cut off mid-sentence, or one whose generation stopped at max_tokens
    (``annotations["finish_reason"] == "length"``)."""

    def __init__(self, *, name: str = "truncated") -> None:
        self.name = name

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless the answer stops mid-sentence."""
        reason = sample.annotations.get("finish_reason")
        found = find_truncation(sample.output, reason if isinstance(reason, str) else None)
        return KEEP if found is None else GateResult(False, found.reason)


class NonAnswerGate:
    """Drops "资料中没有提及", "无法确定", "the text does not say", "I cannot determine",
    answers that only deflect ("请咨询专业人士", "it depends"), and answers to "how long?" that
    give no amount and repeat the question."""

    def __init__(self, *, name: str = "non_answer") -> None:
        self.name = name

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless the answer declines to answer."""
        found = find_non_answer(sample.output, _question(sample))
        return KEEP if found is None else GateResult(False, found.reason)


class SupportGate:
    """Drops an answer to a direct question that the source does not support: a rule sentence
    sharing little with the provision asked about (an invented rule), or an answer that
    restates some other provision (see ``checks.support.find_unsupported``). Case and calculation
    answers are not checked. Its findings are all suspect: by default (``on_suspect:
    "judge"``) the judges verify them."""

    def __init__(
        self,
        *,
        min_sentence_support: float = 0.5,
        min_answer_support: float = 0.35,
        min_source_support: float = 0.4,
        on_suspect: str = "judge",
        name: str = "support",
    ) -> None:
        self.name = name
        self.on_suspect = _on_suspect_opt(on_suspect)
        self.min_sentence_support = _float_opt("min_sentence_support", min_sentence_support)
        self.min_answer_support = _float_opt("min_answer_support", min_answer_support)
        self.min_source_support = _float_opt("min_source_support", min_source_support)

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless part of the answer is not in the source."""
        found = find_unsupported(
            sample.output,
            sample.source_text,
            _question(sample),
            min_sentence_support=self.min_sentence_support,
            min_answer_support=self.min_answer_support,
            min_source_support=self.min_source_support,
        )
        if found is None:
            return KEEP
        return flagged(sample, found, self.name, self.on_suspect, {"support": found.details})


__all__ = [
    "EvidenceGate",
    "NonAnswerGate",
    "NumbersGate",
    "ReferentialGate",
    "SupportGate",
    "TruncationGate",
    "judge_flags",
    "sample_evidence",
]
