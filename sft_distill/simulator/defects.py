"""Seeded defects in the simulator's generated samples, with the ground truth kept aside.

With ``SimulatorConfig.defect_rate`` R > 0 (``--defect-rate R``; for ``--dry-run`` the
``SFT_DISTILL_SIM_DEFECT_RATE`` environment variable), about R of the samples of each
generation reply get one defect. Which samples, which kind and how are a pure function of the
seed, the model, the document and the sample, so a rerun sees the same defects. The kinds are
those of the labelled benchmark set (``benchmarks/bench_quality.py``):

- ``number_swapped``: a quantity of the answer changed (三十日 -> 四十五日, "seven Years" ->
  "nine Years")
- ``wrong_article``: an article number changed (第四十七条 -> 第五十一条, Article V -> Article IX),
  or an article the source lacks cited at the start
- ``context_dependent``: the question leans on the unseen source ("根据上述资料，…",
  "According to the passage above, …")
- ``truncated``: the answer cut off mid-sentence
- ``non_answer``: "资料中没有提及…", "The text does not say…"
- ``misattributed``: the answer replaced by another provision of the same source
- ``invented_sentence``: an invented rule sentence added to the answer

Each sample picked gets one of the kinds that can apply to it (no number to swap, an answer too
short to cut, a question with its own material in ``input`` rule some out), ``number_swapped``
weighing three times the others since few answers allow it.
``DefectLedger`` keeps each sample's kind (None: clean) by ``fingerprint(instruction, input,
output)``; the server serves it at ``GET /defects``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError
from ..ids import text_digest
from ..llm.prompts import detect_language
from .seeds import seed_of, unit

__all__ = [
    "DEFECT_KINDS",
    "DEFECT_RATE_ENV",
    "DefectLedger",
    "dry_run_defect_rate",
    "fingerprint",
    "inject_defects",
]

DEFECT_KINDS: tuple[str, ...] = (
    "number_swapped",
    "wrong_article",
    "context_dependent",
    "truncated",
    "non_answer",
    "misattributed",
    "invented_sentence",
)

DEFECT_RATE_ENV = "SFT_DISTILL_SIM_DEFECT_RATE"

Sample = dict[str, str]


def fingerprint(instruction: str, input: str, output: str) -> str:
    """How the ledger names a sample: its stripped texts, hashed (the pipeline strips them too)."""
    text = "\x1f".join(t.strip() for t in (instruction, input, output))
    return text_digest(text, size=10).hex()


def dry_run_defect_rate() -> float:
    """The defect rate a dry run's simulator gets from ``SFT_DISTILL_SIM_DEFECT_RATE`` (0 unset).

    Raises:
        ConfigError: the variable is not a number from 0 to 1.
    """
    raw = os.environ.get(DEFECT_RATE_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{DEFECT_RATE_ENV}: must be a number from 0 to 1, got {raw!r}")
    return rate


# --- numbers in words --------------------------------------------------------------------------

_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6}
_ZH_DIGITS |= {"七": 7, "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}


def zh_to_int(text: str) -> int:
    """A Chinese numeral as an integer (三十 = 30, 一百零五 = 105, 两万 = 20000)."""
    total = section = digit = 0
    for ch in text:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch in _ZH_UNITS:
            section += (digit or 1) * _ZH_UNITS[ch]
            digit = 0
        elif ch == "万":
            total += (section + digit) * 10_000
            section = digit = 0
    return total + section + digit


def int_to_zh(n: int) -> str:
    """An integer below 100 million as a Chinese numeral (15 = 十五, 105 = 一百零五)."""
    digits = "零一二三四五六七八九"

    def below_10k(m: int) -> str:
        out, zero = "", False
        for power, name in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
            d = m // power % 10
            if d:
                out += ("零" if zero else "") + digits[d] + name
                zero = False
            elif out:
                zero = True
        return out

    if n == 0:
        return "零"
    high, low = divmod(n, 10_000)
    text = below_10k(high) + "万" if high else ""
    if high and 0 < low < 1000:
        text += "零"
    text += below_10k(low)
    return text[1:] if text.startswith("一十") else text


def int_to_roman(n: int) -> str:
    """An integer from 1 to 3999 in Roman numerals."""
    out = ""
    for value, sym in (
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ):
        while n >= value:
            out += sym
            n -= value
    return out


def roman_to_int(text: str) -> int:
    """A Roman numeral as an integer (no validation: the regex found it)."""
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for i, ch in enumerate(text):
        v = values[ch]
        total += -v if i + 1 < len(text) and values[text[i + 1]] > v else v
    return total


def _other(n: int, u: float) -> int:
    """Another plausible value for ``n``: half as much again, or a little more."""
    return n + max(1, n // 2) if u < 0.5 else n + max(1, round(n * 0.2)) + 1


# --- the defects -------------------------------------------------------------------------------

_ZH_NUM = "零〇一二两三四五六七八九十百千万"
# Not an ordinal (第三), "上一年度" or part of a larger number.
_ZH_QUANTITY = re.compile(
    rf"(?<![第上下本每同当前后0-9{_ZH_NUM}])(?:百分之(?P<pct>[{_ZH_NUM}]+|\d+)"
    rf"|(?P<num>\d+|[{_ZH_NUM}]+)(?=个月|日|天|年(?!度)|月|周|倍|%|％|元|万元|小时|岁|次|人|项|个|名|家|份"
    rf"|种|件|类))"
)
# A date: its numbers are not quantities.
_ZH_DIGIT = f"[0-9{_ZH_NUM}]"
_ZH_DATE = re.compile(f"{_ZH_DIGIT}{{2,4}}年{_ZH_DIGIT}{{1,3}}月(?:{_ZH_DIGIT}{{1,3}}日)?")
_EN_WORDS = {
    "one": "two",
    "two": "three",
    "three": "five",
    "four": "six",
    "five": "seven",
    "six": "eight",
    "seven": "nine",
    "eight": "ten",
    "nine": "twelve",
    "ten": "fifteen",
    "twelve": "eighteen",
    "fifteen": "twenty",
    "twenty": "thirty",
    "thirty": "forty",
    "forty": "sixty",
    "fifty": "seventy",
    "sixty": "ninety",
    "ninety": "sixty",
    "hundred": "thousand",
    "thirds": "fourths",
    "fourths": "fifths",
}
_EN_QUANTITY = re.compile(
    rf"\b(?P<word>{'|'.join(_EN_WORDS)})\b|(?<![\w.,])(?P<num>\d{{1,3}})(?!\w)(?![.,]\d)",
    re.IGNORECASE,
)
# A number right after these is a reference, not a quantity.
_EN_REFERENCE_BEFORE = re.compile(r"(?:Article|Section|Amendment|Clause|§)\s*$", re.IGNORECASE)
_EN_UNIT_AFTER = re.compile(
    r"\s*(?:years?|days?|months?|weeks?|hours?|dollars?|percent|%|thirds|fourths|fifths|times)\b",
    re.IGNORECASE,
)


def _swap_number(s: Sample, lang: str, u: float) -> Sample | None:
    """A quantity of the answer replaced by another value (dates and article numbers left)."""
    out = s["output"]
    if lang == "zh":
        dates = [m.span() for m in _ZH_DATE.finditer(out)]
        found = [
            m for m in _ZH_QUANTITY.finditer(out) if not any(a <= m.start() < b for a, b in dates)
        ]
        if not found:
            return None
        m = found[int(u * len(found))]
        group = "pct" if m.group("pct") else "num"
        text = m.group(group)
        arabic = text.isdigit()
        value = int(text) if arabic else zh_to_int(text)
        if arabic and len(text) == 4 and 1800 <= value <= 2100:
            return None  # a year
        new = _other(value, unit(str(u)))
        new_text = str(new) if arabic else int_to_zh(new)
        start, end = m.span(group)
    else:
        found = [
            m
            for m in _EN_QUANTITY.finditer(out)
            if not _EN_REFERENCE_BEFORE.search(out[max(0, m.start() - 12) : m.start()])
        ]
        # Quantities with a unit ("seven Years", "two thirds") first: the rule's numbers.
        units = [m for m in found if _EN_UNIT_AFTER.match(out, m.end())]
        found = units or found
        if not found:
            return None
        m = found[int(u * len(found))]
        if m.group("word"):
            word = m.group("word")
            new_text = _EN_WORDS[word.lower()]
            if word[0].isupper():
                new_text = new_text.capitalize()
            start, end = m.span("word")
        else:
            new_text = str(_other(int(m.group("num")), unit(str(u))))
            start, end = m.span("num")
    return dict(s, output=out[:start] + new_text + out[end:])


_ZH_ARTICLE = re.compile(rf"第([{_ZH_NUM}]+|\d+)条")
_EN_ARTICLE = re.compile(r"\b(Article|Section|Amendment)\s+([IVXLC]+|\d+)\b")


def _unused_article(document: str, lang: str, start: int, word: str = "Article") -> str:
    """An article reference the document does not have, numbered from ``start`` up."""
    for n in range(max(1, start), start + 500):
        if lang == "zh":
            ref = f"第{int_to_zh(n)}条"
            if ref not in document and f"第{n}条" not in document:
                return ref
        else:
            ref = f"{word} {int_to_roman(n)}"
            if not re.search(rf"\b{re.escape(ref)}\b", document):
                return ref
    return "第九百九十九条" if lang == "zh" else f"{word} MMM"


def _wrong_article(s: Sample, lang: str, u: float, document: str) -> Sample:
    """An article number of the answer changed, or an article the source lacks cited first."""
    out = s["output"]
    shift = 3 + int(u * 40)
    if lang == "zh":
        m = _ZH_ARTICLE.search(out)
        if m:
            num = m.group(1)
            value = int(num) if num.isdigit() else zh_to_int(num)
            ref = _unused_article(document, lang, value + shift)
            return dict(s, output=out[: m.start()] + ref + out[m.end() :])
        return dict(s, output=f"根据{_unused_article(document, lang, 100 + shift)}，{out}")
    m = _EN_ARTICLE.search(out)
    if m:
        word, num = m.group(1), m.group(2)
        value = int(num) if num.isdigit() else roman_to_int(num)
        ref = _unused_article(document, lang, value + shift, word)
        if num.isdigit():
            ref = f"{word} {value + shift}"
        return dict(s, output=out[: m.start()] + ref + out[m.end() :])
    ref = _unused_article(document, lang, 8 + shift)
    return dict(s, output=f"Under {ref}, {out[:1].lower()}{out[1:]}")


# Each points back at a text before the question: referential whatever the question holds.
_ZH_CONTEXT = ("根据上述资料，", "结合上文，", "就以上内容而言，", "依据前文所述，")
_EN_CONTEXT = (
    "According to the passage above, ",
    "Based on the text above, ",
    "As the preceding excerpt says, ",
    "Referring to the material above, ",
)


def _context_dependent(s: Sample, lang: str, u: float) -> Sample | None:
    """The question made to lean on the source the student will never see."""
    if s.get("input", "").strip():
        return None  # its material is in the input: it may point at it
    q = s["instruction"]
    if lang == "zh":
        return dict(s, instruction=_ZH_CONTEXT[int(u * len(_ZH_CONTEXT))] + q)
    lead = _EN_CONTEXT[int(u * len(_EN_CONTEXT))]
    return dict(s, instruction=lead + q[:1].lower() + q[1:])


_ZH_CUT_AFTER = set("的和与或在对向从将把被，、")
_EN_CUT_AFTER = frozenset(
    ["the", "of", "to", "and", "or", "shall", "be", "a", "an", "in", "for", "by", "with", "any"]
)
_TERMINAL = set("。！？!?.…;；」』”’\"')）]】>*`~|}")


def _truncate(s: Sample, lang: str, u: float) -> Sample | None:
    """The answer cut off mid-sentence, somewhere between 40% and 85% of its length."""
    out = s["output"]
    if lang == "zh":
        if len(out) < 30:
            return None
        lo, hi = int(len(out) * 0.4), int(len(out) * 0.85)
        spots = [i for i in range(lo, hi) if out[i - 1] in _ZH_CUT_AFTER]
        spots = spots or [i for i in range(lo, hi) if "\u4e00" <= out[i - 1] <= "\u9fff"]
        if not spots:
            return None
        cut = out[: spots[int(u * len(spots))]].rstrip()
    else:
        words = list(re.finditer(r"[A-Za-z']+", out))
        if len(words) < 12:
            return None
        lo, hi = int(len(words) * 0.4), int(len(words) * 0.85)
        middle = words[lo:hi]
        spots = [m for m in middle if m.group().lower() in _EN_CUT_AFTER] or middle
        cut = out[: spots[int(u * len(spots))].end()]
    cut = cut.rstrip()
    while cut and cut[-1] in _TERMINAL:
        cut = cut[:-1].rstrip()
    return dict(s, output=cut) if cut and cut != out else None


_ZH_NON_ANSWERS = (
    "资料中没有提及这一点，无法确定。",
    "根据现有信息无法确定，建议咨询专业人士。",
    "现有规定中找不到相关内容，无法回答这个问题。",
)
_EN_NON_ANSWERS = (
    "The text does not say, so I cannot determine the answer.",
    "I cannot determine this from the information given.",
    "The provided material does not contain this information.",
)


def _non_answer(s: Sample, lang: str, u: float) -> Sample:
    """The answer replaced by a refusal to answer."""
    pool = _ZH_NON_ANSWERS if lang == "zh" else _EN_NON_ANSWERS
    return dict(s, output=pool[int(u * len(pool))])


# A sentence (as the simulator's content module cuts them): ends at a terminal or a line end.
_SENTENCE = re.compile(r"[^\s。！？；!?][^。！？；!?\n]*(?:[。！？；!?]+|(?=\n)|$)")


def _misattributed(s: Sample, u: float, document: str) -> Sample | None:
    """The answer replaced by two sentences of another part of the source."""
    out = s["output"]
    sentences = [m.group().strip() for m in _SENTENCE.finditer(document)]
    sentences = [t for t in sentences if len(t) >= 12 and t not in out and out not in t]
    if len(sentences) < 3:
        return None
    i = int(u * (len(sentences) - 1))
    sep = "" if detect_language(out) == "zh" else " "
    return dict(s, output=sentences[i] + sep + sentences[i + 1])


_ZH_INVENTED = (
    "此外，投保人还须在每年一月三十一日前向保险监督管理机构提交书面确认。",
    "另外，该期限届满后当事人可以申请延长一次，最长不超过六十日。",
    "依照本条支付的款项，可以在下一年度的企业所得税中全额抵免两次。",
)
_EN_INVENTED = (
    "In addition, the claimant must file a written notice with the state commissioner "
    "within ninety days.",
    "Any such payment may then be deducted twice from the following year's income tax.",
    "This period may be extended once, by no more than sixty days, on written application.",
)


def _invented(s: Sample, lang: str, u: float) -> Sample:
    """An invented rule sentence added to the answer."""
    out = s["output"].rstrip()
    if lang == "zh":
        end = "" if out[-1:] in _TERMINAL else "。"
        return dict(s, output=out + end + _ZH_INVENTED[int(u * len(_ZH_INVENTED))])
    end = "" if out[-1:] in _TERMINAL else "."
    return dict(s, output=out + end + " " + _EN_INVENTED[int(u * len(_EN_INVENTED))])


def _apply(kind: str, s: Sample, lang: str, u: float, document: str) -> Sample | None:
    """``s`` with a defect of ``kind``, or None when that kind cannot apply to it."""
    makers: dict[str, Callable[[], Sample | None]] = {
        "number_swapped": lambda: _swap_number(s, lang, u),
        "wrong_article": lambda: _wrong_article(s, lang, u, document),
        "context_dependent": lambda: _context_dependent(s, lang, u),
        "truncated": lambda: _truncate(s, lang, u),
        "non_answer": lambda: _non_answer(s, lang, u),
        "misattributed": lambda: _misattributed(s, u, document),
        "invented_sentence": lambda: _invented(s, lang, u),
    }
    made = makers[kind]()
    if made is None or made == s:
        return None
    return made


# Few answers have a quantity to swap: when one has, that kind weighs more, so that each kind
# ends up about as frequent over a run.
_WEIGHTS = {"number_swapped": 3}


def inject_defects(
    samples: Sequence[Sample], document: str, *, model: str, rate: float, seed: int
) -> tuple[list[Sample], list[str | None]]:
    """(samples, kinds): about ``rate`` of them given a defect (kind None: left clean).

    A pure function of its arguments. Text2SQL samples (a schema as the document) are left alone.
    """
    out = [dict(s) for s in samples]
    kinds: list[str | None] = [None] * len(out)
    if rate <= 0 or "create table" in document.lower():
        return out, kinds
    lang = detect_language(document)
    base = str(seed_of("defects", str(seed), model, document))
    for k, s in enumerate(out):
        if unit(base, "pick", str(k)) >= rate:
            continue
        u = unit(base, "how", str(k))
        made = [(kind, m) for kind in DEFECT_KINDS if (m := _apply(kind, s, lang, u, document))]
        if made:
            weights = [_WEIGHTS.get(kind, 1) for kind, _ in made]
            at = unit(base, "kind", str(k)) * sum(weights)
            for (kind, sample), weight in zip(made, weights, strict=True):
                at -= weight
                if at < 0:
                    out[k], kinds[k] = sample, kind
                    break
    return out, kinds


class DefectLedger:
    """The ground truth of a simulator's defects: each generated sample's kind (None: clean)."""

    def __init__(self) -> None:
        self.samples: dict[str, str | None] = {}

    def record(self, samples: Sequence[Sample], kinds: Sequence[str | None]) -> None:
        """Remember each sample's kind under its fingerprint (a rerun records the same)."""
        for s, kind in zip(samples, kinds, strict=True):
            fp = fingerprint(s["instruction"], s.get("input", ""), s["output"])
            # The same sample twice (a repeated reply) keeps a defect it was given once.
            if kind is not None or fp not in self.samples:
                self.samples[fp] = kind

    def summary(self) -> dict[str, Any]:
        """``GET /defects``: counts per kind and {fingerprint: kind or null}."""
        by_kind = Counter(k or "clean" for k in self.samples.values())
        return {
            "samples": len(self.samples),
            "by_kind": dict(sorted(by_kind.items())),
            "defects": dict(self.samples),
        }
