"""Numbers, references and laws of an answer, checked against the source: only contradictions.

A number is flagged only on positive evidence that it contradicts the source: the answer states
a quantity in the words of a source sentence (the same rule: its unit and the words around it
match) and that sentence gives a different value there, and the answer's value is not in the
question, not in that sentence, and not one or two arithmetic steps away from the question's and
the source's numbers. A number the source simply does not have is not flagged (a worked example,
a case's figures, a list number, a paraphrase such as 两个月 for 二个月): that is the support
check's and the judges' business. Cited articles must exist in the source, and the one an answer
cites must be the one whose content it gives; a law named must be the source's.
"""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Any

from .base import CJK, Finding, detect_lang, normalized, squash, unfence_underlines
from .provisions import (
    EN_REF,
    ZH_CLAUSE_REF,
    ZH_REF,
    cited_units,
    is_case_question,
    law_core,
    lead_citation,
    misattributed_units,
    question_target,
    references,
    same_law,
    share_in,
    source_references,
    source_units,
    unknown_laws,
    unknown_sections,
    unknown_subsections,
)

# Units of rule quantities by class (text normalised by normalize_numerals).
_ZH_UNITS: list[tuple[str, str]] = [
    (r"个工作日|工作日", "workday"),
    (r"日|天", "day"),
    (r"个月", "month"),
    (r"周年|年(?!度|级|龄|满|间|代|初|底|末|内外)", "year"),
    (r"年(?=内外)", "year"),
    (r"周岁|岁", "age"),
    (r"个小时|小时", "hour"),
    (r"分钟", "minute"),
    (r"秒钟?", "second"),
    (r"个星期|星期|周", "week"),
    (r"倍", "multiple"),
    (r"元", "money"),
    (r"%|‰", "percent"),
    (r"成(?![立为本员年功果交绩熟就效])", "tenth"),
    (r"公里|千米|米|公斤|千克|吨|亩", "measure"),
    (r"(?:人|名)(?=以上|以下|以内|或者|至)", "people"),
]
_EN_UNITS: list[tuple[str, str]] = [
    (r"(?:business|working)\s+days?", "workday"),
    (r"(?:calendar\s+)?days?", "day"),
    (r"months?", "month"),
    (r"years?", "year"),
    (r"hours?|hrs?", "hour"),
    (r"minutes?|mins?", "minute"),
    (r"milliseconds?|ms", "millisecond"),
    (r"seconds?|secs?|s", "second"),
    (r"weeks?", "week"),
    (r"times|fold", "multiple"),
    (r"dollars?", "money"),
    (r"cents?", "cent"),
    (r"%|percent|per\s*cent", "percent"),
    (r"miles?|feet|foot|acres?|[KMG]i?B|bytes?", "measure"),
]
_ZH_UNIT_RE = "|".join(f"(?P<zh_{cls}{i}>{pat})" for i, (pat, cls) in enumerate(_ZH_UNITS))
_EN_UNIT_RE = "|".join(f"(?P<en_{cls}{i}>{pat})" for i, (pat, cls) in enumerate(_EN_UNITS))
# Not the tail of "1.5" or "3/4"; a number may follow a comma (NFKC turns "，" into ",").
_NUM = r"(?<![\d.])(?<!\d[,/])(\d+(?:\.\d+)?)(?:/(\d+))?"
_QTY_ZH = re.compile(rf"{_NUM}\s*(?:{_ZH_UNIT_RE})?")
_QTY_EN = re.compile(
    rf"(\$\s*)?(?<![A-Za-z_-]){_NUM}(?:\s+|-)?(?:(?:{_EN_UNIT_RE})\b)?", re.IGNORECASE
)
# "retried twice": counts written as adverbs.
_EN_TIMES = re.compile(r"\b(once|twice|thrice)\b", re.IGNORECASE)
_EN_TIMES_VALUE = {"once": 1.0, "twice": 2.0, "thrice": 3.0}
# "Once" that opens a clause means "as soon as": at a sentence or clause start ("Once approved,
# …"), or before a subject ("once the claim is paid", "once it expires"); "once a year",
# "only once" and "at least once" are counts.
_ONCE_CLAUSE_START = re.compile(r"(?:^|[,;:.!?(]|\b(?:and|but|or))\s*$", re.I)
_ONCE_SUBJECT = re.compile(
    r"\s+(?:the|this|that|these|those|it|he|she|they|you|we|i|his|her|their|its|your|our|all"
    r"|both|each|every|any|some|no|an?\s+(?!(?:year|month|week|day|hour|minute|second|quarter"
    r"|term|session|lifetime|period|policy\s+year)\b))\b",
    re.IGNORECASE,
)


def _once_as_conjunction(text: str, m: re.Match[str]) -> bool:
    """Whether a matched "once" introduces a clause (a time, not a count)."""
    if m.group(1).lower() != "once":
        return False
    before = text[max(0, m.start() - 12) : m.start()]
    return bool(_ONCE_CLAUSE_START.search(before) or _ONCE_SUBJECT.match(text, m.end()))


# Dates and years are not rule quantities (2023年3月31日, 3月31日, March 31, 10 May 2026).
_ZH_DATE = re.compile(
    r"\d{4}\s*年(?:度)?(?:\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*日)?)?|\d{1,2}\s*月\s*\d{1,2}\s*日"
    r"|\d{1,2}\s*月(?!\d)"
)
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_EN_DATE = re.compile(
    rf"\b(?:{_MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:day\s+of\s+)?(?:{_MONTHS})(?:,?\s+\d{{4}})?\b"
)
# Enumeration markers ("1.", "(2)") are not quantities.
# ("f(2)" is a call's argument, not a marker.)
_ENUM_MARK = re.compile(r"(?:^|\n)\s*[(（]?\d+[.)）、](?!\d)|(?<![A-Za-z0-9_])[(（]\d+[)）]")
# Version numbers, HTTP status classes and code are not quantities either ("3.10", "4xx").
_EN_CODE = re.compile(r"`[^`\n]*`|\b\d+(?:\.\d+){2,}\b|\b\d[xX]{2}\b|\bv\d+(?:\.\d+)*\b")
# Code is an example, not a rule: fenced blocks, inline code, and "name=5" arguments anywhere.
_CODE = re.compile(
    r"(?ms)^[ \t]*(```|~~~).*?^[ \t]*\1|`[^`\n]+`|(?<![\w.])[A-Za-z_][A-Za-z0-9_.]*\s*=\s*[\d.]+"
)
_ORDINAL_EN = re.compile(r"(?:st|nd|rd|th)\b")


@dataclass(frozen=True)
class Quantity:
    """A number found in a text: value, unit class ('' bare, 'ordinal', 'day'...) and span."""

    value: float
    unit: str
    text: str
    start: int
    end: int


def _unit_class(m: re.Match[str]) -> str:
    for name, val in m.groupdict().items():
        if val is not None and name[:3] in ("zh_", "en_"):
            return re.sub(r"\d+$", "", name[3:])
    return ""


def _masked_spans(text: str, lang: str, *, code: bool = True) -> list[tuple[int, int]]:
    spans = [m.span() for m in (_ZH_DATE if lang == "zh" else _EN_DATE).finditer(text)]
    for regex in (ZH_REF, ZH_CLAUSE_REF, EN_REF, _ENUM_MARK):
        spans += [m.span() for m in regex.finditer(text)]
    if code:
        spans += [m.span() for m in _CODE.finditer(unfence_underlines(text))]
        if lang == "en":
            spans += [m.span() for m in _EN_CODE.finditer(text)]
    return spans


