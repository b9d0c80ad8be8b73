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
    "via", "than", "whose", "my", "toward", "towards",
])
# fmt: on
_CITING = re.compile(r"(?:根据|依据|依照|按照|参照|参见|详见|见|适用|和|与|及|或者|或|以及)\s*$")
_LIST_LINE = re.compile(r"^\s*(?:[-*•+]|\d+[.)、]|[(（][0-9一二三四五六七八九十]+[)）]|#+)\s*")
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


def _cut_list_item(lines: list[str]) -> bool:
    """The last item of a list whose other items all end in punctuation ends without any."""
    items = [line for line in lines if _LIST_LINE.match(line)]
    if len(items) < 3 or not _LIST_LINE.match(lines[-1]):
        return False
    last = lines[-1].rstrip(" *_~")
    earlier = [line.rstrip(" *_~")[-1:] for line in items[:-1]]
    return all(ch in _ITEM_END for ch in earlier) and last[-1:].isalpha()


# How an item of a punctuated list ends.
_ITEM_END = set("。；;，,、.")


def _unclosed_markup(last_line: str, prose: str) -> str | None:
    """Inline code, emphasis or a table row the answer opened in its last line and never closed."""
    code_free = re.sub(r"```.*?```", " ", prose, flags=re.DOTALL)
    if code_free.count("`") % 2 == 1 and last_line.count("`") % 2 == 1:
        return "inline code `"
    prose_line = strip_code(last_line)
    # "**bold" opened after a space or a list marker (not "2**10", a power)
    opened = re.search(r"(?:^|[\s(\[-])\*\*(?=\S)(?!.*\*\*)", prose_line)
    if prose_line.count("**") % 2 == 1 and opened:
        return "emphasis **"
    if prose_line.lstrip().startswith("|") and not prose_line.rstrip().endswith("|"):
        return "table row |"
    return None


# A lead-in that promises a statement: "根据《保险法》第六十三条，", "第九条规定，".
_LEAD_IN = re.compile(r"^(?:根据|依据|依照|按照|按|据|对于|关于)|(?:规定|指出|表明|明确)$")


def _opened_sentence(text: str) -> bool:
    """A short text that opened a statement with a lead-in clause and then more than a word
    ("根据《保险法》第六十三条，保险人向第三者行使代"), unlike "二年，自知道之日起" or a list."""
    parts = [squash(p) for p in re.split(r"[，,；;]", text)]
    return len(parts) >= 2 and bool(_LEAD_IN.search(parts[0])) and len(parts[-1]) >= 5


def find_truncation(output: str, finish_reason: str | None = None) -> Finding | None:
    """An answer cut off mid-sentence (or generation stopped at ``max_tokens``).

    Signs: an unclosed code block, bracket, quote, inline code, emphasis or table row; a last
    character or word that cannot end a sentence (",", "的", "and", "the"); no closing
    punctuation in prose; a list whose items end in punctuation but whose last item does not.
    A code block, link, number, table or heading may end an answer without a full stop.
    """
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
    last_line = text.splitlines()[-1]
    if not text.endswith("```"):
        markup = _unclosed_markup(last_line, prose)
        if markup:
            return Finding(f"ends inside an unclosed {markup}")
    tail = re.sub(r"[\s*_~]+$", "", text)
    if not tail:
        return None
    last = tail[-1]
    last_line = tail.splitlines()[-1]
    if last in "，,、：:（(“「《【-—–/&+=" or re.search(r"(?:^|\s)[$€£¥]$", tail):
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
    lang = detect_lang(text)
    words = re.findall(r"[A-Za-z']+", tail[-40:])
    item_words = len(last_line[marker.end() :].split()) if marker else 99
    if re.search(r"(?:^|\s)\d+[.)、]\s*\S+$", tail):
        item_words = 1  # "1. the 2. fox 3. a": a list of words, inline
    dangling = words and tail[-1].isalpha() and words[-1].lower() in _EN_DANGLING
    if lang == "en" and dangling and item_words >= 2:
        return Finding(f"ends mid-sentence after {' '.join(words[-3:])!r}")
    # (A Chinese list item may end in 的: "保险标的".)
    if lang == "zh" and last in _ZH_DANGLING and len(squash(text)) > 20 and not marker:
        return Finding(f"ends mid-sentence after {tail[-6:]!r}")
    lines = [line.rstrip(" *_~") for line in tail.splitlines()]
    lines = [line for line in lines if line.strip()]  # "**" alone is no line of text
    if _cut_list_item(lines):
        return Finding(f"the list's last item is cut: {last_line.strip()[-20:]!r}")
    if marker and len(last_line) < 80:
        return None  # a list item or heading may end without a full stop
    # Lines that mostly end without a full stop are a list or verse: only a dangling word or
    # character at the very end says it was cut.
    unpunctuated_style = (
        len(lines) >= 2 and sum(line[-1] in _TERMINAL for line in lines) < len(lines) / 2
    )
    if lang == "zh":
        if len(squash(text)) <= 20 and "\n" not in text and not _opened_sentence(text):
            return None  # a terse answer ("二年") needs no full stop
        if unpunctuated_style:
            return None
        return Finding(f"no closing punctuation: ends with {tail[-8:]!r}")
    if unpunctuated_style or (len(text.split()) <= 8 and "\n" not in text):
        return None
    return Finding(f"no closing punctuation: ends with {tail[-20:]!r}")
