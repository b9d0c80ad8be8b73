"""Truncation: an answer that stops mid-sentence, or whose generation stopped at ``max_tokens``."""

from __future__ import annotations

import re

from .base import Finding, detect_lang, nfkc, squash, strip_code

# A closing 》 is not an end: "……另外，根据《民法典》" stops mid-sentence.
_TERMINAL = set("。！？!?.…;；」』”’\"')）]】>*`~|}")


_OPENERS = {"(": ")", "【": "】", "[": "]", "《": "》", "“": "”", "「": "」", "『": "』"}


_ZH_DANGLING = set("的和与或及并但而由对在向从将把被其之为是即自至于若则且、，,：:（(“「《【-—")


# fmt: off
_EN_DANGLING = frozenset([
    "the", "a", "an", "of", "to", "and", "or", "but", "in", "on", "for", "with", "by", "from",
    "that", "which", "who", "whom", "whose", "if", "as", "at", "than", "under", "shall", "may",
    "must", "be", "is", "are", "was", "were", "not", "such", "any", "each", "every", "their",
    "its", "his", "her", "our", "your", "into", "upon", "onto", "unless", "until", "because",
    "while", "although", "whether", "nor", "so", "both", "either", "neither", "including",
    "include", "includes", "between", "among", "without", "within", "during", "after", "before",
])


# fmt: on
_CITING = re.compile(r"(?:根据|依据|依照|按照|参照|参见|详见|见|适用|和|与|及|或者|或|以及)\s*$")


_LIST_LINE = re.compile(r"^\s*(?:[-*•+]|\d+[.)、]|[(（][0-9一二三四五六七八九十]+[)）]|#+)\s*")


_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


def find_truncation(output: str, finish_reason: str | None = None) -> Finding | None:
    """An answer cut off mid-sentence (or generation stopped at ``max_tokens``)."""
    if finish_reason == "length":
        return Finding("generation stopped at max_tokens (finish_reason 'length')")
    text = nfkc(output).rstrip()
    if not text:
        return None
    if len(_FENCE.findall(text)) % 2 == 1:
        return Finding("ends inside an unclosed code block")
    prose = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    for opener, closer in _OPENERS.items():
        # More opened than closed, and an opener after the last closer: it stopped inside.
        if prose.count(opener) > prose.count(closer) and prose.rfind(opener) > prose.rfind(closer):
            return Finding(f"ends inside an unclosed {opener}{closer}")
    tail = text.rstrip("*_~ ")
    if not tail:
        return None
    last = tail[-1]
    last_line = tail.splitlines()[-1]
    if last in "，,、：:（(“「《【-—–/&+=":
        return Finding(f"ends with {last!r}")
    # "……另外，根据《民法典》": a title after a preposition opens a clause that never came.
    if last == "》" and _CITING.search(tail[: tail.rfind("《")]):
        return Finding(f"ends mid-sentence after {tail[-12:]!r}")
    marker = _LIST_LINE.match(last_line)
    if marker and not last_line[marker.end() :].strip():
        return Finding(f"ends with an empty list item {last_line.strip()!r}")
    if last in _TERMINAL or last_line.lstrip().startswith("|"):
        return None
    if re.search(r"https?://\S+$|(?:^|\s)#\S+$", tail) or not strip_code(last_line).strip():
        return None  # a link, a hashtag, a line of code
    if marker and len(last_line) < 80:
        return None  # a list item or heading may end without a full stop
    lines = [line.rstrip(" *_~") for line in tail.splitlines() if line.strip()]
    # Lines that mostly end without a full stop are a list or verse: only a dangling word or
    # character at the very end says it was cut.
    unpunctuated_style = (
        len(lines) >= 2 and sum(line[-1] in _TERMINAL for line in lines) < len(lines) / 2
    )
    lang = detect_lang(text)
    if lang == "zh":
        if len(squash(text)) <= 20 and "\n" not in text:
            return None  # a terse answer ("二年") needs no full stop
        if last in _ZH_DANGLING:
            return Finding(f"ends mid-sentence after {tail[-6:]!r}")
        if unpunctuated_style:
            return None
        return Finding(f"no closing punctuation: ends with {tail[-8:]!r}")
    words = re.findall(r"[A-Za-z']+", tail[-40:])
    if words and words[-1].lower() in _EN_DANGLING:
        return Finding(f"ends mid-sentence after {' '.join(words[-3:])!r}")
    if unpunctuated_style or (len(text.split()) <= 8 and "\n" not in text):
        return None
    return Finding(f"no closing punctuation: ends with {tail[-20:]!r}")
