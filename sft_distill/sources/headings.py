"""Where a chunk sits in its slice: title, heading path, article units, sample density, coverage.

Pure and fast (one pass over the lines, no I/O), for Chinese and English text:

- ``slice_title``: ``metadata.title`` (or ``name``/``标题``), else the document's first heading.
- ``find_headings`` / ``heading_path_at`` / ``heading_paths``: markdown ``#`` headings, Chinese
  structural lines (第X编/分编/章/节, 一、…), English ``Part/Chapter/Article/Section/Amendment``
  lines and RST/setext underlined titles; the path is the stack of headings above an offset.
- ``find_articles``: the article units of legal text (第X条, ``Article N``, ``Section N``/``§ N``,
  amendments); ``find_article_refs`` reads the articles a sample cites, in any of those forms.
- ``samples_for_chunk``: how many samples a chunk gets under a density setting.
- ``article_coverage``: the share of a source's articles cited (or quoted) by kept samples.
- ``format_context_header``: the one-line "资料：《…》 › 第二章 … › 第三节 …" shown to the teacher.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "Article",
    "ArticleRef",
    "Coverage",
    "Heading",
    "article_coverage",
    "chunk_starts",
    "cn_to_int",
    "find_article_refs",
    "find_articles",
    "find_headings",
    "format_context_header",
    "heading_path_at",
    "heading_paths",
    "is_article_structured",
    "samples_for_chunk",
    "slice_title",
]

# ---------------------------------------------------------------------------------------------
# Numbers

_CN_DIGITS = {
    "零": 0, "〇": 0, "○": 0, "一": 1, "壹": 1, "二": 2, "贰": 2, "两": 2, "三": 3, "叁": 3,
    "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "八": 8, "捌": 8,
    "九": 9, "玖": 9,
}  # fmt: skip
_CN_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
# Characters a number may be written with: Arabic (ASCII or full width) or Chinese numerals.
_CN_NUM = "[0-9０-９零〇○一二三四五六七八九十百千万亿两壹贰叁肆伍陆柒捌玖拾佰仟]+"
_ROMAN = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
_EN_NUM = r"(?:\d+|[IVXLCDM]+)(?![\w])"


def cn_to_int(text: str) -> int:
    """Parse a Chinese or Arabic numeral: "一百零五" -> 105, "十五" -> 15, "１０５" -> 105.

    Accepts 十/百/千/万/亿 with or without a leading 一, 零/〇 gaps ("一千零一"), 两, financial
    forms (壹贰…拾佰仟), digit-by-digit forms ("一〇五"), ASCII and full-width digits, and the
    colloquial elision "一百一" = 110.

    Raises:
        ValueError: empty text or anything that is not a well-formed numeral.
    """
    s = unicodedata.normalize("NFKC", text).strip()
    if not s:
        raise ValueError("empty numeral")
    if s.isascii() and s.isdigit():
        return int(s)
    if all(c in _CN_DIGITS or (c.isascii() and c.isdigit()) for c in s):
        # Positional, digit by digit: "一〇五".
        return int("".join(str(_CN_DIGITS[c]) if c in _CN_DIGITS else c for c in s))
    total = 0
    section = 0  # the value below the current 万/亿 group
    digit: int | None = None
    last_unit = 0  # the previous unit in this group, to reject "十百" and resolve "一百一"
    zero_gap = False
    for c in s:
        if c in _CN_DIGITS:
            d = _CN_DIGITS[c]
            if digit is not None:
                raise ValueError(f"not a numeral: {text!r}")
            if d == 0:
                zero_gap = True
                continue
            digit = d
        elif c in _CN_UNITS:
            unit = _CN_UNITS[c]
            if last_unit and unit >= last_unit:
                raise ValueError(f"not a numeral: {text!r}")
            section += (1 if digit is None else digit) * unit
            digit, last_unit, zero_gap = None, unit, False
        elif c in _CN_BIG:
            big = _CN_BIG[c]
            section += digit or 0
            if section == 0:
                raise ValueError(f"not a numeral: {text!r}")
            total += section * big
            section, digit, last_unit, zero_gap = 0, None, 0, False
        else:
            raise ValueError(f"not a numeral: {text!r}")
    if digit is not None:
        # "一百一" means 110; "一百零一" (zero gap) and "十一" mean the digit itself.
        section += digit * last_unit // 10 if last_unit >= 100 and not zero_gap else digit
    return total + section


def _roman_to_int(s: str) -> int | None:
    """An uppercase Roman numeral's value, or None if s is not one."""
    if not s or not _ROMAN.fullmatch(s):
        return None
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for i, c in enumerate(s):
        v = values[c]
        total += -v if i + 1 < len(s) and values[s[i + 1]] > v else v
    return total


