"""Numbers written in words, Chinese or English, rewritten as digits so texts can be compared.

``normalize_numerals("自收到通知之日起三十日内")`` gives ``"自收到通知之日起30日内"``;
百分之二十 → ``20%``, 万分之五 → ``0.05%``, 三分之二 → ``2/3``, 二〇二四年 → ``2024年``,
第一百零五条 → ``第105条``, 两年 → ``2年``, 10万元 → ``100000元``;
"ten dollars" → ``10 dollars``, "two thirds" → ``2/3``,
"one thousand eight hundred and eight" → ``1808``, "Article IV" → ``Article 4``.
Words that only contain a numeral character ("一般", "统一", "万一", "一定") are left alone.
"""

from __future__ import annotations

import re
import unicodedata

# --- Chinese ----------------------------------------------------------------------------------

_ZH_DIGITS = {
    "零": 0, "〇": 0, "○": 0, "一": 1, "壹": 1, "二": 2, "贰": 2, "两": 2, "三": 3, "叁": 3,
    "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "八": 8, "捌": 8,
    "九": 9, "玖": 9,
}  # fmt: skip
_ZH_SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_ZH_BIG_UNITS = {"万": 10_000, "亿": 100_000_000}
_ZH_NUM_CHARS = "".join([*_ZH_DIGITS, *_ZH_SMALL_UNITS, *_ZH_BIG_UNITS])
# A numeral run starts with a digit or 十 ("万一", "千万", "百姓" are words, not numbers).
_ZH_RUN = re.compile(f"[{''.join(_ZH_DIGITS)}十拾][{_ZH_NUM_CHARS}]*")
# What may follow a single numeral character for it to be a number ("一年", "两倍", "三日"),
# so that "一般", "统一规定", "一定" stay words.
_ZH_MEASURE = (
    "日天月年周岁倍元角分秒时个人名次项条款章节页部届期批位家份件种类层级号票席亩吨米升度"
    "万亿成星季代口户座台辆张"
)
_PERCENT_ZH = re.compile(r"(百|千|万)分之\s*([0-9.]+)")
_FRACTION_ZH = re.compile(r"([0-9]+)\s*分之\s*([0-9]+)")
# Arabic digits with 万/亿 ("10万元", "1.5亿元"): the multiplier is applied.
_ARABIC_BIG = re.compile(r"(?<![0-9.])([0-9]+(?:\.[0-9]+)?)\s*(万|亿)(?![一二三四五六七八九])")
_THOUSANDS_SEP = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def parse_zh_number(text: str) -> int | None:
    """The value of a Chinese numeral ("一百零五" → 105, "二〇二四" → 2024), or None."""
    if not text or any(ch not in _ZH_NUM_CHARS for ch in text):
        return None
    if all(ch in _ZH_DIGITS for ch in text):
        # Read digit by digit: 二〇二四 = 2024, 一一 = 11.
        return int("".join(str(_ZH_DIGITS[ch]) for ch in text))
    total = 0  # completed 亿/万 sections
    section = 0  # the current section below 万
    digit: int | None = None
    for ch in text:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch in _ZH_SMALL_UNITS:
            section += (1 if digit is None else digit) * _ZH_SMALL_UNITS[ch]
            digit = None
        else:
            big = _ZH_BIG_UNITS[ch]
            section += digit or 0
            digit = None
            if big == 100_000_000:
                total = (total + section) * big
            else:
                total += section * big
            section = 0
    return total + section + (digit or 0)


def _zh_run_replacement(text: str, m: re.Match[str]) -> str | None:
    """Digits for a numeral run, or None when the run is part of a word."""
    run = m.group()
    before = text[m.start() - 1] if m.start() else ""
    after = text[m.end()] if m.end() < len(text) else ""
    is_number = (
        len(run) > 1
        or (before != "" and before in "第之")
        or (after != "" and after in _ZH_MEASURE)
    )
    if not is_number:
        return None
    # Two bare digits are a word or an estimate ("一一对应", "万一两者", "三五天"), not 11 or 35;
    # a year is written with at least three (二〇二四).
    if len(run) == 2 and all(ch in _ZH_DIGITS for ch in run):
        return None
    # 一次性 / 一揽子 are words ("one-off"), not "once".
    if run == "一" and text.startswith(("次性", "揽子"), m.end()):
        return None
    # A lone 两 only counts before a measure word ("两年"), not in "两者", "两方面".
    if run == "两" and (after == "" or after not in _ZH_MEASURE):
        return None
    value = parse_zh_number(run)
    return None if value is None else str(value)