def extract_quantities(
    text: str, lang: str | None = None, *, is_normalized: bool = False, code: bool = False
) -> list[Quantity]:
    """Numbers of ``text`` (numerals normalised first) with their unit class.

    Dates, years, article references, enumeration markers, code (examples, not rules) and
    version numbers are left out, unless ``code`` (a question's ``timeout=20.0`` is its case's
    figure); ordinals ("第3次", "the 2nd Year") have the unit 'ordinal', fractions the unit
    'ratio' (value 2/3), "twice" is 2 'multiple'.
    """
    norm = text if is_normalized else normalized(text)
    lang = lang or detect_lang(norm)
    masked = _masked_spans(norm, lang, code=not code)
    out: list[Quantity] = []
    zh = lang == "zh"
    for m in (_QTY_ZH if zh else _QTY_EN).finditer(norm):
        num_group = 1 if zh else 2
        num_start = m.start(num_group)
        if any(a <= num_start < b for a, b in masked):
            continue
        value = float(m.group(num_group))
        denom = m.group(num_group + 1)
        unit = _unit_class(m)
        if denom is not None:
            if float(denom) == 0:
                continue
            value, unit = value / float(denom), "ratio"
        elif not zh and m.group(1):
            unit = "money"
        after_ordinal = zh and norm[max(0, num_start - 2) : num_start].rstrip().endswith("第")
        if after_ordinal or (not zh and _ORDINAL_EN.match(norm, m.end(num_group))):
            unit = "ordinal"
        if unit == "" and not zh and 1000 <= value <= 2999 and value == int(value):
            continue  # a year
        out.append(Quantity(value, unit, m.group().strip(), m.start(), m.end()))
    if not zh:
        for m in _EN_TIMES.finditer(norm):
            if not any(a <= m.start() < b for a, b in masked) and not _once_as_conjunction(norm, m):
                value = _EN_TIMES_VALUE[m.group(1).lower()]
                out.append(Quantity(value, "multiple", m.group(), m.start(), m.end()))
        out.sort(key=lambda q: q.start)
    return out


# --- units ------------------------------------------------------------------------------------

# (dimension, size in the dimension's base unit): values compare across units of a dimension
# only where the conversion is exact (1年 = 12个月, 1周 = 7日, 1 minute = 60 s; a month is not
# 30 days, a working day is not a day).
_DIMENSION: dict[str, tuple[str, float]] = {
    "millisecond": ("time", 0.001),
    "second": ("time", 1.0),
    "minute": ("time", 60.0),
    "hour": ("time", 3600.0),
    "day": ("time", 86400.0),
    "week": ("time", 604800.0),
    "month": ("months", 1.0),
    "year": ("months", 12.0),
    "age": ("age", 1.0),
    "workday": ("workday", 1.0),
    "percent": ("percent", 1.0),
    "tenth": ("percent", 10.0),
    "ratio": ("percent", 100.0),
    "multiple": ("multiple", 1.0),
    "money": ("money", 1.0),
    "cent": ("money", 0.01),
    "people": ("count", 1.0),
    "measure": ("measure", 1.0),
    "ordinal": ("ordinal", 1.0),
    "": ("", 1.0),
}


def _dim(q: Quantity) -> tuple[str, float]:
    return _DIMENSION.get(q.unit, (q.unit, 1.0))


def _base(q: Quantity) -> float:
    return q.value * _dim(q)[1]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def _same_quantity(a: Quantity, b: Quantity, *, loose: bool = True) -> bool:
    """Whether ``a`` and ``b`` state one value: same dimension (a bare number matches any when
    ``loose``), equal after an exact unit conversion; 2倍 = 200%, 周岁 = 年."""
    (da, fa), (db, fb) = _dim(a), _dim(b)
    if da == db:
        return _close(a.value * fa, b.value * fb)
    if loose and ("" in (da, db) or {da, db} <= {"age", "months"}):
        return _close(a.value, b.value)
    if {da, db} == {"multiple", "percent"}:
        pa = a.value * (100 if da == "multiple" else fa)
        pb = b.value * (100 if db == "multiple" else fb)
        return _close(pa, pb)
    return False


def _in_pool(q: Quantity, pool: Sequence[Quantity]) -> bool:
    """Whether ``pool`` has ``q``'s value in a compatible unit (or a bare one)."""
    return any(_same_quantity(q, p) for p in pool)


# --- arithmetic -------------------------------------------------------------------------------


def _rounded_forms(x: float) -> set[float]:
    """``x`` and what an answer may write for it: rounded to 0-2 decimals, floor, ceil."""
    if not math.isfinite(x) or abs(x) > 1e15:
        return set()
    forms = {x, round(x), round(x, 1), round(x, 2), float(math.floor(x)), float(math.ceil(x))}
    return {round(f, 6) for f in forms}


# A value in arithmetic: (number as written, dimension). Scalars (bare numbers, percentages,
# multiples) scale a quantity; only like quantities add up ("60日 + 30日", not "1个月 + 2倍").
Val = tuple[float, str]
_SCALAR = frozenset({"", "percent", "multiple"})


def _kind(dim: str, size: float) -> str:
    """The arithmetic kind of a quantity: its dimension and unit ("time:60" is minutes), so
    that 10 minutes and 10 seconds are not the same operand."""
    return dim if dim in _SCALAR else f"{dim}:{size:g}"


def _operand_values(q: Quantity) -> list[Val]:
    """Values a quantity contributes to arithmetic (20% is 20 percent and the scalar 0.2)."""
    dim, size = _dim(q)
    if dim == "percent":  # 20%, 2/3, 七成
        pct = q.value * size
        return [(pct, "percent"), (pct / 100, "")]
    return [(q.value, _kind(dim, size))]


def _targets(q: Quantity) -> list[Val]:
    """What a derived quantity may have been computed as: 10.7% is 10.7 percent or 0.107, 30
    minutes is also 1800 seconds and 0.5 hours."""
    dim, size = _dim(q)
    if dim in _SCALAR:
        return _operand_values(q)
    sizes = {f for d, f in _DIMENSION.values() if d == dim}
    return [(q.value * size / f, _kind(dim, f)) for f in sorted(sizes | {size})]


def _product_kind(da: str, db: str) -> str:
    """The kind of a × b: a scalar keeps the other's kind, a unit and its inverse cancel, two
    units make something the answer may call anything ("元/日 × 日")."""
    if "?" in (da, db):
        return "?"
    if da in _SCALAR:
        return db
    if db in _SCALAR:
        return da
    if da == f"1/{db}" or db == f"1/{da}":
        return ""
    # seconds × minutes is no quantity an answer states; 元/日 × 日 may be anything
    return "?" if _dimension_of(da) == _dimension_of(db) else "*"


def _dimension_of(kind: str) -> str:
    return kind.removeprefix("1/").split(":")[0]


def _quotient_kind(da: str, db: str) -> str:
    """The kind of a ÷ b: like kinds give a scalar, a scalar over a unit is its inverse."""
    if "?" in (da, db):
        return "?"
    if da == db:
        return ""
    if db in _SCALAR:
        return da
    if da in _SCALAR:
        return f"1/{db}"
    return "?" if _dimension_of(da) == _dimension_of(db) else "*"


def _combine(a: Val, b: Val) -> list[Val]:
    """a + b, a - b, b - a (like quantities only), a × b, a ÷ b, b ÷ a with their kinds."""
    (x, da), (y, db) = a, b
    out: list[Val] = []
    if da == db:
        out += [(x + y, da), (x - y, da), (y - x, da)]
    out.append((x * y, _product_kind(da, db)))
    if y:
        out.append((x / y, _quotient_kind(da, db)))
    if x:
        out.append((y / x, _quotient_kind(db, da)))
    return [(v, d) for v, d in out if math.isfinite(v)]