def _int_to_roman(n: int) -> str:
    """14 -> "XIV" (1 to 3999)."""
    out = []
    for value, sym in (
        (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
        (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
    ):  # fmt: skip
        count, n = divmod(n, value)
        out.append(sym * count)
    return "".join(out)


def _en_number(s: str) -> int | None:
    """Arabic or Roman numeral to int, None if neither."""
    return int(s) if s.isdigit() else _roman_to_int(s)


_ORD_ONES = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")
_ORD_SMALL = {w: i + 1 for i, w in enumerate(_ORD_ONES)} | {
    w: i + 10
    for i, w in enumerate(
        ("tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
         "seventeenth", "eighteenth", "nineteenth")
    )
}  # fmt: skip
_ORD_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
_ORD_TENTHS = {"twentieth": 20, "thirtieth": 30, "fortieth": 40, "fiftieth": 50}
_ORD_WORD = (
    r"(?:(?:twenty|thirty|forty|fifty)[- ]?(?:" + "|".join(_ORD_ONES) + r")"
    r"|twentieth|thirtieth|fortieth|fiftieth|"
    + "|".join(sorted(_ORD_SMALL, key=len, reverse=True))
    + r"|\d+(?:st|nd|rd|th))\b"
)


def _ordinal_to_int(word: str) -> int | None:
    """ "Fourteenth" -> 14, "twenty-first" -> 21, "14th" -> 14; None if not an ordinal."""
    w = word.lower().replace(" ", "-")
    if w[:-2].isdigit() and w[-2:] in ("st", "nd", "rd", "th"):
        return int(w[:-2])
    if w in _ORD_SMALL:
        return _ORD_SMALL[w]
    if w in _ORD_TENTHS:
        return _ORD_TENTHS[w]
    tens, _, ones = w.partition("-")
    if tens not in _ORD_TENS:
        for t in _ORD_TENS:  # "twentyfirst"
            if w.startswith(t):
                tens, ones = t, w[len(t) :]
                break
    if tens in _ORD_TENS and ones in _ORD_SMALL and _ORD_SMALL[ones] < 10:
        return _ORD_TENS[tens] + _ORD_SMALL[ones]
    return None


# ---------------------------------------------------------------------------------------------
# Lines


@dataclass(frozen=True)
class _Line:
    start: int
    end: int  # end of the line's text, newline excluded
    text: str
    in_code: bool  # inside a fenced code block: never a heading or article


_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


def _is_rst_tildes(raw: list[str], i: int) -> bool:
    """Is raw[i], a line of tildes, an RST title adornment rather than a ~~~ code fence?"""
    if raw[i].strip().strip("~"):
        return False  # "~~~ python" has an info string: a fence
    width = len(raw[i].strip())

    def titled(j: int) -> bool:
        t = raw[j].strip() if 0 <= j < len(raw) else ""
        return bool(t) and not t.startswith("~") and len(t) <= width + 2

    # "Title\n~~~~~" underlines the line above; "~~~~~\nTitle\n~~~~~" overlines the one below.
    if titled(i - 1):
        return True
    return titled(i + 1) and i + 2 < len(raw) and raw[i + 2].strip() == raw[i].strip()


@lru_cache(maxsize=16)
def _lines(text: str) -> tuple[_Line, ...]:
    """The lines of text with offsets, marking fenced code blocks (``` or ~~~)."""
    raw = text.split("\n")
    out: list[_Line] = []
    fence: str | None = None
    pos = 0
    for i, full in enumerate(raw):
        line = full[:-1] if full.endswith("\r") else full
        m = _FENCE.match(line)
        if fence is None:
            if m and not (m.group(1)[0] == "~" and _is_rst_tildes(raw, i)):
                fence = m.group(1)
            out.append(_Line(pos, pos + len(line), line, fence is not None))
        else:
            out.append(_Line(pos, pos + len(line), line, True))
            # A closing fence: the same mark, at least as long, nothing after it.
            closes = m is not None and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)
            if closes and m is not None and not line[m.end() :].strip():
                fence = None
        pos += len(full) + 1
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Headings


@dataclass(frozen=True)
class Heading:
    """A heading line: where it starts, its level (1 = top) and its cleaned text."""

    start: int
    end: int
    level: int
    text: str
    kind: str  # "markdown", "rst", "zh", "en"


_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t\u2002\u3000]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_ADORNMENT = re.compile(r"([=\-~^\"'`#*+:._])\1{2,}[ \t]*$")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
# "1. Article I" -> "Article I"; "14. XIV Fourteenth Amendment" -> "Fourteenth Amendment".
_LEADING_ENUM = re.compile(
    r"^\d+\.\s+(?:(?=(?i:part|chapter|article|section|amendment|title)\b)"
    r"|[IVXLCDM]+\s+(?=[A-Z][a-z]+(?:-[a-z]+)?\s+Amendment\b))"
)
# Chinese structural headings; ranks order them when no markdown level is given.
_ZH_RANK = {"篇": 1, "编": 1, "部分": 1, "分编": 2, "章": 3, "节": 4}
_ZH_HEADING = re.compile(rf"第[ \t]*({_CN_NUM})[ \t]*(分编|编|部分|篇|章|节)(.*)$")
_ZH_ENUM_HEADING = re.compile(r"([一二三四五六七八九十]{1,3})、[ \t\u3000]*(.{1,25})$")
_ZH_ENUM_RANK = 5
_EN_RANK = {
    "part": 1, "title": 1, "subpart": 2, "chapter": 3, "article": 3, "amendment": 3,
    "section": 4, "sec.": 4, "§": 4,
}  # fmt: skip
_EN_HEADING = re.compile(
    r"(?P<kw>(?i:subpart|part|title|chapter|article|amendment|section|sec\.|§))[ \t]*"
    rf"(?P<num>{_EN_NUM})\.?(?P<rest>.*)$"
)
# Punctuation that makes a line a sentence rather than a title.
_SENTENCE_PUNCT = re.compile(r"[。；;，,！？!?]|：.|:\s")
_TITLE_MAX = 80


