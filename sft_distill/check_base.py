"""What the deterministic sample checks share: the Finding type, language, text normal forms."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .numerals import normalize_numerals

# CJK unified ideographs and extension A (what Chinese words are made of).
CJK = "\u3400-\u4dbf\u4e00-\u9fff"


@dataclass(frozen=True)
class Finding:
    """Why a check failed: a one-line reason, and details for annotations."""

    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def detect_lang(*texts: str) -> str:
    """'zh' when the first text with enough letters is mostly CJK, else 'en'."""
    for text in texts:
        lang = _lang_of(text[:3000])
        if lang is not None:
            return lang
    return "en"


@lru_cache(maxsize=256)
def _lang_of(text: str) -> str | None:
    # Imported here: rule_gates imports this module (for strip_quoted).
    from .rule_gates import cjk_ratio

    ratio, counted = cjk_ratio(text)
    if counted < 10:
        return None
    return "zh" if ratio >= 0.3 else "en"


def nfkc(text: str) -> str:
    """NFKC form: full-width letters, digits and punctuation become ASCII."""
    return unicodedata.normalize("NFKC", text)


_NON_WORD = re.compile(r"[\W_]+")


def squash(text: str) -> str:
    """NFKC, case-folded, without whitespace, punctuation or symbols."""
    return _NON_WORD.sub("", nfkc(text).casefold())


@lru_cache(maxsize=256)
def normalized(text: str) -> str:
    """``normalize_numerals(text, ordinals=True)``, cached: a chunk serves many samples."""
    return normalize_numerals(text, ordinals=True)


# Quoted speech: text in quotation marks is someone else's words, not the answer's own voice.
_QUOTED = re.compile(r"“[^”\n]{0,200}”|「[^」\n]{0,200}」|『[^』\n]{0,200}』|\"[^\"\n]{0,200}\"")


def strip_quoted(text: str) -> str:
    """``text`` with quoted spans (“…”, 「…」, "…") emptied, unless it is all one quote."""
    stripped = text.strip()
    for m in _QUOTED.finditer(stripped):
        if m.start() == 0 and m.end() == len(stripped):
            return text
    return _QUOTED.sub("“”", text)
