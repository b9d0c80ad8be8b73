"""Evidence: the teacher's verbatim quotes must be in the chunk (NFKC, case, spaces, punctuation
ignored; otherwise the best aligned window must cover most of the quote).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from .base import squash


@dataclass(frozen=True)
class EvidenceResult:
    """Which evidence quotes were found in the chunk (scores 0..1, one per quote)."""

    verified: bool | None
    failed: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def _ngram_index(text: str, n: int) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for i in range(len(text) - n + 1):
        index.setdefault(text[i : i + n], []).append(i)
    return index


def quote_score(quote: str, source: str, *, _index: dict[str, list[int]] | None = None) -> float:
    """How well ``quote`` is found in ``source``: 1.0 verbatim (ignoring case, spaces, punctuation).

    Otherwise the best alignment of the quote inside one window of the source: characters
    matched in order, divided by the longer of the quote and the stretch of source they span
    (so a changed character costs a little, a skipped phrase as much as its length). Windows
    are found by shared character n-grams, so it stays fast on long chunks.
    """
    q, s = squash(quote), squash(source)
    if not q or q in s:
        return 1.0
    if not s:
        return 0.0
    n = 3 if len(q) >= 12 else 2
    index = _index if _index is not None else _ngram_index(s, n)
    # Vote for the offset at which the quote would start in the source.
    votes: Counter[int] = Counter()
    for i in range(len(q) - n + 1):
        for pos in index.get(q[i : i + n], ())[:200]:
            votes[(pos - i) // 8] += 1
    best = 0.0
    for bucket, _ in votes.most_common(5):
        start = max(0, bucket * 8 - len(q) // 4)
        window = s[start : bucket * 8 + len(q) + len(q) // 4 + 8]
        matcher = SequenceMatcher(None, q, window, autojunk=False)
        blocks = [b for b in matcher.get_matching_blocks() if b.size]
        if not blocks:
            continue
        matched = sum(b.size for b in blocks)
        span = blocks[-1].b + blocks[-1].size - blocks[0].b
        best = max(best, matched / max(len(q), span))
    return best


def check_evidence(
    quotes: Sequence[str], source: str, *, threshold: float = 0.85
) -> EvidenceResult:
    """Check every evidence quote against the chunk; ``verified`` is None when there are none."""
    quotes = [q for q in quotes if isinstance(q, str) and q.strip()]
    if not quotes:
        return EvidenceResult(None)
    s = squash(source)
    index3 = _ngram_index(s, 3)
    index2 = _ngram_index(s, 2)
    scores = []
    failed = []
    for q in quotes:
        score = quote_score(q, source, _index=index3 if len(squash(q)) >= 12 else index2)
        scores.append(round(score, 3))
        if score < threshold:
            failed.append(q)
    return EvidenceResult(not failed, failed, scores)