def _clean(s: str) -> str:
    """Heading text for display: links reduced, emphasis and runs of spaces removed."""
    s = _MD_LINK.sub(r"\1", s)
    s = s.replace("**", "").replace("__", "").replace("`", "")
    s = re.sub(r"\s+", " ", s).strip()
    return _LEADING_ENUM.sub("", s)


def _zh_structural(line: str) -> tuple[int, str] | None:
    """(rank, text) if line is a Chinese 第X编/分编/章/节 or 一、 heading on its own."""
    s = line.strip().strip("*").strip()
    m = _ZH_HEADING.match(s)
    if m:
        rest = m.group(3)
        title = rest.strip().lstrip(":：").strip()
        if len(s) > 50 or _SENTENCE_PUNCT.search(title) or "第" in title[:1]:
            return None
        # Without a space, "第三节规定的…" is a sentence, not "第三节 规定…".
        if (
            title
            and rest[:1] not in (" ", "\t", "\u2002", "\u3000", ":", "：")
            and (title.startswith(("规定", "所", "的", "中", "和", "及", "或", "至", "、")))
        ):
            return None
        return _ZH_RANK[m.group(2)], s
    m = _ZH_ENUM_HEADING.match(s)
    if m and not _SENTENCE_PUNCT.search(m.group(2)) and not m.group(2).endswith("："):
        return _ZH_ENUM_RANK, s
    return None


def _en_structural(line: str) -> tuple[int, str] | None:
    """(rank, text) if line is an English Part/Chapter/Article/Section/Amendment heading."""
    s = line.strip().strip("*").strip()
    m = _EN_HEADING.match(s)
    if not m or len(s) > _TITLE_MAX or _en_number(m.group("num")) is None:
        return None
    rest = m.group("rest").strip().strip("*").strip()
    if rest:
        sep = rest[0] in ".:-–—"
        title = rest.lstrip(".:-–—").strip()
        if not sep and not (title[:1].isupper() or title[:1] in "\"'“("):
            return None  # "Article 5 of the GDPR …" is a reference
        if title.endswith((".", ";", ",", ":")) or ". " in title:
            return None
    return _EN_RANK[m.group("kw").lower()], s


# Insurance clauses title their parts with a bare short line before an article
# ("总则" / "保险责任" / "责任免除", then "第五条…"): such a line is a heading at 章 rank.
_CLAUSE_SECTION = re.compile(r"[\u4e00-\u9fff（）()、 \u3000]{2,15}")
_CLAUSE_SECTION_RANK = 3


def _is_clause_section(lines: tuple[_Line, ...], i: int) -> bool:
    """Is lines[i] a short bare title between a blank line and a 第X条 article start?"""
    s = lines[i].text.strip()
    if not _CLAUSE_SECTION.fullmatch(s) or s.startswith("第"):
        return False
    if i > 0 and lines[i - 1].text.strip():
        return False
    for nxt in lines[i + 1 :]:
        if nxt.text.strip():
            return not nxt.in_code and _ZH_ARTICLE.match(nxt.text) is not None
    return False


def _is_title_line(line: _Line) -> bool:
    """Could this line be the text of an RST/setext title?"""
    s = line.text
    return (
        not line.in_code
        and bool(s.strip())
        and not s[:1].isspace()
        and not _ADORNMENT.match(s)
        and not s.startswith((".. ", "- ", "* ", "|"))
        and len(s.strip()) <= _TITLE_MAX
    )


@lru_cache(maxsize=16)
def _headings(text: str) -> tuple[Heading, ...]:
    lines = _lines(text)
    out: list[Heading] = []
    rst_levels: dict[tuple[str, bool], int] = {}
    skip_to = -1
    for i, line in enumerate(lines):
        if i <= skip_to or line.in_code:
            continue
        m = _ATX.match(line.text)
        if m:
            title = _clean(m.group(2) or "")
            if title:
                out.append(Heading(line.start, line.end, len(m.group(1)), title, "markdown"))
            continue
        # RST / setext: a title line underlined (optionally overlined) with one repeated mark.
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        if nxt is not None and _is_title_line(line) and not nxt.in_code:
            u = _ADORNMENT.match(nxt.text)
            prev = lines[i - 1] if i > 0 else None
            over = prev is not None and prev.text.rstrip() == nxt.text.rstrip()
            prev_blank = prev is None or not prev.text.strip() or over
            if u and prev_blank and len(nxt.text.strip()) >= min(3, len(line.text.strip())):
                style = (u.group(1), over)
                level = rst_levels.setdefault(style, len(rst_levels) + 1)
                start = prev.start if over and prev is not None else line.start
                out.append(Heading(start, nxt.end, level, _clean(line.text), "rst"))
                skip_to = i + 1
                continue
        zh = _zh_structural(line.text)
        if zh:
            out.append(Heading(line.start, line.end, zh[0], _clean(zh[1]), "zh"))
            continue
        if _is_clause_section(lines, i):
            out.append(Heading(line.start, line.end, _CLAUSE_SECTION_RANK, _clean(line.text), "zh"))
            continue
        en = _en_structural(line.text)
        if en:
            out.append(Heading(line.start, line.end, en[0], _clean(en[1]), "en"))
    return tuple(out)


def find_headings(text: str) -> list[Heading]:
    """Every heading of text in order (outside fenced code), with its level and clean text.

    Levels: markdown's own (``#`` = 1 … ``######`` = 6); RST/setext titles by the order their
    underline styles first appear; otherwise a rank: 篇/编/部分 1, 分编 2, 章 3, 节 4, 一、 5;
    Part/Title 1, Subpart 2, Chapter/Article/Amendment 3, Section/§ 4.
    """
    return list(_headings(text))


