"""Numbers and references of an answer must come from the source or the question.

A rule quantity (a deadline, period, percentage, multiple or amount: "三十日", "20%", "2倍",
"ten dollars") passes when the source or the question states it, or when it follows in one
arithmetic step from them (a worked calculation or a case). A number the answer restates in the
source's own words but changes ("…之日起15日内" for "…之日起5日内") fails even when 15 happens to
occur elsewhere. Cited articles and laws must be in the source or the question.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .base import Finding, detect_lang, normalized, squash
from .provisions import (
    EN_REF,
    ZH_CLAUSE_REF,
    ZH_REF,
    is_case_question,
    law_core,
    lead_citation,
    question_target,
    references,
    share_in,
    source_references,
    unknown_laws,
)

# Units of rule quantities by class (text normalised by normalize_numerals).
_ZH_UNITS: list[tuple[str, str]] = [
    (r"个工作日|工作日|日|天", "day"),
    (r"个月", "month"),
    (r"周年|年(?!度|级|龄|满|间|代|初|底|末|内外)", "year"),
    (r"年(?=内外)", "year"),
    (r"周岁|岁", "age"),
    (r"个小时|小时", "hour"),
    (r"个星期|星期|周", "week"),
    (r"倍", "multiple"),
    (r"元", "money"),
    (r"%|‰", "percent"),
    (r"公里|千米|米|公斤|千克|吨|亩", "measure"),
    (r"(?:人|名)(?=以上|以下|以内|或者|至)", "people"),
]
_EN_UNITS: list[tuple[str, str]] = [
    (r"(?:business\s+|working\s+|calendar\s+)?days?", "day"),
    (r"months?", "month"),
    (r"years?", "year"),
    (r"hours?", "hour"),
    (r"weeks?", "week"),
    (r"times|fold", "multiple"),
    (r"dollars?|cents?", "money"),
    (r"%|percent|per\s*cent", "percent"),
    (r"miles?|feet|foot|acres?", "measure"),
]
_ZH_UNIT_RE = "|".join(f"(?P<zh_{cls}{i}>{pat})" for i, (pat, cls) in enumerate(_ZH_UNITS))
_EN_UNIT_RE = "|".join(f"(?P<en_{cls}{i}>{pat})" for i, (pat, cls) in enumerate(_EN_UNITS))
_NUM = r"(?<![\d.,/])(\d+(?:\.\d+)?)(?:/(\d+))?"
_QTY_ZH = re.compile(rf"{_NUM}\s*(?:{_ZH_UNIT_RE})?")
_QTY_EN = re.compile(rf"(\$\s*)?{_NUM}(?:\s+|-)?(?:(?:{_EN_UNIT_RE})\b)?", re.IGNORECASE)
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
_ENUM_MARK = re.compile(r"(?:^|\n)\s*[(（]?\d+[.)）、](?!\d)|[(（]\d+[)）]")
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


def _masked_spans(text: str, lang: str) -> list[tuple[int, int]]:
    spans = [m.span() for m in (_ZH_DATE if lang == "zh" else _EN_DATE).finditer(text)]
    for regex in (ZH_REF, ZH_CLAUSE_REF, EN_REF, _ENUM_MARK):
        spans += [m.span() for m in regex.finditer(text)]
    return spans


def extract_quantities(
    text: str, lang: str | None = None, *, is_normalized: bool = False
) -> list[Quantity]:
    """Numbers of ``text`` (numerals normalised first) with their unit class.

    Dates, years, article references and enumeration markers are left out; ordinals ("第3次",
    "the 2nd Year") have the unit 'ordinal', fractions the unit 'ratio' (value 2/3).
    """
    norm = text if is_normalized else normalized(text)
    lang = lang or detect_lang(norm)
    masked = _masked_spans(norm, lang)
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
    return out


# --- arithmetic -------------------------------------------------------------------------------


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def _rounded_forms(x: float) -> set[float]:
    """``x`` and what an answer may write for it: rounded to 0-2 decimals, floor, ceil."""
    if not math.isfinite(x) or abs(x) > 1e15:
        return set()
    forms = {x, round(x), round(x, 1), round(x, 2), float(math.floor(x)), float(math.ceil(x))}
    return {round(f, 6) for f in forms}


def _operand_values(q: Quantity) -> list[float]:
    """Values a quantity contributes to arithmetic (20% is 20 and 0.2)."""
    return [q.value, q.value / 100] if q.unit == "percent" else [q.value]


def _derivable(target: float, case_values: set[float], all_values: set[float]) -> bool:
    """``target`` = a op b (rounded as answers round), a from the case, b from anywhere."""
    t = round(target, 6)
    for a in case_values:
        for b in all_values:
            results = [a + b, a - b, b - a, a * b]
            if b:
                results.append(a / b)
            if a:
                results.append(b / a)
            if any(t in _rounded_forms(r) for r in results):
                return True
    return False


# "16000元×0.05%×55日＝440元", "8400元×(40%＋30%)＝5880元", "600000 ÷ 30000 = 20".
_EQ_LEFT = re.compile(r"[0-9.%()×xX*÷/+\-−\s元日天个月年周岁倍人名次]+$")
_EQ_RIGHT = re.compile(r"^\s*(?:约|约为|约等于)?\s*([0-9]+(?:\.[0-9]+)?)")
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
        if value is not None and (stated in _rounded_forms(value) or _close(stated, value)):
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


# --- matching a number against the source -----------------------------------------------------

# Conversions an answer may make on its own: years ↔ months, weeks ↔ days, percent ↔ ratio.
_CONVERSIONS = {
    ("year", "month"): 12.0,
    ("month", "year"): 1 / 12,
    ("week", "day"): 7.0,
    ("day", "week"): 1 / 7,
    ("percent", "ratio"): 0.01,
    ("ratio", "percent"): 100.0,
    ("multiple", "percent"): 100.0,
}
# Unit classes matched as one (周岁 is an age in years; "3名以上" is a count).
_COMPATIBLE = {"age": "year", "people": ""}


def _in_pool(q: Quantity, pool: Sequence[Quantity]) -> bool:
    """Whether ``pool`` has ``q``'s value in a compatible unit (or a bare one)."""
    unit = _COMPATIBLE.get(q.unit, q.unit)
    for p in pool:
        p_unit = _COMPATIBLE.get(p.unit, p.unit)
        if _close(p.value, q.value) and (unit == p_unit or not unit or not p_unit):
            return True
        factor = _CONVERSIONS.get((p_unit, unit))
        if factor is not None and _close(p.value * factor, q.value):
            return True
    return False


