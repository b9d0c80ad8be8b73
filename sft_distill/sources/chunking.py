"""Split long knowledge slices into prompt-sized chunks and share the sample budget among them.

Chunk boundaries, best first: before a heading (``# …``, ``第X章``, ``第X条``), a blank line,
a line break, the end of a sentence (``。！？；…`` or ``.!?`` + space), a clause (``，、：``
or ``,:;`` + space), a space, and as a last resort a hard cut at ``max_chars``.

No text is lost: chunks are whitespace-stripped slices of the input, in order, so
``text == w0 + chunks[0] + w1 + chunks[1] + … + chunks[-1] + wn`` where every ``wi`` is
whitespace only (possibly empty). Separators stay attached to the piece before them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

__all__ = ["allocate_samples", "split_text"]

# Boundary levels: lower is a better place to cut.
_HEADING, _PARAGRAPH, _LINE, _SENTENCE, _CLAUSE, _SPACE, _HARD = range(-1, 6)

# Each pattern matches a separator; a piece ends where the match ends, so the separator and
# the whitespace after it stay with the preceding piece.
_SPLITTERS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (_PARAGRAPH, re.compile(r"\n[^\S\n]*\n\s*")),
    (_LINE, re.compile(r"\n\s*")),
    (
        _SENTENCE,
        re.compile(r"(?:[。！？；…]+[”’」』）)\"']*|[.!?]+[\"')\]]*(?=\s)|;(?=\s))\s*"),
    ),
    (_CLAUSE, re.compile(r"(?:[，、：]|[,:](?=\s))\s*")),
    (_SPACE, re.compile(r"\s+")),
)
_HEADING_LINE = re.compile(
    r"#{1,6}\s|第[0-9０-９一二三四五六七八九十百千零〇两]+[编章节条款部分篇]"
)
# When a chunk is full, the cut may move back to a better boundary if the chunk stays at
# least this full (headings, paragraphs over sentences); otherwise pack greedily.
_MIN_FILL = 0.75


@dataclass
class _Piece:
    """An unsplittable run of text: [start, end) with trailing whitespace, level of its end."""

    start: int
    end: int  # end of content, trailing whitespace excluded
    level: int


def _content_end(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _atomize(
    text: str, start: int, end: int, level_index: int, after: int, max_chars: int, out: list[_Piece]
) -> None:
    """Append pieces of text[start:end] no longer than max_chars, split as coarsely as possible."""
    content_end = _content_end(text, start, end)
    if content_end <= start:
        return
    if content_end - start <= max_chars:
        out.append(_Piece(start, content_end, after))
        return
    if level_index == len(_SPLITTERS):
        # Nothing left but a hard cut.
        for cut in range(start, content_end, max_chars):
            stop = min(cut + max_chars, content_end)
            out.append(_Piece(cut, stop, after if stop == content_end else _HARD))
        return
    level, pattern = _SPLITTERS[level_index]
    piece_start = start
    for m in pattern.finditer(text, start, content_end):
        if m.end() <= piece_start or m.end() >= content_end:
            continue
        _atomize(text, piece_start, m.end(), level_index + 1, level, max_chars, out)
        piece_start = m.end()
    _atomize(text, piece_start, end, level_index + 1, after, max_chars, out)


def split_text(text: str, max_chars: int) -> list[str]:
    """Split text into chunks of at most max_chars characters on the best boundaries.

    Returns ``[]`` for empty or whitespace-only text and ``[text]`` unchanged when it fits.
    Pieces are packed greedily; when a chunk is full its end may move back to a better
    boundary (a heading, then a paragraph, …) as long as the chunk stays 75% full.

    Raises:
        ValueError: max_chars < 1.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if not text or text.isspace():
        return []
    if len(text) <= max_chars:
        return [text]
    start = len(text) - len(text.lstrip())
    pieces: list[_Piece] = []
    _atomize(text, start, len(text), 0, _PARAGRAPH, max_chars, pieces)
    for prev, nxt in pairwise(pieces):
        if prev.level <= _LINE and _HEADING_LINE.match(text, nxt.start):
            prev.level = _HEADING
    chunks: list[str] = []
    i = 0
    while i < len(pieces):
        chunk_start = pieces[i].start
        j = i
        while j + 1 < len(pieces) and pieces[j + 1].end - chunk_start <= max_chars:
            j += 1
        if j + 1 < len(pieces):
            # Full: look back for a better boundary that still leaves the chunk well filled.
            min_end = chunk_start + _MIN_FILL * max_chars
            best = j
            for k in range(j - 1, i - 1, -1):
                if pieces[k].end < min_end:
                    break
                if pieces[k].level < pieces[best].level:
                    best = k
            j = best
        chunks.append(text[chunk_start : pieces[j].end])
        i = j + 1
    return chunks


def allocate_samples(chunk_lengths: list[int], total: int) -> list[int]:
    """Share ``total`` samples among chunks in proportion to length, at least 1 each.

    Largest-remainder apportionment (ties go to the earlier chunk). Every chunk gets at least
    one sample because every chunk was worth sending to the teacher, so with more chunks than
    ``total`` the result sums to ``len(chunk_lengths)``: the sum is always
    ``max(total, len(chunk_lengths))`` (``[]`` for no chunks). Chunks too short for a
    proportional share of one are held at 1 and the rest is shared among the others.

    Raises:
        ValueError: a negative length or total.
    """
    if total < 0 or any(n < 0 for n in chunk_lengths):
        raise ValueError("lengths and total must be >= 0")
    count = len(chunk_lengths)
    if count == 0:
        return []
    if total <= count:
        return [1] * count
    weights = chunk_lengths if sum(chunk_lengths) > 0 else [1] * count
    shares = [0] * count
    remaining_total = total
    remaining_weight = sum(weights)
    by_weight = sorted(range(count), key=lambda k: weights[k])
    # Clamp the smallest chunks to 1 while their proportional share is below 1; once one
    # reaches 1 every larger one does too (removing a below-share chunk raises the rate).
    clamped = 0
    while clamped < count - 1 and remaining_total * weights[by_weight[clamped]] < remaining_weight:
        k = by_weight[clamped]
        shares[k] = 1
        remaining_total -= 1
        remaining_weight -= weights[k]
        clamped += 1
    open_ids = by_weight[clamped:]
    remainders = []
    for k in open_ids:
        quota, rest = divmod(remaining_total * weights[k], remaining_weight)
        shares[k] = quota
        remainders.append((-rest, k))
    leftover = remaining_total - sum(shares[k] for k in open_ids)
    for _, k in sorted(remainders)[:leftover]:
        shares[k] += 1
    return shares