def _push(stack: list[Heading], h: Heading) -> None:
    """Put h on the path: a same-or-higher level closes the deeper headings first."""
    while stack and stack[-1].level >= h.level:
        stack.pop()
    stack.append(h)


def heading_path_at(text: str, offset: int) -> list[str]:
    """The headings above offset, outermost first (a heading starting at offset counts)."""
    heads = _headings(text)
    count = bisect.bisect_right([h.start for h in heads], offset)
    stack: list[Heading] = []
    for h in heads[:count]:
        _push(stack, h)
    return [h.text for h in stack]


def heading_paths(text: str, offsets: Sequence[int]) -> list[list[str]]:
    """heading_path_at for many offsets (e.g. every chunk start) in one pass over the headings."""
    heads = _headings(text)
    order = sorted(range(len(offsets)), key=lambda k: offsets[k])
    out: list[list[str]] = [[] for _ in offsets]
    stack: list[Heading] = []
    j = 0
    for k in order:
        while j < len(heads) and heads[j].start <= offsets[k]:
            _push(stack, heads[j])
            j += 1
        out[k] = [h.text for h in stack]
    return out


def chunk_starts(text: str, chunks: Sequence[str]) -> list[int]:
    """Offsets of chunks in text; chunks are in-order substrings, as split_text returns them."""
    out: list[int] = []
    pos = 0
    for chunk in chunks:
        at = text.find(chunk, pos)
        if at < 0:
            raise ValueError("chunk is not a substring of the text after the previous chunk")
        out.append(at)
        pos = at + len(chunk)
    return out


# ---------------------------------------------------------------------------------------------
# Titles

_TITLE_KEYS = ("title", "name", "标题")
_TITLE_SCAN_LINES = 5
_ZH_DOC_SUFFIX = re.compile(
    r"(?:法|法典|典|编|条例|规定|办法|细则|条款|解释|决定|通知|意见|协议|合同|章程|政策|须知|"
    r"告知书|说明书|规则|准则|指引|公约|宪法)(?:[（(][^）)]{1,20}[）)])?$"
)


def _is_doc_name(s: str) -> bool:
    """Does a first line look like a document's name (《…》, 中华人民共和国…, …法/条例/条款)?"""
    if len(s) > 60 or _SENTENCE_PUNCT.search(s):
        return False
    return (s.startswith("《") and s.endswith("》")) or bool(
        re.search(r"[\u4e00-\u9fff]", s)
        and (s.startswith("中华人民共和国") or _ZH_DOC_SUFFIX.search(s))
    )


def slice_title(content: str, metadata: Mapping[str, Any] | None = None) -> str | None:
    """The slice's title: metadata title/name/标题, else its first heading or name line, or None.

    Without metadata: the first ``#`` heading in the first 2,000 characters, else among the
    first five non-empty lines a 《…》 line, a Chinese document name ("中华人民共和国…",
    "…条例", "…保险条款"), or a heading that opens the text (e.g. an RST title).
    """
    if metadata:
        for key in _TITLE_KEYS:
            v = metadata.get(key)
            if isinstance(v, str) and v.strip():
                return _clean(v)
    head = content[:2000]
    heads = _headings(head)
    for h in heads:
        if h.kind == "markdown" and h.level == 1:
            return h.text
    first_lines = [ln for ln in _lines(head) if ln.text.strip() and not ln.in_code]
    for ln in first_lines[:_TITLE_SCAN_LINES]:
        s = _clean(ln.text)
        if _is_doc_name(s):
            return s[1:-1] if s.startswith("《") and s.endswith("》") else s
    if heads and first_lines and heads[0].start <= first_lines[0].start:
        return heads[0].text
    return None


# ---------------------------------------------------------------------------------------------
# Articles


@dataclass(frozen=True)
class Article:
    """An article unit of legal text: 第一百零五条, Article 5, Section 8, the Fifth Amendment.

    ``start`` is where its line starts, ``end`` where the next article or heading starts.
    ``kind`` is "条", "article", "section" or "amendment"; ``sub`` is 1 for 第十条之一;
    ``parent`` is the enclosing Article's number for sections of a multi-article text.
    """

    label: str
    number: int
    start: int
    end: int
    kind: str = "条"
    sub: int = 0
    parent: int | None = None


# 第X条 at a line start, unless what follows makes it a reference ("第十条规定…", "第十条第二款…").
_ZH_ARTICLE = re.compile(
    rf"[ \t\u3000]*(?:#{{1,6}}[ \t]*)?(?:\*\*|__)?[ \t]*(第[ \t]*({_CN_NUM})[ \t]*条"
    rf"(?:之({_CN_NUM}))?)(?:\*\*|__)?"
    r"(?![ \t]*(?:规定|所称|所列|所述|所指|之|[、，,。]|[和及或与至到][ \t]*第"
    rf"|修改|删去|删除|增加|改为|第[ \t]*{_CN_NUM}[ \t]*[款项目]|[-—~～]))"
)
_EN_ARTICLE = re.compile(
    r"[ \t]*(?:#{1,6}[ \t]+)?(?:\d+\.[ \t]+)?(?:\*\*|__)?"
    rf"(?P<kw>(?i:article|art\.|section|sec\.|§))[ \t]*(?P<num>{_EN_NUM})(?!\.\d)"
    r"(?:\*\*|__)?(?P<after>.*)$"
)
_EN_AMENDMENT = re.compile(
    r"[ \t]*(?:#{1,6}[ \t]+)?(?:\d+\.[ \t]+)?(?:(?:\*\*)?[IVXLCDM]+(?:\*\*)?[ \t]+)?"
    rf"(?:(?P<ord>(?i:{_ORD_WORD}))[ \t]+(?i:amendment)\b"
    rf"|(?i:amendment)[ \t]+(?P<num>{_EN_NUM}))"
)
_EN_KIND = {"article": "article", "art.": "article", "section": "section", "sec.": "section"}
_EN_KIND["§"] = "section"
_MIN_ARTICLES = 3


