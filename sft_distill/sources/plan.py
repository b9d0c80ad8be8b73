"""What each teacher request of a chunk asks for: how many samples, over which articles, which mix.

Pure and deterministic (a function of the chunk and the settings), so ``--estimate`` and a run
plan the very same requests, and a rerun asks them again word for word:

- ``chunk_sample_count``: a chunk's samples under a density setting
  (``headings.samples_for_chunk``).
- ``split_requests``: a chunk that would ask for more than ``max_per_request`` samples in one reply
  is asked in several requests, each over a contiguous range of its articles (or of its text,
  when it has none), so replies stay within ``max_tokens``.
- ``question_mix``: the planned question types and difficulties of a request, e.g. for 5
  samples 2 fact/definition, 1 condition/exception, 1 calculation, 1 case application; 2 easy,
  2 medium, 1 hard. Calculation only when the text has quantities, procedure only when it has
  deadlines or steps, comparison only with two articles or more.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .chunking import allocate_samples, split_text
from .headings import chunk_starts, find_articles, samples_for_chunk

__all__ = [
    "CATEGORIES",
    "CONDITION_RE",
    "PROCEDURE_RE",
    "QUANTITY_RE",
    "QUESTION_TYPES",
    "QuestionMix",
    "RequestPart",
    "chunk_sample_count",
    "question_mix",
    "split_requests",
]

# The planned categories, in the order a plan lists them; "fact" stands for fact/definition.
CATEGORIES: tuple[str, ...] = (
    "fact", "condition", "procedure", "calculation", "case", "comparison", "reasoning",
)  # fmt: skip
# The question_type values a sample may carry (a category, or "definition" for a fact one).
QUESTION_TYPES: tuple[str, ...] = (
    "fact", "definition", "condition", "procedure", "calculation", "case", "comparison",
    "reasoning",
)  # fmt: skip
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")

# Which category the k-th sample of a request gets, cycling, skipping the ones the text cannot
# support: facts and cases first (every text has them), then the richer kinds.
_SEQUENCE = (
    "fact", "case", "condition", "calculation", "fact", "procedure", "reasoning", "comparison",
    "case", "fact", "condition", "calculation", "procedure", "case", "reasoning", "comparison",
)  # fmt: skip

QUANTITY_RE = re.compile(
    r"[0-9０-９]+(?:\.[0-9]+)?\s*(?:%|％|日|天|年|个月|月|周|倍|元|万元|亿元|人|项|次"
    r"|percent|per\s*cent|days?|weeks?|months?|years?|dollars?|times)"
    r"|百分之|千分之|[一二三四五六七八九十百千两]+(?:日|天|年|个月|倍|万元|元)"
    r"|\b(?:one|two|three)[- ](?:thirds?|fourths?|fifths?|half)\b",
    re.IGNORECASE,
)
CONDITION_RE = re.compile(
    r"但是|除外|不得|不适用|有下列情形|免除|不承担|不予|除非|\bunless\b|\bexcept\b|\bprovided\s+that\b"
    r"|\bshall\s+not\b|\bno\s+(?:person|state)\b",
    re.IGNORECASE,
)
PROCEDURE_RE = re.compile(
    r"期限|日内|之日起|申请|程序|提交|通知|登记|审批|批准|备案|报告|\bwithin\b|\bprocedure\b"
    r"|\bappl(?:y|ication)\b|\bnotif(?:y|ication)\b|\bsubmit\b|\belect(?:ed|ion)\b",
    re.IGNORECASE,
)
COMPARE_RE = re.compile(r"区别|不同|分别|相比|\bwhereas\b|\brespectively\b", re.IGNORECASE)
_REASONING_MIN_CHARS = 1500
_REASONING_MIN_N = 4


@dataclass(frozen=True)
class QuestionMix:
    """The planned mix of one request: samples per category and per difficulty."""

    types: tuple[tuple[str, int], ...]  # (category, count), in CATEGORIES order, counts > 0
    difficulty: tuple[int, int, int]  # easy, medium, hard

    @property
    def n(self) -> int:
        return sum(c for _, c in self.types)

    def slots(self) -> list[tuple[str, str]]:
        """One (category, difficulty) per sample: facts easiest, reasoning and cases hardest."""
        order = {c: i for i, c in enumerate(("fact", "procedure", "condition", "comparison",
                                              "calculation", "case", "reasoning"))}  # fmt: skip
        cats = sorted((c for c, k in self.types for _ in range(k)), key=lambda c: order[c])
        levels = [d for d, k in zip(DIFFICULTIES, self.difficulty, strict=True) for _ in range(k)]
        return list(zip(cats, levels, strict=True))


def _eligible(text: str, n: int) -> set[str]:
    """The categories the text can support."""
    ok = {"fact", "case"}
    if CONDITION_RE.search(text):
        ok.add("condition")
    if PROCEDURE_RE.search(text):
        ok.add("procedure")
    if QUANTITY_RE.search(text):
        ok.add("calculation")
    if len(find_articles(text)) >= 2 or COMPARE_RE.search(text):
        ok.add("comparison")
    if n >= _REASONING_MIN_N or len(text) >= _REASONING_MIN_CHARS:
        ok.add("reasoning")
    return ok


def _half_up(x: float) -> int:
    return math.floor(x + 0.5)


def question_mix(n: int, text: str) -> QuestionMix:
    """The question types and difficulties planned for ``n`` samples of ``text``.

    Types follow a fixed cycle (fact, case, condition, calculation, fact, procedure, reasoning,
    comparison, …) restricted to what the text supports; difficulty is 40% easy, 20% hard (none
    below 3 samples), the rest medium.
    """
    n = max(0, n)
    ok = _eligible(text, n)
    seq = [c for c in _SEQUENCE if c in ok]
    counts = dict.fromkeys(CATEGORIES, 0)
    for k in range(n):
        counts[seq[k % len(seq)]] += 1
    hard = _half_up(0.2 * n) if n >= 3 else 0
    easy = _half_up(0.4 * n)
    return QuestionMix(
        types=tuple((c, counts[c]) for c in CATEGORIES if counts[c]),
        difficulty=(easy, n - easy - hard, hard),
    )


# No cap of our own on a chunk's samples: big chunks are asked in several requests instead.
_MAX_PER_CHUNK = 100_000


def chunk_sample_count(
    text: str, *, samples_per_1k_chars: float | None, per_article: float | bool | None
) -> int | None:
    """A chunk's samples under the density settings; None when neither is set (share instead).

    ``per_article``: samples per article (``True`` is 1; 2 asks two per article, each article
    counted as ``headings.samples_for_chunk`` counts it); ``samples_per_1k_chars``: per 1,000
    characters. Both set: the larger count.
    """
    factor = float(per_article) if per_article else 0.0
    if samples_per_1k_chars is None and not factor:
        return None
    n = 1
    if samples_per_1k_chars is not None:
        n = samples_for_chunk(
            text, samples_per_1k_chars=samples_per_1k_chars, maximum=_MAX_PER_CHUNK
        )
    if factor:
        units = samples_for_chunk(text, per_article=True, maximum=_MAX_PER_CHUNK)
        # The epsilon keeps 3 articles at 1.5 per article at 5, not 6 through float error.
        n = max(n, math.ceil(units * factor - 1e-9))
    return n


# ---------------------------------------------------------------------------------------------
# Requests over parts of a chunk


@dataclass(frozen=True)
class RequestPart:
    """One teacher request of a chunk: ``n`` samples about ``text[start:end]`` of the chunk.

    ``first``/``last`` name the range: article labels ("第十条", "Section 8") when ``articles``,
    otherwise the range's opening and closing words. A whole chunk is one part with ``total`` 1.
    """

    n: int
    index: int = 0
    total: int = 1
    start: int = 0
    end: int = 0
    first: str = ""
    last: str = ""
    units: int = 0  # articles in the range (0: a range of text)
    articles: bool = False

    @property
    def whole(self) -> bool:
        return self.total == 1


# A part of a long article counts one sample per 1,500 characters, as samples_for_chunk does.
_CHARS_PER_UNIT_SAMPLE = 1500
_LEAD_MIN_CHARS = 200
_QUOTE_CHARS = 16


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    label: str  # "" for text before the first article, or a text unit
    weight: int


def _article_units(text: str) -> list[_Unit]:
    arts = find_articles(text)
    if not arts:
        return []
    units = []
    lead = text[: arts[0].start].strip()
    if len(lead) >= _LEAD_MIN_CHARS:
        units.append(_Unit(0, arts[0].start, "", math.ceil(len(lead) / _CHARS_PER_UNIT_SAMPLE)))
    for i, a in enumerate(arts):
        stop = arts[i + 1].start if i + 1 < len(arts) else len(text)
        size = len(text[a.start : stop].strip())
        units.append(
            _Unit(a.start, stop, a.label, max(1, math.ceil(size / _CHARS_PER_UNIT_SAMPLE)))
        )
    return units


def _text_units(text: str, parts: int) -> list[_Unit]:
    pieces = split_text(text, max(50, math.ceil(len(text) / (2 * parts))))
    starts = chunk_starts(text, pieces)
    return [_Unit(s, s + len(p), "", max(1, len(p))) for p, s in zip(pieces, starts, strict=True)]


def _group(units: list[_Unit], k: int) -> list[list[_Unit]]:
    """Contiguous groups of units, at most k, with weights as even as a greedy cut makes them."""
    total = sum(u.weight for u in units)
    groups: list[list[_Unit]] = [[]]
    acc = 0
    for i, u in enumerate(units):
        left_units, left_groups = len(units) - i, k - len(groups)
        target = total * len(groups) / k
        # Close the group once it reaches its share, keeping one unit per group still to come.
        if (
            groups[-1]
            and left_groups > 0
            and (acc + u.weight / 2 > target or left_units <= left_groups)
        ):
            groups.append([])
        groups[-1].append(u)
        acc += u.weight
    return groups


def _quote(s: str, head: bool) -> str:
    s = " ".join(s.split())
    if len(s) <= _QUOTE_CHARS:
        return s
    return s[:_QUOTE_CHARS] if head else s[-_QUOTE_CHARS:]


def split_requests(text: str, n: int, max_per_request: int) -> list[RequestPart]:
    """The requests that ask a chunk's ``n`` samples, each for at most about ``max_per_request``.

    ``n <= max_per_request``: one request over the whole chunk. Otherwise ``ceil(n / max)``
    requests over contiguous ranges of the chunk's articles (the samples shared by each range's
    weight: one per article, one more per further 1,500 characters), or of its paragraphs and
    sentences when it has no articles (or fewer than requests).
    """
    if n <= max_per_request:
        return [RequestPart(n=n, end=len(text))]
    k = math.ceil(n / max_per_request)
    units = _article_units(text)
    articles = len(units) >= k
    if not articles:
        units = _text_units(text, k)
    groups = [g for g in _group(units, min(k, len(units))) if g]
    shares = allocate_samples([sum(u.weight for u in g) for g in groups], n)
    parts = []
    for i, (g, share) in enumerate(zip(groups, shares, strict=True)):
        start, end = g[0].start, g[-1].end
        if articles:
            labels = [u.label for u in g if u.label]
            first = g[0].label or ""
            last = labels[-1] if labels else ""
            units_n = len(labels)
        else:
            first = _quote(text[start:end], head=True)
            last = _quote(text[start:end].rstrip(), head=False)
            units_n = 0
        parts.append(
            RequestPart(
                n=share,
                index=i,
                total=len(groups),
                start=start,
                end=end,
                first=first,
                last=last,
                units=units_n,
                articles=articles,
            )
        )
    return parts