def _hits(result: Val, targets: list[Val]) -> bool:
    value, dim = result
    forms = _rounded_forms(value)
    for t, t_dim in targets:
        same_dim = dim == "*" or dim == t_dim or t_dim == "" or (dim == "" and t_dim in _SCALAR)
        if same_dim and round(t, 6) in forms:
            return True
    return False


def _derivable(targets: list[Val], firsts: set[Val], all_values: set[Val]) -> bool:
    """A target is a op b (rounded as answers round), a from ``firsts``, b from anywhere."""
    return any(_hits(r, targets) for a in firsts for b in all_values for r in _combine(a, b))


def _two_steps(targets: list[Val], given: set[Val], all_values: set[Val]) -> bool:
    """A target is (a op b) op c, with a one of the question's own figures."""
    if len(given) * len(all_values) > 400:
        return False
    firsts = {r for a in given for b in all_values for r in _combine(a, b)}
    return _derivable(targets, firsts, all_values)


# "16000元×0.05%×55日＝440元", "8400元×(40%＋30%)＝5880元", "600000 ÷ 30000 = 20".
# A written-out calculation, its operands with their units ("3 × 600 s", "2 × 30日").
_EQ_LEFT = re.compile(
    r"(?:[0-9.%()×xX*÷/+\-−\s元日天个月年周岁倍人名次$]|\b(?:s|ms|secs?|seconds?|mins?|minutes?"
    r"|h|hrs?|hours?|days?|weeks?|months?|years?|times|USD|dollars?)\b)+$"
)
_EQ_RIGHT = re.compile(r"^\s*(?:约|约为|约等于)?\s*\$?\s*([0-9]+(?:\.[0-9]+)?)")
_EQ_NUM = re.compile(r"[0-9]+(?:\.[0-9]+)?%?")


def _equations(answer_n: str) -> list[tuple[float, list[float]]]:
    """(result, operands) of every correct calculation written out in a normalised answer."""
    out = []
    for m in re.finditer(r"[=≈]", answer_n):
        left = _EQ_LEFT.search(answer_n[: m.start()])
        right = _EQ_RIGHT.match(answer_n[m.end() :])
        if not left or not right:
            continue
        expr = left.group()
        operands = [
            float(t.rstrip("%")) / (100 if t.endswith("%") else 1) for t in _EQ_NUM.findall(expr)
        ]
        if len(operands) < 2:
            continue
        py = re.sub(r"([0-9.]+)%", r"(\1/100)", expr)
        py = py.translate(str.maketrans({"×": "*", "x": "*", "X": "*", "÷": "/", "−": "-"}))
        value = _safe_eval(re.sub(r"[^0-9.()*/+\-]", "", py))
        stated = float(right.group(1))
        if value is not None and (
            stated in _rounded_forms(value) or stated in _rounded_forms(value * 100)
        ):
            out.append((stated, operands))
    return out


def _safe_eval(expr: str) -> float | None:
    """Evaluate + - * / and brackets over numbers; None when it is not such an expression."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if isinstance(node.op, ast.Div):
                return a / b
        raise ValueError(node)

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


# Dates of a question ("2024年1月8日", "6月10日", "March 4, 2024"): the days between two of them
# are a case's own figure (counted both ways: Chinese periods start the next day).
_ZH_FULL_DATE = re.compile(r"(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_EN_FULL_DATE = re.compile(rf"\b({_MONTHS})\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?\b")


def _dates(text_n: str) -> list[dt.date]:
    out = []
    for m in _ZH_FULL_DATE.finditer(text_n):
        year, month, day = int(m.group(1) or 2001), int(m.group(2)), int(m.group(3))
        try:
            out.append(dt.date(year, month, day))
        except ValueError:
            continue
    months = _MONTHS.split("|")
    for m in _EN_FULL_DATE.finditer(text_n):
        try:
            out.append(
                dt.date(int(m.group(3) or 2001), months.index(m.group(1)) + 1, int(m.group(2)))
            )
        except ValueError:
            continue
    return out


def _date_spans(question_n: str) -> set[Val]:
    """Days (and whole months) between the question's dates, inclusive and exclusive."""
    dates = _dates(question_n)
    out: set[Val] = set()
    for i, a in enumerate(dates):
        for b in dates[i + 1 :]:
            days = abs((b - a).days)
            out |= {
                (float(d), _kind(*_DIMENSION["day"])) for d in (days, days + 1, max(days - 1, 0))
            }
            months = abs((b.year - a.year) * 12 + b.month - a.month)
            out |= {(float(m), _kind(*_DIMENSION["month"])) for m in (months, months + 1)}
    return out


# --- a quantity against the source's sentence that states the same rule ---------------------

_ZH_CLAUSE_END = re.compile(r"[，,。；;！？!?\n：:]")
_EN_CLAUSE_END = re.compile(r"[;!?\n:,]|(?<!\d)\.(?!\d)|\.(?=\s)")
_ZH_TOKEN = re.compile(rf"[{CJK}]|[A-Za-z]+|\d+(?:\.\d+)?")
_EN_TOKEN = re.compile(r"[A-Za-z_][A-Za-z_'-]*|\d+(?:\.\d+)?")
# fmt: off
_EN_FUNCTION = frozenset([
    "a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "with", "as", "is", "are", "was",
    "were", "be", "been", "it", "its", "this", "that", "these", "those", "and", "or", "if", "so",
    "which", "who", "than", "then", "there", "their", "they", "can", "will", "would", "you",
    "your", "from", "into", "has", "have", "had", "do", "does", "up",
])
# fmt: on
_SLOT = "\x00"


@dataclass(frozen=True)
class _Clause:
    """A clause as tokens, numbers replaced by a slot token per dimension."""

    tokens: tuple[str, ...]
    slots: dict[int, Quantity]
    content: int  # tokens that are neither slots nor function words


def _content_token(tok: str, lang: str) -> bool:
    if tok.startswith(_SLOT):
        return False
    return lang == "zh" or tok not in _EN_FUNCTION


def _clauses(text_n: str, quantities: Sequence[Quantity], lang: str) -> list[_Clause]:
    """The clauses of a normalised text (split at commas and stronger stops), tokenised."""
    ends = _ZH_CLAUSE_END if lang == "zh" else _EN_CLAUSE_END
    token_re = _ZH_TOKEN if lang == "zh" else _EN_TOKEN
    bounds = [0] + [m.end() for m in ends.finditer(text_n)] + [len(text_n)]
    qs = sorted(quantities, key=lambda q: q.start)
    out = []
    for a, b in itertools.pairwise(bounds):
        tokens: list[str] = []
        slots: dict[int, Quantity] = {}
        pos = a
        for q in qs:
            if q.start < a or q.start >= b:
                continue
            tokens += [t.casefold() for t in token_re.findall(text_n[pos : q.start])]
            slots[len(tokens)] = q
            tokens.append(_SLOT + _dim(q)[0])
            pos = max(pos, q.end)
        tokens += [t.casefold() for t in token_re.findall(text_n[pos:b])]
        if slots or tokens:
            content = sum(_content_token(t, lang) for t in tokens)
            out.append(_Clause(tuple(tokens), slots, content))
    return out


def _clause_of(q: Quantity, clauses: Sequence[_Clause]) -> tuple[_Clause, int] | None:
    for c in clauses:
        for i, s in c.slots.items():
            if s is q:
                return c, i
    return None


def _align(a: _Clause, i: int, s: _Clause, lang: str) -> tuple[float, Quantity | None]:
    """(share of ``a``'s content tokens found in order in ``s``, ``s``'s quantity in slot i)."""
    matcher = SequenceMatcher(None, a.tokens, s.tokens, autojunk=False)
    matched = 0
    slot = None
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            if _content_token(a.tokens[block.a + k], lang):
                matched += 1
            if block.a + k == i:
                slot = s.slots.get(block.b + k)
    return matched / max(a.content, 1), slot


