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
    """Why a check failed: a one-line reason, details for annotations, and how sure it is.

    ``certain``: the evidence is structural (the source states another value in the same words,
    a provision the named document lacks); a gate drops on it. Otherwise the finding is a
    suspicion (a figure merely absent, a weak alignment, an inference from word overlap) that a
    gate may pass on to the judges instead (``on_suspect``).
    """

    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    certain: bool = True


def detect_lang(*texts: str) -> str:
    """'zh' when the first text with enough letters is mostly CJK, else 'en'."""
    for text in texts:
        lang = _lang_of(text[:3000])
        if lang is not None:
            return lang
    return "en"


@lru_cache(maxsize=256)
def _lang_of(text: str) -> str | None:
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


_FENCED_CODE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)
# A heading underlined with tildes (reStructuredText: "Retrying code block\n~~~~~~~~~~") is no
# code fence: a line of only tildes, as long as the line of text above it, outside any fence.
_FENCE_LINE = re.compile(r"^[ \t]*(```|~~~)")
_TILDES_ONLY = re.compile(r"^[ \t]*~{3,}[ \t]*$")


def unfence_underlines(text: str) -> str:
    """``text`` with tilde heading underlines turned into dashes (same length, same offsets)."""
    if "~~~" not in text:
        return text
    lines = text.split("\n")
    fence: str | None = None
    for i, line in enumerate(lines):
        m = _FENCE_LINE.match(line)
        if m is None:
            continue
        if fence is not None:
            if m.group(1) == fence:
                fence = None
            continue
        # reStructuredText wants an underline as long as its title; a fence is three tildes
        title = lines[i - 1].strip() if i > 0 else ""
        if _TILDES_ONLY.match(line) and title and len(line.strip()) >= len(title):
            lines[i] = line.replace("~", "-")
            continue
        fence = m.group(1)
    return "\n".join(lines)


_INLINE_CODE = re.compile(r"`[^`\n]+`")


# Lines of code outside fences (SQL, Python, shell, C-like): they say nothing of the language.
_CODE_LINE = re.compile(
    r"^\s*(?:(?:SELECT|WITH|FROM|WHERE|GROUP\s+BY|ORDER\s+BY|HAVING|LIMIT|(?:LEFT\s+|INNER\s+)?JOIN"
    r"|UNION|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP)\b|def |class |import |from \S+ import "
    r"|return\b|#include|function |const |let |var |\$ |>>> |[{}\]);]+\s*$).*$",
    re.MULTILINE,
)


_SYMBOLS = re.compile(r"[(){};=<>\[\]]")


def strip_code(text: str) -> str:
    """``text`` without fenced blocks, inline code and lines that look like code."""
    text = _FENCED_CODE.sub(" ", unfence_underlines(text))
    text = _INLINE_CODE.sub(" ", text)
    text = _CODE_LINE.sub(" ", text)
    lines = [line for line in text.splitlines() if not _looks_like_code(line)]
    return "\n".join(lines)


_WORD = re.compile(r"[A-Za-z]{2,}")


def _looks_like_code(line: str) -> bool:
    """Brackets, semicolons and '=' dense among few words; a sentence with a parenthesis and a
    semicolon ("(except in time of war); bars …") is prose."""
    symbols = len(_SYMBOLS.findall(line))
    if symbols < 3 or _CJK_RE.search(line):
        return False
    return symbols >= 0.25 * len(_WORD.findall(line))


def cjk_ratio(text: str) -> tuple[float, int]:
    """(CJK characters / (CJK characters + Latin letters), how many were counted)."""
    cjk = len(_CJK_RE.findall(text))
    latin = len(_LATIN_RE.findall(unicodedata.normalize("NFKC", text)))
    total = cjk + latin
    return (cjk / total if total else 0.0), total


# CJK unified ideographs (with extension A and compatibility ideographs) and kana.
_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"


_CJK_RE = re.compile(f"[{_CJK_CLASS}]")


_LATIN_RE = re.compile(r"[A-Za-z]")