_ALIGN_DROP = re.compile(r"[^\w./%]+|(?<!\d)\.|\.(?!\d)|_")
_ALIGN_NUM = r"(\d+(?:\.\d+)?)(?:/(\d+))?(?:st|nd|rd|th)?"
_NUM_AT = re.compile(r"\$?\s*\d+(?:\.\d+)?(?:/\d+)?(?:st|nd|rd|th)?")


def _align_squash(text: str) -> str:
    """Case-folded, without spaces and punctuation, keeping "2.5", "2/3" and "20%" whole."""
    return _ALIGN_DROP.sub("", text.casefold())


@lru_cache(maxsize=256)
def _align_form(text: str) -> str:
    return _align_squash(normalized(text))


def _aligned_numbers(left: str, right: str, source_al: str) -> list[float]:
    """Numbers of the source between ``left`` and ``right`` (the answer's words around one)."""
    found = []
    for m in re.finditer(re.escape(left) + _ALIGN_NUM, source_al):
        if source_al[m.end() : m.end() + len(right)] != right:
            continue
        value = float(m.group(1))
        if m.group(2):
            value /= float(m.group(2)) or 1.0
        found.append(value)
    return found


def _swapped(
    q: Quantity, answer_n: str, source_al: str, lang: str, *, strong: bool = True
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
    shortest = (6 if lang == "zh" else 12) if strong else (4 if lang == "zh" else 5)
    context = m.group()
    for size in range(min(longest, len(context)), shortest - 1, -1):
        found = _aligned_numbers(context[-size:], right.group(), source_al)
        if found:
            return None if any(_close(v, q.value) for v in found) else found
    return None


def _show(v: float) -> str:
    return str(int(v)) if v == int(v) else f"{v:g}"


@dataclass
class _Context:
    """Everything a number of the answer is judged against."""

    answer_n: str
    source_al: str
    lang: str
    pool: list[Quantity]
    question_q: list[Quantity]
    case: bool
    case_values: set[float]
    all_values: set[float]
    equations: list[tuple[float, list[float]]]


def _verdict(q: Quantity, ctx: _Context) -> str | None:
    """'ok', 'swapped', 'unsupported' or None (not decided: a later worked step may explain it)."""
    if _in_pool(q, ctx.question_q):
        return "ok"
    # In a case answer a number the source has (same unit) is taken as right: the answer
    # paraphrases, and its words may meet another sentence of the source by chance.
    if ctx.case and _in_pool(q, ctx.pool):
        return "ok"
    if _swapped(q, ctx.answer_n, ctx.source_al, ctx.lang) is not None:
        return "swapped"
    if q.unit in ("", "ordinal"):
        # A bare count or an ordinal can only be wrong where it restates the source's words;
        # a short phrase is enough when the answer restates the law rather than a case.
        weak = _swapped(q, ctx.answer_n, ctx.source_al, ctx.lang, strong=False)
        return "swapped" if not ctx.case and weak is not None else "ok"
    if _in_pool(q, ctx.pool):
        return "ok"
    if ctx.case_values:
        targets = [q.value] + ([q.value / 100] if q.unit == "percent" else [])
        if any(_derivable(t, ctx.case_values, ctx.all_values) for t in targets):
            return "ok"
    known = ctx.all_values | {p.value for p in ctx.pool}
    for result, operands in ctx.equations:
        if (q.value in _rounded_forms(result) or _close(q.value, result)) and all(
            any(_close(o, k) for k in known) for o in operands
        ):
            return "ok"
    return None


@lru_cache(maxsize=64)
def _source_quantities(source: str, lang: str) -> tuple[Quantity, ...]:
    return tuple(extract_quantities(normalized(source), lang, is_normalized=True))


def _check_quantities(
    answer_n: str, source: str, question: str, lang: str
) -> tuple[list[str], list[str]]:
    """(swapped, unsupported) quantities of the answer, as the answer wrote them."""
    source_q = list(_source_quantities(source, lang))
    question_q = extract_quantities(normalized(question), lang, is_normalized=True)
    # Numbers of the question's case (a bare 0 or 1 says nothing: "one of").
    case_values = {v for q in question_q if q.unit or q.value >= 2 for v in _operand_values(q)}
    all_values = case_values | {v for q in source_q for v in _operand_values(q)}
    case = is_case_question(question, lang, source=source)
    if case:
        # A worked answer may add up two periods of the source ("60日 + 30日 = 90日").
        case_values = set(all_values)
    ctx = _Context(
        answer_n, _align_form(source), lang, source_q + question_q, question_q, case,
        case_values, all_values, _equations(answer_n),
    )  # fmt: skip
    answer_q = extract_quantities(answer_n, lang, is_normalized=True)
    verdicts: dict[int, str] = {}
    changed = True
    while changed:
        changed = False
        for i, q in enumerate(answer_q):
            if i in verdicts or (verdict := _verdict(q, ctx)) is None:
                continue
            verdicts[i] = verdict
            if verdict == "ok" and ctx.case_values and not _in_pool(q, source_q):
                # A worked step's result may feed the next step.
                new = set(_operand_values(q)) - ctx.case_values
                if new:
                    ctx.case_values |= new
                    ctx.all_values |= new
                    changed = True
    swapped: list[str] = []
    unsupported: list[str] = []
    for i, q in enumerate(answer_q):
        verdict = verdicts.get(i, "unsupported")
        if verdict == "swapped":
            found = (
                _swapped(q, answer_n, ctx.source_al, lang)
                or _swapped(q, answer_n, ctx.source_al, lang, strong=False)
                or []
            )
            swapped.append(f"{q.text} (source: {', '.join(_show(v) for v in found[:3])})")
        elif verdict == "unsupported":
            unsupported.append(q.text)
    return swapped, unsupported


# Headings are often cut out of a chunk: references to them are only checked when the source
# has some.
_HEADING_KINDS = frozenset({"章", "节", "编", "chapter", "title", "part", "rule", "clause"})


def _check_references(
    answer_n: str, source: str, question_n: str, lang: str
) -> tuple[list[str], list[str]]:
    """(references absent from the source and question, a mismatching opening citation)."""
    known = source_references(normalized(source)) | references(question_n)
    known_kinds = {k for k, _ in known}
    bad = [
        f"{kind} {num}" if lang == "en" else f"第{num}{kind}"
        for kind, num in sorted(references(answer_n))
        if (kind, num) not in known and (kind not in _HEADING_KINDS or kind in known_kinds)
    ]
    target = question_target(question_n, lang)
    lead = lead_citation(answer_n, lang)
    if bad or not target or lead is None:
        return bad, []
    law, lead_refs = lead
    question_sq = squash(question_n)
    same = law is None or share_in(law_core(law), question_sq) >= 0.8
    lead_kinds = {k for k, _ in lead_refs}
    comparable = {r for r in target if r[0] in lead_kinds}
    # "Article I, Section 5" against a question about Section 8; a zh answer's opening 第N条
    # against the question's article.
    if (
        same
        and comparable
        and not (lead_refs & comparable)
        and (lang == "zh" or {k for k, _ in comparable} == lead_kinds)
    ):
        return bad, [", ".join(f"{k} {n}" for k, n in sorted(lead_refs))]
    return bad, []


def check_numbers(
    output: str, source: str, question: str = "", *, lang: str | None = None
) -> Finding | None:
    """Quantities, articles and laws of the answer that the source and question do not back.

    A number passes when the source or question has it (same unit class, or a plain unit
    conversion such as 二年 = 24个月), or when it follows in one arithmetic step (+, -, ×, ÷,
    percentage of; rounded) from a number of a case question and a number of the source or
    question, or from an answer number that passed that way (a chain of worked steps), or is
    the correct result of a calculation written out in the answer. Dates, years and list
    markers are not checked; bare counts and ordinals only where the answer restates the
    source's words around them. Cited articles/sections and law names must be in the source or
    question, and the article an answer opens by citing must be the one the question asks about.
    """
    if not source.strip():
        return None
    lang = lang or detect_lang(source, output)
    answer_n = normalized(output)
    question_n = normalized(question)
    problems: list[str] = []
    details: dict[str, Any] = {}
    bad_refs, lead = _check_references(answer_n, source, question_n, lang)
    if bad_refs:
        problems.append(f"cites {', '.join(bad_refs)}, not in the source")
        details["unknown_refs"] = bad_refs
    if lead:
        problems.append(f"answer attributes it to {lead[0]}; the question asks about another")
        details["lead_citation"] = lead[0]
    laws = unknown_laws(output, f"{source}\n{question}", lang)
    if laws:
        problems.append(f"cites {', '.join(laws[:3])}, not the source's law")
        details["unknown_laws"] = laws
    swapped, unsupported = _check_quantities(answer_n, source, question, lang)
    if swapped:
        problems.append(f"number differs from the source: {'; '.join(swapped[:3])}")
        details["swapped"] = swapped
    if unsupported:
        problems.append(f"numbers not in the source or question: {', '.join(unsupported[:5])}")
        details["unsupported_numbers"] = unsupported
    return Finding("; ".join(problems), details) if problems else None