@dataclass
class _Source:
    """The source's clauses, once per chunk."""

    clauses: list[_Clause]


@lru_cache(maxsize=64)
def _source_clauses(source: str, lang: str) -> _Source:
    source_n = normalized(source)
    return _Source(_clauses(source_n, _source_quantities(source, lang), lang))


def _conflict(
    q: Quantity, here: tuple[_Clause, int], source: _Source, lang: str, *, strict: bool
) -> tuple[float, Quantity] | None:
    """(alignment share, the source's value) where a clause stating the same rule puts ``q``,
    when it differs.

    The answer's clause must have enough words of its own (4 Chinese characters, 3 English
    content words; more in a case answer) and match a source clause closely (in order, at least
    70 %, 85 % when ``strict``); no such clause may state ``q``'s value anywhere.
    """
    clause, i = here
    need = (4 if lang == "zh" else 3) + (1 if strict else 0)
    if clause.content < need:
        return None
    floor = 0.85 if strict else 0.7
    dim = _dim(q)[0]
    found: list[tuple[float, Quantity]] = []
    for s in source.clauses:
        if not any(_dim(p)[0] == dim for p in s.slots.values()):
            continue
        share, slot = _align(clause, i, s, lang)
        if share < floor or share * clause.content < need:
            continue
        if any(_same_quantity(q, p, loose=False) for p in s.slots.values()):
            return None  # a sentence of the same rule with this very value
        if slot is not None and _dim(slot)[0] == dim:
            found.append((share, slot))
    if not found:
        return None
    return max(found, key=lambda f: f[0])


# --- default values (technical documents) ----------------------------------------------------

_DEFAULT_WORD = re.compile(r"\bdefault(?:s|ed)?\b|默认|缺省", re.IGNORECASE)
# "time limit on idle connections in seconds … (Default 5)": the unit of a bare default.
_IN_UNIT = re.compile(
    r"\bin\s+(milliseconds|seconds|minutes|hours|days|bytes)\b|以(秒|分钟|小时|天)为单位"
)
_UNIT_WORD = {
    "milliseconds": "millisecond", "seconds": "second", "minutes": "minute", "hours": "hour",
    "days": "day", "bytes": "measure", "秒": "second", "分钟": "minute", "小时": "hour",
    "天": "day",
}  # fmt: skip
_IDENT = re.compile(r"`+([^`\n]+?)`+|\b([A-Za-z]+_[A-Za-z0-9_]+|[a-z]+[A-Z][A-Za-z0-9]+)\b")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
# Where a statement of a default ends: a sentence, a line, or a clause of its own (";",
# ", so …", "，因此…").
_SENTENCE_END = re.compile(
    r"(?<=[。！？；;!?])|(?<=\.)\s+(?=[A-Z`(])|\n"
    r"|[,，]\s*(?=(?:so|and|but|which|because|then|plus|hence|thus|i\.e\.)\b|因此|所以|即|也就是)"
)


def _identifiers(text: str) -> set[str]:
    """Code names a text mentions (`max_retries`, keepalive_expiry, `OpenAI(timeout=20.0)`)."""
    names = set()
    for m in _IDENT.finditer(text):
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", m.group(1) or m.group(2)):
            if len(name) >= 3:
                names.add(name.casefold())
    return names


@dataclass(frozen=True)
class _Default:
    """A default value the source states, with the names and words of its statement."""

    quantity: Quantity
    names: frozenset[str]
    words: frozenset[str]


def _items(text: str) -> list[tuple[int, int]]:
    """Spans of paragraphs, list items and code lines: where a default is stated with its name."""
    spans = []
    start = 0
    in_code = False
    pos = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        fence = stripped.startswith(("```", "~~~"))
        if fence or in_code or not stripped or _LIST_ITEM.match(line):
            if pos > start:
                spans.append((start, pos))
            start = pos
        if fence:
            in_code = not in_code
        if in_code and not fence:
            spans.append((pos, pos + len(line)))
            start = pos + len(line)
        pos += len(line)
    if pos > start:
        spans.append((start, pos))
    return spans


def _words(text: str, lang: str) -> frozenset[str]:
    from .support import support_tokens

    return frozenset(support_tokens(_DEFAULT_WORD.sub(" ", text), lang))


@lru_cache(maxsize=64)
def _source_defaults(source: str, lang: str) -> tuple[_Default, ...]:
    """Every default value the (normalised) source states, with its statement's names/words."""
    source_n = normalized(source)
    quantities = _source_quantities(source, lang)
    out = []
    for a, b in _items(source_n):
        item = source_n[a:b]
        if not _DEFAULT_WORD.search(item):
            continue
        unit = _IN_UNIT.search(item)
        names = frozenset(_identifiers(item))
        words = _words(item, lang)
        for q in quantities:
            if a <= q.start < b:
                if q.unit == "" and unit:
                    q = Quantity(
                        q.value, _UNIT_WORD[unit.group(1) or unit.group(2)], q.text, q.start, q.end
                    )
                out.append(_Default(q, names, words))
    return tuple(out)


def _default_conflict(
    q: Quantity, ctx: _Context, question: str, *, names_only: bool = False
) -> list[float] | None:
    """The source's defaults for the setting whose default the answer states as ``q``
    (``names_only``: only a setting both name in code counts as the same one)."""
    spans = [(m.start(), m.end()) for m in _SENTENCE_END.finditer(ctx.answer_n)]
    bounds = [0] + [e for _, e in spans] + [len(ctx.answer_n)]
    sentence = next(
        (ctx.answer_n[a:b] for a, b in itertools.pairwise(bounds) if a <= q.start < b), ""
    )
    if not _DEFAULT_WORD.search(sentence):
        return None
    names = _identifiers(sentence) | _identifiers(question)
    words = _words(sentence, ctx.lang)
    dim = _dim(q)[0]
    same = []
    for d in _source_defaults(ctx.source_text, ctx.lang):
        d_dim = _dim(d.quantity)[0]
        if d_dim != dim and "" not in (dim, d_dim):
            continue
        # The same setting: a code name both mention, or (for a quantity with a unit) two
        # content words in common.
        by_words = not names_only and "" not in (dim, d_dim) and len(words & d.words) >= 2
        if names & d.names or by_words:
            same.append(d.quantity)
    if not same or any(_same_quantity(q, d) for d in same):
        return None
    return [d.value for d in same]


# --- the literal context of a number ---------------------------------------------------------

_ALIGN_DROP = re.compile(r"[^\w./%]+|(?<!\d)\.|\.(?!\d)|_")
_ALIGN_NUM = r"(\d+(?:\.\d+)?)(?:/(\d+))?(?:st|nd|rd|th)?"
_NUM_AT = re.compile(r"\$?\s*\d+(?:\.\d+)?(?:/\d+)?(?:st|nd|rd|th)?")


def _align_squash(text: str) -> str:
    """Case-folded, without spaces and punctuation, keeping "2.5", "2/3" and "20%" whole."""
    return _ALIGN_DROP.sub("", text.casefold())


@lru_cache(maxsize=256)
def _align_form(text: str) -> str:
    """The source as the literal alignment reads it: squashed, numbers of code left out."""
    text_n = _CODE.sub(lambda m: re.sub(r"\d", "·", m.group()), normalized(text))
    return _align_squash(text_n)


def _aligned_numbers(left: str, right: str, source_al: str) -> list[float]:
    """Numbers of the source between ``left`` and ``right`` (the answer's words around one)."""
    found = []
    # The right context is a lookahead, so "9states" is 9 before "sta", not "9st" (ordinal).
    for m in re.finditer(re.escape(left) + _ALIGN_NUM + f"(?={re.escape(right)})", source_al):
        value = float(m.group(1))
        if m.group(2):
            value /= float(m.group(2)) or 1.0
        found.append(value)
    return found


