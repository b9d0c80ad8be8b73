"""Small text helpers shared by every folder: counts in words, comparison keys."""

from __future__ import annotations

import re
import unicodedata

_WHITESPACE_RUN = re.compile(r"\s+")


def plural(n: int, singular: str, plural: str | None = None) -> str:
    """``"1 slice"``, ``"2 slices"``: a count and its noun, for messages users read."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def casefold_spaced(text: str) -> str:
    """NFKC, casefolded, every run of whitespace one space: names that differ only so compare equal.

    ``selection.dedup.casefold_compact`` drops the spaces and punctuation too (for n-grams).
    """
    return _WHITESPACE_RUN.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def fix_surrogates(text: str) -> str:
    """Join valid surrogate pairs and replace lone surrogates with U+FFFD."""
    if not _SURROGATE_RE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