def _en_article_start(line: str) -> tuple[str, int, str] | None:
    """(kind, number, numeral as written) if an English line opens an article/section/amendment."""
    m = _EN_ARTICLE.match(line)
    if m:
        number = _en_number(m.group("num"))
        after = m.group("after").strip().lstrip("*").strip()
        starts_unit = not after or after[0] in ".:-–—)" or after[0].isupper() or after[0] in "\"'“("
        if number is not None and starts_unit:
            return _EN_KIND[m.group("kw").lower()], number, m.group("num")
        return None
    m = _EN_AMENDMENT.match(line)
    # Only a short heading-like line opens an amendment; prose mentioning one does not.
    if m and len(line.strip()) <= 60 and not line.rstrip().endswith("."):
        if m.group("ord"):
            number = _ordinal_to_int(m.group("ord"))
            # Amendments are numbered in Roman numerals.
            return ("amendment", number, _int_to_roman(number)) if number else None
        number = _en_number(m.group("num"))
        if number is not None:
            return "amendment", number, m.group("num")
    return None


@lru_cache(maxsize=16)
def _articles(text: str) -> tuple[Article, ...]:
    lines = _lines(text)
    zh: list[tuple[_Line, str, int, int]] = []
    en: list[tuple[_Line, str, int, str]] = []
    for line in lines:
        if line.in_code or not line.text.strip():
            continue
        m = _ZH_ARTICLE.match(line.text)
        if m:
            try:
                number = cn_to_int(m.group(2))
                sub = cn_to_int(m.group(3)) if m.group(3) else 0
            except ValueError:
                continue
            zh.append((line, re.sub(r"\s+", "", m.group(1)), number, sub))
            continue
        found = _en_article_start(line.text)
        if found:
            en.append((line, *found))
    if not zh and not en:
        return ()
    counts = {k: sum(1 for e in en if e[1] == k) for k in ("amendment", "article", "section")}
    # The unit is the most frequent kind; ties go to the finer one (Section under Article).
    best = max(("amendment", "article", "section"), key=lambda k: (counts[k], k == "section"))
    starts: list[tuple[_Line, str, int, int, int | None]] = []
    kind = best
    if len(zh) >= counts[best]:
        kind = "条"
        starts = [(ln, label, n, sub, None) for ln, label, n, sub in zh]
    else:
        parents = [(ln.start, n, raw) for ln, k, n, raw in en if k == "article"]
        parent_starts = [p[0] for p in parents]
        multi = len({p[1] for p in parents}) > 1
        for ln, k, n, raw in en:
            if k != best:
                continue
            label = f"{k.capitalize()} {raw}"
            parent = None
            above = bisect.bisect_left(parent_starts, ln.start)
            if best == "section" and above:
                _, parent, parent_raw = parents[above - 1]
                if multi:
                    label = f"Article {parent_raw}, {label}"
            starts.append((ln, label, n, 0, parent))
    # A structural heading between two articles (## 第二章 …) ends the first one; an
    # enumerated "一、…" title inside an article (a clause's definitions) does not.
    head_starts = [h.start for h in _headings(text) if h.kind != "zh" or h.level < _ZH_ENUM_RANK]
    out: list[Article] = []
    for idx, (ln, label, n, sub, parent) in enumerate(starts):
        end = starts[idx + 1][0].start if idx + 1 < len(starts) else len(text)
        h = bisect.bisect_right(head_starts, ln.end)
        if h < len(head_starts) and head_starts[h] < end:
            end = head_starts[h]
        end = _content_end(text, ln.start, end)
        out.append(Article(label, n, ln.start, end, kind, sub, parent))
    return tuple(out)