def _swapped(
    q: Quantity,
    answer_n: str,
    source_al: str,
    lang: str,
    *,
    strong: bool = True,
    shortest: int | None = None,
) -> list[float] | None:
    """The source's numbers where the answer's words put ``q``, when none of them is ``q``.

    The answer "自收到通知之日起15日内" against a source saying "自收到通知之日起5日内": [5].
    The words before the number are matched longest first and the words after it must match
    too, so "composed of 3 Senators" finds "composed of 2 Senators" but not "into 2 parts".
    ``strong`` asks for at least 6 Chinese / 12 English characters of context before the number
    (a paraphrase can meet a short phrase of another sentence by chance); otherwise 4 / 5.
    """
    before = _align_squash(answer_n[: q.start]).rstrip("$")
    m = re.search(r"[^\d./%]+$", before)
    if not m:
        return None
    # A quantity's unit as written ("日", "个月", "dollars") must match; for a bare number or a
    # fraction, the words after it ("3 Senators", "1次支付", "2/3 of the States").
    right = re.search(r"[^\d./%$]+$", _align_squash(answer_n[q.start : q.end]))
    if right is None:
        num = _NUM_AT.match(answer_n, q.start)
        after = _align_squash(answer_n[num.end() if num else q.end :])
        right = re.match(r"[^\d./%]{0,3}", after)
    if right is None or not right.group():
        return None
    longest = 10 if lang == "zh" else 24
    if shortest is None:
        shortest = (6 if lang == "zh" else 12) if strong else (4 if lang == "zh" else 5)
    context = m.group()
    for size in range(min(longest, len(context)), shortest - 1, -1):
        found = _aligned_numbers(context[-size:], right.group(), source_al)
        if found:
            return None if any(_close(v, q.value) for v in found) else found
    return None


def _show(v: float) -> str:
    return str(int(v)) if v == int(v) else f"{v:g}"


# --- the verdict on each number --------------------------------------------------------------


@dataclass
class _Context:
    """Everything a number of the answer is judged against."""

    answer_n: str
    source_al: str
    lang: str
    pool: list[Quantity]
    question_q: list[Quantity]
    case: bool
    case_values: set[Val]
    all_values: set[Val]
    given: set[Val]  # the question's own figures and results derived from them
    equations: list[tuple[float, list[float]]]
    answer_clauses: list[_Clause]
    source: _Source
    source_text: str
    question: str


_ASKED, _STRONG, _WEAK = "asked", "strong", "weak"
# Characters of the answer's own words before a number that must recur in the source, with
# another number, to outweigh a weak explanation.
_OVERRIDE = {"zh": 8, "en": 18}


def _explained(q: Quantity, ctx: _Context) -> str | None:
    """How ``q`` is accounted for without the source's wording: ``"asked"`` when the question
    states it; ``"strong"`` when it follows from the question's own figures or is the result of
    a calculation written out; ``"weak"`` when, in a case answer, the source states it somewhere
    or it is one step from two of the source's numbers; None when nothing explains it."""
    if _in_pool(q, ctx.question_q):
        return _ASKED
    targets = _targets(q)
    if ctx.given and _derivable(targets, ctx.given, ctx.all_values):
        return _STRONG
    # Two steps only in a case or calculation, from one of the question's own figures
    # ("12万元的五分之一是2.4万元，拖欠三期是3万元").
    if ctx.case and ctx.given and _two_steps(targets, ctx.given, ctx.all_values):
        return _STRONG
    known = {v for v, _ in ctx.all_values} | {p.value for p in ctx.pool}
    for result, operands in ctx.equations:
        same = any(t in _rounded_forms(result) or _close(t, result) for t, _ in targets)
        if same and all(any(_close(o, k) for k in known) for o in operands):
            return _STRONG
    if ctx.case and _in_pool(q, ctx.pool):
        # A case answer paraphrases: its words may meet another sentence of the source.
        return _WEAK
    if ctx.case_values and _derivable(targets, ctx.case_values, ctx.all_values):
        return _WEAK
    return None


@lru_cache(maxsize=64)
def _unit_quantities(source: str, lang: str) -> tuple[tuple[Quantity, ...], ...]:
    return tuple(tuple(extract_quantities(u.text, lang)) for u in source_units(source))


def _sentence_at(text: str, pos: int) -> str:
    bounds = [0] + [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]
    return next((text[a:b] for a, b in itertools.pairwise(bounds) if a <= pos < b), text)


def _own_provision_states(q: Quantity, ctx: _Context) -> bool:
    """Whether a provision the answer's sentence cites, or the question names, states ``q``:
    a clause of another provision worded alike is then no contradiction."""
    units = source_units(ctx.source_text)
    if len(units) < 2:
        return False
    sentence = _sentence_at(ctx.answer_n, q.start)
    about = cited_units(sentence, units) | cited_units(ctx.question, units)
    per_unit = _unit_quantities(ctx.source_text, ctx.lang)
    return any(_same_quantity(q, p, loose=False) for i in about for p in per_unit[i])


# A clause of the answer aligned this closely (in order) with a source clause is the same
# sentence of the source with one value changed: a certain contradiction.
_CERTAIN_ALIGNMENT = 0.85


def _contradiction(q: Quantity, ctx: _Context) -> tuple[list[float], bool] | None:
    """(the source's values for the rule ``q`` states, certain) when they contradict it.

    Evidence, strongest first: the answer's words right around the number recur in the source
    with another number; a default the source states for the same setting; a clause of the
    source worded like the answer's (unless a provision the answer cites states the number);
    the words on both sides of the number. Certain: the long literal context with the same unit,
    a default of a setting both name in code, a clause aligned at ``_CERTAIN_ALIGNMENT``; a
    short context, a default matched by words, a looser clause or window only suspect.
    """
    bare = q.unit in ("", "ordinal")
    literal = _swapped(q, ctx.answer_n, ctx.source_al, ctx.lang)
    if literal is not None:
        return literal, True
    if bare and not ctx.case:
        # A bare count or an ordinal restating the law: a shorter phrase is enough to suspect.
        literal = _swapped(q, ctx.answer_n, ctx.source_al, ctx.lang, strong=False)
        if literal is not None:
            return literal, False
    default = _default_conflict(q, ctx, ctx.question)
    if default is not None:
        named = _default_conflict(q, ctx, ctx.question, names_only=True) is not None
        return default, named
    here = _clause_of(q, ctx.answer_clauses)
    aligned = (
        None if here is None else _conflict(q, here, ctx.source, ctx.lang, strict=ctx.case or bare)
    )
    if aligned is not None:
        share, other = aligned
        certain = share >= _CERTAIN_ALIGNMENT and not ctx.case
    else:
        other, certain = _window_conflict(q, ctx), False
    if other is None or _own_provision_states(q, ctx):
        return None
    return [other.value], certain


# --- the words on both sides of a number -------------------------------------------------------

_WINDOW_END = re.compile(r"[。；;！？!?\n]|(?<!\d)\.(?!\d)")
_ZH_WINDOW_SKIP = frozenset("的之或者应当在及和与其以对由为是了")
# Words each side of a number that are compared, and how many must match: (left, right, both).
_WINDOW = {"zh": 9, "en": 6}
_WINDOW_NEED = {"zh": (2, 1, 5), "en": (1, 1, 4)}


def _stem(word: str) -> str:
    """A crude English stem: "decides" and "decide", "inhabitants" and "inhabitant" meet."""
    word = word.casefold()
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > 4 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


_EDGE = frozenset({"\x00edge"})