def _replace_zh(text: str) -> str:
    out: list[str] = []
    last = 0
    for m in _ZH_RUN.finditer(text):
        rep = _zh_run_replacement(text, m)
        if rep is None:
            continue
        out.append(text[last : m.start()])
        out.append(rep)
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def _scale_arabic(m: re.Match[str]) -> str:
    value = float(m.group(1)) * _ZH_BIG_UNITS[m.group(2)]
    return _fmt(value)


def _fmt(value: float) -> str:
    """``30`` for 30.0, ``0.5`` for 0.5, at most 6 decimals."""
    if value == int(value):
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


# --- English ----------------------------------------------------------------------------------

_EN_ONES = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_EN_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_EN_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
# Denominators of fractions ("two thirds", "one fifth", "three fourths", "a quarter").
_EN_DENOMS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "fourth": 4, "fourths": 4, "quarter": 4,
    "quarters": 4, "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "seventh": 7,
    "sevenths": 7, "eighth": 8, "eighths": 8, "ninth": 9, "ninths": 9, "tenth": 10,
    "tenths": 10,
}  # fmt: skip
_EN_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "twenty-first": 21, "twenty-second": 22,
    "twenty-third": 23, "twenty-fourth": 24, "twenty-fifth": 25, "twenty-sixth": 26,
    "twenty-seventh": 27, "thirtieth": 30,
}  # fmt: skip
_NUMBER_WORD = "|".join(sorted([*_EN_ONES, *_EN_TENS, *_EN_SCALES], key=len, reverse=True))
# "thirty five", "thirty-five", "one thousand eight hundred and eight", "a hundred".
# Not the tens of a compound ordinal ("twenty-first" stays a word unless ordinals are asked for).
_EN_NUMBER = re.compile(
    rf"\b(?:(?:{_NUMBER_WORD})(?:(?:[\s-]+|\s+and\s+)(?:{_NUMBER_WORD}))*)\b"
    r"(?![\s-]*(?:first|third|fourth|fifth|sixth|seventh|eighth|ninth)\b)"
    # "twenty-second" is an ordinal, "one-second" / "ten second" a duration
    r"(?:(?<!twenty)(?<!thirty)(?<!forty)(?<!fifty)(?<!sixty)(?<!seventy)(?<!eighty)(?<!ninety)"
    r"|(?![\s-]*second\b))",
    re.IGNORECASE,
)
# "a third" only before "of": "a third party" is not a fraction.
_EN_FRACTION = re.compile(
    rf"\b(?:(one|two|three|four|five|six|seven|eight|nine|\d+)[\s-]+({'|'.join(_EN_DENOMS)})"
    rf"|(a)\s+({'|'.join(_EN_DENOMS)})(?=\s+of\b))\b",
    re.IGNORECASE,
)
_EN_ORDINAL = re.compile(
    rf"\b({'|'.join(sorted(_EN_ORDINALS, key=len, reverse=True))})\b", re.IGNORECASE
)
_ROMAN = re.compile(r"^M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})$")
# "Article IV", "Amendment XIV", "Title VII": Roman numerals after a heading word.
_ROMAN_AFTER = re.compile(
    r"\b(Article|Art\.|Amendment|Title|Chapter|Part|Book|Division|Schedule)\s+([IVXLCDM]+)\b"
)
# "the Fifth Amendment" → "Amendment 5".
_ORDINAL_AMENDMENT = re.compile(
    rf"\b({'|'.join(sorted(_EN_ORDINALS, key=len, reverse=True))}|\d+(?:st|nd|rd|th))"
    r"\s+Amendment\b",
    re.IGNORECASE,
)