def _content_end(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def find_articles(text: str) -> list[Article]:
    """The article units of text, in text order.

    Chinese: 第X条 (Chinese or Arabic numerals, 第十条之一) at a line start, also bold or as a
    markdown heading; a line starting with a reference ("第十条规定…", "第十条第二款…") is not one.
    English: ``Article N``/``Art. N``, ``Section N``/``Sec. N``/``§ N`` at a line start when
    followed by a title, a capital or punctuation (not "Section 2 of this Act"), and heading
    lines naming an amendment ("Amendment XIV", "14. **XIV** Fourteenth Amendment"). When
    several English kinds occur, the most frequent one is the unit (sections of Article I).
    """
    return list(_articles(text))


def is_article_structured(text: str, *, min_articles: int = _MIN_ARTICLES) -> bool:
    """Whether text is organised in articles (at least min_articles of them)."""
    return len(_articles(text)) >= min_articles


# ---------------------------------------------------------------------------------------------
# Article references


@dataclass(frozen=True)
class ArticleRef:
    """An article a text cites: kind ("条", "article", "section", "amendment"), number, sub."""

    kind: str
    number: int
    sub: int = 0
    parent: int | None = None


_RANGE_SEP = r"(?:至|到|-|－|—|–|~|～)"
_LIST_SEP = r"(?:[、，,]|和|及|或|与)"
_ZH_REF = re.compile(
    rf"第[ \t]*(?P<nums>{_CN_NUM}(?:[ \t]*(?:{_RANGE_SEP}|{_LIST_SEP})[ \t]*第?[ \t]*{_CN_NUM})*)"
    rf"[ \t]*条(?:之(?P<sub>{_CN_NUM}))?"
)
_ZH_REF_TOKEN = re.compile(rf"({_CN_NUM})|({_RANGE_SEP})")
# A list or range needs a plural keyword ("Articles 5 and 6", "§§ 3-5"), so the "2018" of
# "Article 5, 2018" is not read as a citation.
_EN_REF = re.compile(
    r"(?:(?P<kwp>\b(?i:articles|arts\.|sections|secs\.|amendments)|§§)[ \t]*"
    rf"(?P<nums>{_EN_NUM}(?:[ \t]*(?:,|&|\band\b|\bor\b|\bto\b|\bthrough\b|\bthru\b|-|–|—)"
    rf"[ \t]*{_EN_NUM})*)"
    rf"|(?P<kw>\b(?i:article|art\.|section|sec\.|amendment)|§)[ \t]*(?P<num>{_EN_NUM}))"
)
_EN_REF_TOKEN = re.compile(rf"({_EN_NUM})|(\bto\b|\bthrough\b|\bthru\b|-|–|—)")
_EN_ORD_REF = re.compile(
    rf"\b(?P<ords>(?i:{_ORD_WORD})(?:[ \t]*(?:,|\band\b|\bor\b)[ \t]*(?i:{_ORD_WORD}))*)"
    r"[ \t]+(?i:amendments?)\b"
)
_EN_REF_KIND = {"art": "article", "sec": "section", "ame": "amendment", "§": "section"}
_MAX_RANGE = 200  # a longer "range" is a misread, not 200 citations
_BETWEEN_RANGE = re.compile(rf"[ \t]*{_RANGE_SEP}[ \t]*")
_BETWEEN_PARENT = re.compile(r"[ \t]*,?[ \t]*(?:cl\.|clause)?[ \t]*$")


def _expand(tokens: Iterable[tuple[str, str]], parse: Any) -> list[int]:
    """Numbers of a "105、106至108" token list: a range separator fills in the numbers between."""
    out: list[int] = []
    pending_range = False
    for num, sep in tokens:
        if sep:
            pending_range = bool(out)
            continue
        value = parse(num)
        if value is None:
            continue
        if pending_range and out and 0 < value - out[-1] <= _MAX_RANGE:
            out.extend(range(out[-1] + 1, value))
        out.append(value)
        pending_range = False
    return out


def _safe_cn(s: str) -> int | None:
    try:
        return cn_to_int(s)
    except ValueError:
        return None


def find_article_refs(text: str) -> list[ArticleRef]:
    """The articles text cites, each once per mention, ranges and lists expanded.

    "第105条第二款" -> 105; "第一百零五条、第一百零六条", "第105、106条" -> 105, 106;
    "第105至107条", "第105-107条", "第105条至第107条" -> 105, 106, 107; "第十条之一" -> 10 sub 1;
    "Article 105", "Art. 105", "Articles 5 and 6", "Section 8", "§§ 3-5", "Article I, Section 8"
    (section 8 whose parent is 1), "Fourteenth Amendment", "Amendment XIV".
    """
    found: list[tuple[int, int, list[ArticleRef]]] = []
    for m in _ZH_REF.finditer(text):
        nums = _expand(_ZH_REF_TOKEN.findall(m.group("nums")), _safe_cn)
        sub = _safe_cn(m.group("sub")) if m.group("sub") else 0
        refs = [ArticleRef("条", n) for n in nums]
        if refs and sub:
            refs[-1] = ArticleRef("条", refs[-1].number, sub)
        found.append((m.start(), m.end(), refs))
    for m in _EN_REF.finditer(text):
        kw = (m.group("kwp") or m.group("kw")).lower()
        kind = _EN_REF_KIND.get(kw[:3], _EN_REF_KIND.get(kw[:1], "section"))
        if m.group("num"):
            one = _en_number(m.group("num"))
            nums = [one] if one is not None else []
        else:
            nums = _expand(_EN_REF_TOKEN.findall(m.group("nums")), _en_number)
        found.append((m.start(), m.end(), [ArticleRef(kind, n) for n in nums]))
    for m in _EN_ORD_REF.finditer(text):
        ords = re.findall(rf"(?i:{_ORD_WORD})", m.group("ords"))
        nums = [n for n in (_ordinal_to_int(o) for o in ords) if n is not None]
        found.append((m.start(), m.end(), [ArticleRef("amendment", n) for n in nums]))
    found.sort(key=lambda f: f[0])
    for a, b in itertools.pairwise(found):
        gap = text[a[1] : b[0]]
        if not a[2] or not b[2]:
            continue
        first, second = a[2][-1], b[2][0]
        if first.kind == second.kind and _BETWEEN_RANGE.fullmatch(gap):
            # "第105条至第107条": the articles in between are cited too.
            if 0 < second.number - first.number <= _MAX_RANGE:
                between = range(first.number + 1, second.number)
                a[2].extend(ArticleRef(first.kind, n) for n in between)
        elif (
            first.kind == "article"
            and second.kind == "section"
            and (_BETWEEN_PARENT.fullmatch(gap))
        ):
            b[2][:] = [ArticleRef("section", r.number, r.sub, first.number) for r in b[2]]
        elif (
            first.kind == "section"
            and second.kind == "article"
            and (re.fullmatch(r"[ \t]+of[ \t]+(?:the[ \t]+)?", gap, re.IGNORECASE))
        ):
            a[2][:] = [ArticleRef("section", r.number, r.sub, second.number) for r in a[2]]
    return [r for _, _, refs in found for r in refs]


# Which citation kinds name which unit kind: a Chinese article may be cited in English.
_REF_KINDS = {
    "条": ("条", "article", "section"),
    "article": ("article", "条"),
    "section": ("section",),
    "amendment": ("amendment",),
}


# ---------------------------------------------------------------------------------------------
# Samples per chunk

_CHARS_PER_ARTICLE_SAMPLE = 1500
_LEAD_MIN_CHARS = 200
# A 6,000-character chunk of short Chinese articles holds up to ~100 of them.
DEFAULT_MAX_SAMPLES_PER_CHUNK = 100


def _per_article_count(text: str) -> int:
    arts = _articles(text)
    if not arts:
        return max(1, math.ceil(len(text.strip()) / _CHARS_PER_ARTICLE_SAMPLE))
    count = 0
    lead = text[: arts[0].start].strip()
    if len(lead) >= _LEAD_MIN_CHARS:
        count += math.ceil(len(lead) / _CHARS_PER_ARTICLE_SAMPLE)
    for i, a in enumerate(arts):
        stop = arts[i + 1].start if i + 1 < len(arts) else len(text)
        count += max(1, math.ceil(len(text[a.start : stop].strip()) / _CHARS_PER_ARTICLE_SAMPLE))
    return count


def samples_for_chunk(
    chunk_text: str,
    *,
    samples_per_1k_chars: float | None = None,
    per_article: bool = False,
    minimum: int = 1,
    maximum: int = DEFAULT_MAX_SAMPLES_PER_CHUNK,
) -> int:
    """How many samples a chunk gets under a density setting, clamped to [minimum, maximum].

    - ``per_article``: one per article that starts in the chunk, and one more per further
      1,500 characters of a long article (``ceil(len/1500)`` each); text before the first
      article counts the same way when it has 200+ characters (a preamble, or the tail of an
      article cut by chunking); a chunk with no article gets ``ceil(len/1500)``.
    - ``samples_per_1k_chars``: ``ceil(len(chunk) / 1000 * samples_per_1k_chars)``.
    - Both set: the larger of the two.

    Raises:
        ValueError: neither setting given, a density <= 0, or minimum > maximum.
    """
    if samples_per_1k_chars is None and not per_article:
        raise ValueError("set samples_per_1k_chars or per_article")
    if samples_per_1k_chars is not None and samples_per_1k_chars <= 0:
        raise ValueError(f"samples_per_1k_chars must be > 0, got {samples_per_1k_chars}")
    if minimum < 0 or maximum < minimum:
        raise ValueError(f"need 0 <= minimum <= maximum, got {minimum}, {maximum}")
    count = 0
    if samples_per_1k_chars is not None:
        # The epsilon keeps 2000 chars at 1.5/1k at 3, not 4 through float error.
        count = math.ceil(len(chunk_text.strip()) / 1000 * samples_per_1k_chars - 1e-9)
    if per_article:
        count = max(count, _per_article_count(chunk_text))
    return min(maximum, max(minimum, count))


# ---------------------------------------------------------------------------------------------
# Coverage


@dataclass(frozen=True)
class Coverage:
    """Article coverage of a source by samples.

    ``covered`` counts articles cited by number (``cited``) or, when content matching was
    asked, quoted (``by_content``); ``ratio`` is covered / total, None without articles.
    """

    total: int
    covered: int
    labels_missing: tuple[str, ...]
    ratio: float | None
    cited: int
    by_content: int | None = None


_CONTENT_BASE_CHARS = 200


def _norm(text: str) -> str:
    """Letters, digits and CJK only, NFKC, lowercased: quotes survive re-spacing/punctuation."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if c.isalnum())


def _article_body(text: str, a: Article, heading_starts: set[int]) -> str:
    """An article's text without its label: "第X条" or a "### Section N" heading line."""
    body = text[a.start : a.end]
    m = _ZH_ARTICLE.match(body)
    if m and a.kind == "条":
        return body[m.end() :]
    if a.start in heading_starts and "\n" in body:
        return body[body.index("\n") + 1 :]
    return body


def _content_covered(
    bodies: list[str], texts: Sequence[str], *, min_span: int, min_share: float
) -> list[bool]:
    """Which articles some text repeats verbatim enough (see article_coverage)."""
    norms = [_norm(b) for b in bodies]
    index: dict[str, list[tuple[int, int]]] = {}
    for ai, art in enumerate(norms):
        for p in range(len(art) - min_span + 1):
            index.setdefault(art[p : p + min_span], []).append((ai, p))
    needed = [
        max(min(min_span, len(a)), min_share * min(len(a), _CONTENT_BASE_CHARS)) for a in norms
    ]
    done = [False] * len(norms)
    short = [ai for ai, a in enumerate(norms) if 0 < len(a) < min_span]
    for t in texts:
        s = _norm(t)
        hits: dict[int, set[int]] = {}
        for q in range(len(s) - min_span + 1):
            for ai, p in index.get(s[q : q + min_span], ()):
                if not done[ai]:
                    hits.setdefault(ai, set()).add(p)
        for ai, starts in hits.items():
            covered, reach = 0, 0
            for p in sorted(starts):
                covered += min_span - max(0, min(min_span, reach - p))
                reach = p + min_span
            if covered >= needed[ai]:
                done[ai] = True
        for ai in short:
            # An article shorter than a span can only be covered whole.
            if not done[ai] and norms[ai] in s:
                done[ai] = True
    return done


def article_coverage(
    source_text: str,
    cited_texts: Iterable[str],
    *,
    by_content: bool = False,
    min_span: int = 20,
    min_share: float = 0.5,
) -> Coverage:
    """How many of the source's articles the sample texts cover.

    An article is *cited* when some text names its number in any form (第105条, 第一百零五条,
    Article/Art./Section/§ 105, ranges and lists expanded; see find_article_refs). With
    ``by_content``, an article is also covered when one text repeats it verbatim (ignoring
    spaces, punctuation and case) in runs of at least ``min_span`` characters that add up to
    ``min_share`` of the article, or of 200 characters for a longer article.
    """
    texts = list(cited_texts)
    arts = _articles(source_text)
    refs: dict[tuple[str, int, int], set[int | None]] = {}
    for t in texts:
        for r in find_article_refs(t):
            refs.setdefault((r.kind, r.number, r.sub), set()).add(r.parent)
    cited = []
    for a in arts:
        hit = False
        for kind in _REF_KINDS.get(a.kind, (a.kind,)):
            parents = refs.get((kind, a.number, a.sub))
            if parents is not None and (a.parent is None or None in parents or a.parent in parents):
                hit = True
                break
        cited.append(hit)
    content: list[bool] | None = None
    if by_content:
        heading_starts = {h.start for h in _headings(source_text)}
        bodies = [_article_body(source_text, a, heading_starts) for a in arts]
        content = _content_covered(bodies, texts, min_span=min_span, min_share=min_share)
    covered = [c or bool(content and content[i]) for i, c in enumerate(cited)]
    total = len(arts)
    return Coverage(
        total=total,
        covered=sum(covered),
        labels_missing=tuple(a.label for a, c in zip(arts, covered, strict=True) if not c),
        ratio=sum(covered) / total if total else None,
        cited=sum(cited),
        by_content=sum(content) if content is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# Context header

_SEP = " › "
_PART_MAX = 40
_TITLE_SHOWN_MAX = 60
_HEADER_MAX = 160
_DATE_SUFFIX = re.compile(r"\s*[（(]\d{4}-\d{2}-\d{2}[）)]\s*$")


def _core(s: str) -> str:
    """A name reduced for comparison: no 《》, date suffix, spaces or case."""
    s = _DATE_SUFFIX.sub("", s).strip().strip("《》")
    return re.sub(r"\s+", "", s).lower()


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def format_context_header(
    title: str | None, path: Sequence[str], lang: str = "zh", *, max_chars: int = _HEADER_MAX
) -> str:
    """The line shown above a chunk: "资料：《title》 › 第二章 … › 第三节 …", "" if nothing known.

    Path entries naming the title, or named in it, are dropped; a fuller one replaces the
    title ("中华人民共和国保险法" for "保险法(2015-04-24)", keeping the date). The title is cut to
    60 characters, each heading to 40, and middle parts give way to "…" so the line stays
    within max_chars. lang "zh" or "en" ("auto": Chinese when the text has CJK characters).
    """
    parts = [_clean(p) for p in path if p and p.strip()]
    name = _clean(title) if title else ""
    date_m = _DATE_SUFFIX.search(name)
    date = date_m.group(0).strip() if date_m else ""
    name = name[: date_m.start()] if date_m else name
    if name:
        core = _core(name)
        kept = []
        for p in parts:
            pc = _core(p)
            if len(core) >= 2 and core in pc:
                if len(pc) > len(core) and len(p) <= _TITLE_SHOWN_MAX:
                    name = p  # the heading spells the name out in full
                continue
            if len(pc) >= 2 and pc in core:
                continue  # "第十三章 保证合同" under "民法典 合同编 第十三章 保证合同"
            kept.append(p)
        parts = kept
    if lang == "auto":
        lang = "zh" if re.search(r"[\u4e00-\u9fff]", name + "".join(parts)) else "en"
    zh = lang.lower().startswith("zh")
    if name:
        name = _cut(name, _TITLE_SHOWN_MAX)
        if zh and not name.startswith("《"):
            name = f"《{name}》"
        parts.insert(0, f"{name}{date}" if zh else f"{name} {date}".strip())
    if not parts:
        return ""
    parts = [parts[0]] + [_cut(p, _PART_MAX) for p in parts[1:]]
    label = "资料：" if zh else "Source: "
    # Middle parts give way first: the document and the nearest heading matter most.
    dropped = False
    while len(parts) > 2 + dropped and len(label) + len(_SEP.join(parts)) > max_chars:
        if dropped:
            del parts[2]
        else:
            parts[1] = "…"
            dropped = True
    return _cut(label + _SEP.join(parts), max_chars)