def _side(text: str, lang: str, left: bool) -> frozenset[str]:
    """The content words of one side of a number, nearest first: Chinese character bigrams,
    English stems without function words."""
    k = _WINDOW[lang]
    if not re.search(rf"[{CJK}A-Za-z]", text):
        return _EDGE  # the number opens or closes its sentence: that, too, is its place
    # Other numbers nearby are words of the window too: "1年以上不满3年的" is not "3个月以上不满
    # 1年的".
    if lang == "zh":
        chars = re.findall(rf"[{CJK}]|\d+(?:\.\d+)?", text)
        chars = [c for c in chars if c not in _ZH_WINDOW_SKIP]
        chars = chars[-k:] if left else chars[:k]
        return frozenset(a + b for a, b in itertools.pairwise(chars))
    words = [_stem(t) for t in _EN_TOKEN.findall(text) if t.casefold() not in _EN_FUNCTION]
    return frozenset(words[-k:] if left else words[:k])


def _windows(
    text_n: str, quantities: Sequence[Quantity], lang: str
) -> list[tuple[frozenset[str], frozenset[str]]]:
    """(left words, right words) of each quantity, within its sentence."""
    bounds = [0] + [m.end() for m in _WINDOW_END.finditer(text_n)] + [len(text_n)]
    out = []
    for q in quantities:
        a = max(b for b in bounds if b <= q.start)
        e = min((b for b in bounds if b >= q.end), default=len(text_n))
        out.append((_side(text_n[a : q.start], lang, True), _side(text_n[q.end : e], lang, False)))
    return out


@lru_cache(maxsize=64)
def _source_windows(source: str, lang: str) -> tuple[tuple[frozenset[str], frozenset[str]], ...]:
    return tuple(_windows(normalized(source), _source_quantities(source, lang), lang))


def _next_word(text_n: str, pos: int, lang: str) -> str:
    """The word right after ``pos``: a Chinese character (a measure word), an English stem;
    "" when a function word or nothing follows."""
    if lang == "zh":
        m = re.match(rf"\s*([{CJK}])", text_n[pos:])
        return m.group(1) if m and m.group(1) not in _ZH_WINDOW_SKIP else ""
    m = re.match(r"[\s-]*([A-Za-z_][A-Za-z_'-]*)", text_n[pos:])
    if m is None or m.group(1).casefold() in _EN_FUNCTION:
        return ""
    return _stem(m.group(1))


def _window_conflict(q: Quantity, ctx: _Context) -> Quantity | None:
    """The source's quantity whose words on both sides match ``q``'s best, when its value
    differs: "male inhabitants who are 18 years of age and citizens" against "male inhabitants
    of such State, being 21 years of age, and citizens" (the clause boundaries differ, the
    surrounding words do not). Enough words must match on each side, and no quantity of the
    source with ``q``'s value may match (nearly) as well."""
    left, right = _windows(ctx.answer_n, [q], ctx.lang)[0]
    need_left, need_right, need = _WINDOW_NEED[ctx.lang]
    dim = _dim(q)[0]
    best: tuple[int, Quantity] | None = None
    same = -1
    source_q = _source_quantities(ctx.source_text, ctx.lang)
    # A count without a unit counts something: the word right after it must be the same ("3
    # States" and "9 States", not "三种情形" and "情形之一").
    counted = _next_word(ctx.answer_n, q.end, ctx.lang) if q.unit in ("", "ordinal") else ""
    source_n = normalized(ctx.source_text)
    for p, (p_left, p_right) in zip(
        source_q, _source_windows(ctx.source_text, ctx.lang), strict=True
    ):
        if _dim(p)[0] != dim:
            continue
        if counted and _next_word(source_n, p.end, ctx.lang) != counted:
            continue
        on_left, on_right = len(left & p_left), len(right & p_right)
        score = on_left + on_right
        if _same_quantity(q, p, loose=False):
            same = max(same, score)
        elif (
            on_left >= need_left
            and on_right >= need_right
            and score >= need
            and (best is None or score > best[0])
        ):
            best = (score, p)
    if best is None or same >= best[0] - 1:
        return None
    return best[1]


@lru_cache(maxsize=64)
def _source_quantities(source: str, lang: str) -> tuple[Quantity, ...]:
    return tuple(extract_quantities(normalized(source), lang, is_normalized=True))


def _judge(
    answer_n: str, source: str, question: str, lang: str
) -> tuple[_Context, list[Quantity], dict[int, str]]:
    """The context, the answer's quantities, and which of them the question or arithmetic
    explain (a worked step's result may feed the next step)."""
    source_q = list(_source_quantities(source, lang))
    question_n = normalized(question)
    question_q = extract_quantities(question_n, lang, is_normalized=True, code=True)
    # Numbers of the question's case (a bare 0 or 1 says nothing: "one of").
    case_values = {
        v
        for q in question_q
        if q.unit != "ordinal" and (q.unit or q.value >= 2)
        for v in _operand_values(q)
    }
    case_values |= _date_spans(question_n)
    all_values = case_values | {v for q in source_q for v in _operand_values(q)}
    given = set(case_values)
    case = is_case_question(question, lang, source=source)
    if case:
        # A worked answer may add up two periods of the source ("60日 + 30日 = 90日").
        case_values = set(all_values)
    answer_q = extract_quantities(answer_n, lang, is_normalized=True)
    ctx = _Context(
        answer_n, _align_form(source), lang, source_q + question_q, question_q, case,
        case_values, all_values, given, _equations(answer_n), _clauses(answer_n, answer_q, lang),
        _source_clauses(source, lang), source, question,
    )  # fmt: skip
    explained: dict[int, str] = {}
    changed = True
    while changed:
        changed = False
        for i, q in enumerate(answer_q):
            if i in explained:
                continue
            how = _explained(q, ctx)
            if how is None:
                continue
            explained[i] = how
            if ctx.case_values and not _in_pool(q, source_q):
                # A worked step's result feeds the next step; only a result of the question's
                # own figures counts as one of them.
                new = set(_operand_values(q)) - ctx.case_values
                if new:
                    ctx.case_values |= new
                    ctx.all_values |= new
                    if how in (_ASKED, _STRONG):
                        ctx.given |= new
                    changed = True
    return ctx, answer_q, explained


def _check_quantities(
    answer_n: str, source: str, question: str, lang: str
) -> list[tuple[str, bool]]:
    """The answer's quantities that contradict the source, as the answer wrote them, each with
    whether the contradiction is certain.

    A number the question or a calculation explains (``how`` set) is only ever suspect: some
    reading of the case produced it.

    A quantity only the source's own numbers explain (a case answer may restate or combine
    them) still contradicts the source when the answer's words right around it recur in the
    source with another value: the same rule, restated with another number.
    """
    ctx, answer_q, explained = _judge(answer_n, source, question, lang)
    swapped = []
    for i, q in enumerate(answer_q):
        how = explained.get(i)
        certain = False
        if how == _ASKED:
            continue
        if how == _STRONG:
            # Arithmetic may produce any number, but a default the answer states with its unit
            # is a claim about the source ("the default of 10 seconds" where it says 10
            # minutes); a bare number of a calculation is not.
            found = None if q.unit in ("", "ordinal") else _default_conflict(q, ctx, ctx.question)
        elif how == _WEAK:
            # a longer phrase than usual: a case answer's paraphrase meets short ones by chance
            found = _swapped(q, ctx.answer_n, ctx.source_al, ctx.lang, shortest=_OVERRIDE[lang])
            if found is None and not _own_provision_states(q, ctx):
                other = _window_conflict(q, ctx)
                found = None if other is None else [other.value]
        else:
            verdict = _contradiction(q, ctx)
            found, certain = verdict if verdict is not None else (None, False)
        if found:
            shown = f"{q.text} (source: {', '.join(_show(v) for v in found[:3])})"
            swapped.append((shown, certain))
    return swapped