def roman_to_int(text: str) -> int | None:
    """The value of a Roman numeral ("XIV" → 14), or None."""
    if not text or not _ROMAN.match(text.upper()):
        return None
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    up = text.upper()
    for i, ch in enumerate(up):
        v = values[ch]
        if i + 1 < len(up) and values[up[i + 1]] > v:
            total -= v
        else:
            total += v
    return total


def parse_en_number(text: str) -> int | None:
    """The value of English number words ("thirty five" → 35, "a hundred" → 100), or None."""
    words = [w for w in re.split(r"[\s-]+", text.lower().strip()) if w and w != "and"]
    if not words:
        return None
    total = 0
    current = 0
    seen = False
    for w in words:
        if w in _EN_ONES:
            current += _EN_ONES[w]
        elif w in _EN_TENS:
            current += _EN_TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w in _EN_SCALES:
            total += max(current, 1) * _EN_SCALES[w]
            current = 0
        elif w == "a" and not seen:
            current = 1
        else:
            return None
        seen = True
    return total + current


def _replace_en_number(m: re.Match[str]) -> str:
    value = parse_en_number(m.group())
    return m.group() if value is None else str(value)


def _replace_en_fraction(m: re.Match[str]) -> str:
    num_word = (m.group(1) or m.group(3)).lower()
    denom_word = (m.group(2) or m.group(4)).lower()
    if num_word.isdigit():
        num = int(num_word)
    else:
        num = 1 if num_word in ("a", "one") else _EN_ONES[num_word]
    denom = _EN_DENOMS[denom_word]
    return f"{num}/{denom}"


def _replace_ordinal_amendment(m: re.Match[str]) -> str:
    word = m.group(1).lower()
    value = _EN_ORDINALS.get(word)
    if value is None:
        value = int(re.sub(r"\D", "", word))
    return f"Amendment {value}"


def _replace_roman(m: re.Match[str]) -> str:
    value = roman_to_int(m.group(2))
    head = "Article" if m.group(1) == "Art." else m.group(1)
    return m.group() if value is None else f"{head} {value}"


# --- both -------------------------------------------------------------------------------------


def _replace_ordinal(m: re.Match[str]) -> str:
    value = _EN_ORDINALS[m.group().lower()]
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(value % 10 if value % 100 not in (11, 12, 13) else 0)
    return f"{value}{suffix or 'th'}"


# "second" as a unit of time: after a number ("a 60-second timeout", "10 second") or an article.
_SECOND_UNIT = re.compile(
    rf"(?:\d[\s-]?|\b(?:a|per|each|{'|'.join(_EN_ONES)})[\s-]+)$", re.IGNORECASE
)


def _replace_ordinal_in(text: str, m: re.Match[str]) -> str:
    if m.group().lower() == "second" and _SECOND_UNIT.search(
        text[max(0, m.start() - 12) : m.start()]
    ):
        return m.group()
    return _replace_ordinal(m)


def normalize_numerals(text: str, *, ordinals: bool = False) -> str:
    """``text`` (NFKC) with every number written in digits; see the module docstring.

    With ``ordinals``, English ordinal words become "2nd", "3rd" ("the second Year" → "the 2nd
    Year"); off by default, since "second" is also a verb and a unit of time.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _THOUSANDS_SEP.sub("", text)
    if re.search(f"[{_ZH_NUM_CHARS}]", text):
        text = _replace_zh(text)
        text = _PERCENT_ZH.sub(
            lambda m: _fmt(float(m.group(2)) / {"百": 1, "千": 10, "万": 100}[m.group(1)]) + "%",
            text,
        )
        text = _FRACTION_ZH.sub(lambda m: f"{m.group(2)}/{m.group(1)}", text)
        text = _ARABIC_BIG.sub(_scale_arabic, text)
    if re.search(r"[A-Za-z]", text):
        text = _ROMAN_AFTER.sub(_replace_roman, text)
        text = _ORDINAL_AMENDMENT.sub(_replace_ordinal_amendment, text)
        text = _EN_FRACTION.sub(_replace_en_fraction, text)
        if ordinals:
            text = _EN_ORDINAL.sub(lambda m: _replace_ordinal_in(text, m), text)
        text = _EN_NUMBER.sub(_replace_en_number, text)
    return text