def unsupported_quantities(
    text: str, source: str, question: str = "", *, lang: str | None = None
) -> list[Quantity]:
    """Rule quantities of ``text`` (with a unit: days, %, 元, times…) that neither the source
    nor the question states (in any exact unit conversion) and that no arithmetic explains.

    Not a contradiction (``check_numbers`` does not flag them): evidence that a sentence says
    something the source does not, for ``support``.
    """
    lang = lang or detect_lang(source, text)
    text_n = normalized(text)
    ctx, answer_q, explained = _judge(text_n, source, question, lang)
    # A figure the source shows only in its code ("stop_after_delay(10)  # after 10 seconds")
    # is still in the source: a prose answer may state it.
    with_code = _source_quantities_with_code(source, lang)
    return [
        q
        for i, q in enumerate(answer_q)
        if i not in explained
        and q.unit not in ("", "ordinal")
        and not _in_pool(q, ctx.pool)
        and not _in_pool(q, with_code)
        and not _APPROXIMATE.search(text_n[max(0, q.start - 16) : q.start])
        and not _APPROXIMATE_AFTER.match(text_n, q.end)
    ]


# An approximate figure is the answer's own gloss of an exact one ("九十日，约三个月", "两个月左右",
# "about 3 months", "(≈ 13 weeks)"), not a rule of its own.
_APPROXIMATE = re.compile(
    r"(?:约|大约|大概|约合|约为|约等于|将近|接近|差不多|近|≈|~|\b(?:about|around|roughly"
    r"|approximately|approx\.|nearly|almost|some|circa))\s*$",
    re.IGNORECASE,
)
_APPROXIMATE_AFTER = re.compile(
    r"\s*(?:左右|上下|多一点|多点|出头|有余|\bor\s+so\b)", re.IGNORECASE
)


@lru_cache(maxsize=64)
def _source_quantities_with_code(source: str, lang: str) -> tuple[Quantity, ...]:
    return tuple(extract_quantities(normalized(source), lang, is_normalized=True, code=True))


# --- references and laws ---------------------------------------------------------------------

# Headings are often cut out of a chunk: references to them are only checked when the source
# has some.
_HEADING_KINDS = frozenset({"章", "节", "编", "chapter", "title", "part", "rule", "clause"})


def _check_references(
    answer_n: str, source: str, question_n: str, lang: str
) -> tuple[list[str], list[str]]:
    """(references absent from the source and question, a mismatching opening citation)."""
    source_n = normalized(source)
    known = source_references(source_n) | references(question_n)
    known_kinds = {k for k, _ in known}
    bad = [
        f"{kind} {num}" if lang == "en" else f"第{num}{kind}"
        for kind, num in sorted(references(answer_n))
        if (kind, num) not in known and (kind not in _HEADING_KINDS or kind in known_kinds)
    ]
    if lang == "en" and not bad:
        asked = set(unknown_subsections(question_n, source_n))
        bad = [s for s in unknown_subsections(answer_n, source_n) if s not in asked]
    target = question_target(question_n, lang)
    lead = lead_citation(answer_n, lang)
    if bad or not target or lead is None:
        return bad, []
    law, lead_refs = lead
    question_sq = squash(question_n)
    same = law is None or share_in(law_core(law), question_sq) >= 0.8
    lead_kinds = {k for k, _ in lead_refs}
    comparable = {r for r in target if r[0] in lead_kinds}
    # "Article I, Section 5" against a question about Section 8 ("Amendment XV, Section 3"
    # against Amendment XV, Section 1: one differing part is enough); a zh answer's opening 第N条
    # against the question's article.
    if lang == "zh":
        differs = not (lead_refs & comparable)
    else:
        differs = {k for k, _ in comparable} == lead_kinds and not comparable <= lead_refs
    if same and comparable and differs:
        return bad, [", ".join(f"{k} {n}" for k, n in sorted(lead_refs))]
    return bad, []


# The law a text is about: a 《title》, or a title line "中华人民共和国民法典 合同编".
_ZH_TITLE_LAW = re.compile(
    rf"《([^》]{{2,40}})》|^((?:中华人民共和国)?[{CJK}]{{2,20}}?(?:法典|法|条例))(?:\s|$)"
)
_ZH_QUESTION_LAW = re.compile(
    rf"《([^》]{{2,40}})》|(中华人民共和国[{CJK}]{{2,20}}?(?:法典|法|条例))"
)


def _identity_laws(source: str, question: str) -> list[str]:
    """Laws the question names by title, and the law the source's title line names."""
    laws = [m.group(1) or m.group(2) for m in _ZH_QUESTION_LAW.finditer(question)]
    for line in source.splitlines()[:6]:
        line = line.strip().lstrip("#").strip()
        if line and len(line) <= 40 and not line.startswith("第"):
            m = _ZH_TITLE_LAW.search(line)
            if m:
                laws.append(m.group(1) or m.group(2))
    return [law for law in laws if len(law_core(law)) >= 2]


def _citing_sentences(answer: str, name: str, lang: str) -> list[str]:
    from .support import split_sentences

    return [s for s in split_sentences(answer, lang) if name in s]


def _foreign_laws(answer: str, source: str, question: str, lang: str) -> list[str]:
    """Laws the answer names that are not the source's, on evidence.

    A law the source and question never name is not enough (a chunk seldom repeats its own
    title): it must differ from the law the question or the source's title names, or the
    sentence naming it must cite no article and say what the source does not (its words mostly
    absent from the source). Articles it cites are checked on their own.
    """
    from .support import support_tokens

    names = unknown_laws(answer, f"{source}\n{question}", lang)
    if not names:
        return []
    identity = _identity_laws(source, question) if lang == "zh" else []
    src_tokens = set(support_tokens(source, lang))
    out = []
    for name in names:
        if identity and not any(same_law(name, law) for law in identity):
            out.append(name)
            continue
        for sent in _citing_sentences(answer, name, lang):
            if references(normalized(sent)):
                continue
            toks = support_tokens(sent, lang)
            if len(toks) >= 6 and sum(t in src_tokens for t in toks) / len(toks) < 0.5:
                out.append(name)
                break
    return out


# --- dates stated as rules ---------------------------------------------------------------------

_ZH_YMD = re.compile(r"(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_EN_DAY_OF = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th|d)?\s+(?:day\s+of\s+)?({_MONTHS})(?:,?\s+(\d{{4}}))?\b"
    rf"|\b({_MONTHS})\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?\b"
)


def _date_quantities(text_n: str, lang: str) -> list[Quantity]:
    """Dates of a normalised text as quantities of unit 'date' (value YYYYMMDD, year 0 when
    not given): "2007年7月1日", "7月1日", "the 15th day of January", "March 4, 2024"."""
    out = []
    if lang == "zh":
        for m in _ZH_YMD.finditer(text_n):
            year, month, day = int(m.group(1) or 0), int(m.group(2)), int(m.group(3))
            out.append(Quantity(year * 10000 + month * 100 + day, "date", m.group(), *m.span()))
        return out
    months = _MONTHS.split("|")
    for m in _EN_DAY_OF.finditer(text_n):
        if m.group(1):
            day, month, year = int(m.group(1)), months.index(m.group(2)) + 1, m.group(3)
        else:
            day, month, year = int(m.group(5)), months.index(m.group(4)) + 1, m.group(6)
        value = int(year or 0) * 10000 + month * 100 + day
        out.append(Quantity(value, "date", m.group(), *m.span()))
    return out


def _same_date(a: Quantity, b: Quantity) -> bool:
    """Same month and day, and the same year unless one of them gives none."""
    ya, yb = divmod(int(a.value), 10000), divmod(int(b.value), 10000)
    return ya[1] == yb[1] and (ya[0] == yb[0] or 0 in (ya[0], yb[0]))


@lru_cache(maxsize=64)
def _source_dates(source: str, lang: str) -> tuple[tuple[Quantity, ...], tuple[Any, ...]]:
    source_n = normalized(source)
    dates = _date_quantities(source_n, lang)
    return tuple(dates), tuple(_windows(source_n, dates, lang))


def _check_dates(answer_n: str, source: str, question_n: str, lang: str) -> list[str]:
    """Dates the answer states where the source states another for the same rule ("本规定自
    2007年7月1日起施行" against "自2007年1月1日起施行"): a date neither the source nor the
    question has, whose words on both sides match a date of the source best (word overlap, so
    only ever a suspicion)."""
    answer_dates = _date_quantities(answer_n, lang)
    if not answer_dates:
        return []
    source_dates, source_windows = _source_dates(source, lang)
    known = [*source_dates, *_date_quantities(question_n, lang)]
    need_left, need_right, need = _WINDOW_NEED[lang]
    out = []
    for d, (left, right) in zip(answer_dates, _windows(answer_n, answer_dates, lang), strict=True):
        if any(_same_date(d, k) for k in known):
            continue
        best: tuple[int, Quantity] | None = None
        for p, (p_left, p_right) in zip(source_dates, source_windows, strict=True):
            on_left, on_right = len(left & p_left), len(right & p_right)
            score = on_left + on_right
            ok = on_left >= need_left and on_right >= need_right and score >= need
            if ok and (best is None or score > best[0]):
                best = (score, p)
        if best is not None:
            out.append(f"{d.text} (source: {best[1].text})")
    return out


def check_numbers(
    output: str, source: str, question: str = "", *, lang: str | None = None
) -> Finding | None:
    """Quantities, articles and laws of the answer that contradict the source.

    A number is flagged when a clause of the source stating the same rule (its unit, and the
    answer's words around the number in order) gives another value, and the answer's value is
    neither in the question, nor in any such clause, nor one or two arithmetic steps from the
    question's and the source's numbers (days between the question's dates included), nor the
    correct result of a calculation written out in the answer. A number the source lacks is not
    flagged. Dates, years, list markers, code and version numbers are not checked. Cited
    articles/sections must be in the source or question; the article an answer cites must be
    the one whose content it gives (``provisions.misattributed_units``); the article it opens
    by citing must be the one the question asks about; a section cited by title must exist;
    a law named must be the source's (see ``_foreign_laws``).
    """
    if not source.strip():
        return None
    lang = lang or detect_lang(source, output)
    answer_n = normalized(output)
    question_n = normalized(question)
    problems: list[str] = []
    sure: list[bool] = []  # whether each problem is certain (see ``Finding.certain``)
    details: dict[str, Any] = {}
    bad_refs, lead = _check_references(answer_n, source, question_n, lang)
    if bad_refs:
        problems.append(f"cites {', '.join(bad_refs)}, not in the source")
        sure.append(_absent_ref_certain(bad_refs, answer_n, source, question_n, lang))
        details["unknown_refs"] = bad_refs
    if lead:
        # the question names one provision, the answer opens by citing another: structural
        problems.append(f"answer attributes it to {lead[0]}; the question asks about another")
        sure.append(True)
        details["lead_citation"] = lead[0]
    sections = unknown_sections(output, source, question)
    if sections:
        # a section title matched loosely against the source's headings
        problems.append(f"cites section {sections[0]!r}, not in the source")
        sure.append(False)
        details["unknown_sections"] = sections
    if not bad_refs and not lead:
        moved = misattributed_units(output, source, lang)
        if moved:
            # which provision the answer restates is inferred from word overlap
            cited, actual = moved[0]
            problems.append(f"cites {cited}, but restates {actual}")
            sure.append(False)
            details["misattributed_unit"] = [list(m) for m in moved]
    laws = _foreign_laws(output, source, question, lang)
    if laws:
        problems.append(f"cites {', '.join(laws[:3])}, not the source's law")
        # another law named is no contradiction: a good answer may cite a related law too
        sure.append(False)
        details["unknown_laws"] = laws
    quantities = _check_quantities(answer_n, source, question, lang)
    # dates are matched by the words around them only: suspect
    quantities += [(d, False) for d in _check_dates(answer_n, source, question_n, lang)]
    if quantities:
        swapped = [text for text, _ in quantities]
        problems.append(f"number differs from the source: {'; '.join(swapped[:3])}")
        sure.append(any(certain for _, certain in quantities))
        details["swapped"] = swapped
    if not problems:
        return None
    return Finding("; ".join(problems), details, certain=any(sure))


# A question naming the document it asks about: a title in 《》, a law ("保险法", "民法典"), a
# product's terms, "the Constitution", "the Insurance Act".
_ZH_DOCUMENT = re.compile(
    rf"《[^》]{{2,40}}》|(?<![{CJK}])(?:(?![本该此这其上])[{CJK}]){{1,20}}?"
    r"(?:法典|(?<![方做说用写看手想算办])法(?!律|定|院|官|人)|条例|细则|章程|条款|规则|公约)"
)
_EN_DOCUMENT = re.compile(
    r"\b(?:[A-Z][\w.'-]*\s+(?:of\s+(?:the\s+)?)?){0,6}(?:Constitution|Act|Code|Law|Regulations?"
    r"|Rules|Charter|Treaty|Convention|Directive|Statute|Ordinance|Terms|Policy|Agreement)\b"
)


def _absent_ref_certain(
    bad: Sequence[str], answer_n: str, source: str, question_n: str, lang: str
) -> bool:
    """An absent article is certain when the question names the document, the source numbers
    its own provisions of that kind (the document asked about lacks the provision), and the
    answer does not attribute the article to a law other than the one asked about."""
    if (_ZH_DOCUMENT if lang == "zh" else _EN_DOCUMENT).search(question_n) is None:
        return False
    kinds = {k for k, _ in source_references(normalized(source))}
    own = [ref for ref in bad if any(k in ref.casefold() for k in kinds)]
    return any(not _of_another_law(ref, answer_n, question_n, lang) for ref in own)


def _of_another_law(ref: str, answer_n: str, question_n: str, lang: str) -> bool:
    """Whether the answer names, next to ``ref``, a law the question does not name ("《民法典》
    第500条" in an answer to a question about the Insurance Law, "Article 5 of the Privacy Act")."""
    if lang == "zh":
        num = re.sub(r"\D", "", ref)
        pattern, law_re = rf"第\s*{num}\s*[条款项章节编]", _ZH_LAW_BEFORE
    else:
        kind, _, num = ref.partition(" ")
        pattern, law_re = rf"\b{re.escape(kind)}\s+{re.escape(num)}\b", _EN_LAW_NEAR
    for m in re.finditer(pattern, answer_n, re.IGNORECASE):
        if lang == "zh":
            near = answer_n[max(0, m.start() - 24) : m.start()]
        else:
            near = answer_n[m.end() : m.end() + 60]
        laws = [g for found in law_re.finditer(near) for g in found.groups() if g]
        if laws and not any(same_law(law, question_n) for law in laws):
            return True
    return False


# A law named right before an article ("《民法典》第", "消费者权益保护法第"), or after one in
# English ("of the Privacy Act").
_ZH_LAW_BEFORE = re.compile(
    rf"《([^》]{{2,40}})》\s*$|(?<![本该此这])([{CJK}]{{2,16}}?(?:法典|法|条例|办法|规定))\s*$"
)
_EN_LAW_NEAR = re.compile(
    r"^\s*(?:,\s*\w+\s+\d+\s*)?of\s+(?:the\s+)?((?:[A-Z][\w'.-]*\s+){0,6}"
    r"(?:Act|Code|Convention|Treaty|Regulations?|Statute|Constitution|Law))\b"
)
