"""Finding personal data (PII): PRC ID numbers, phones, bank cards, emails, IPs, passports, names.

``find_pii`` returns typed spans (never values); the ``pii`` gate redacts, drops or tags them.

Numbers are matched with ASCII digits only and boundaries that work in CJK text: a match may not
touch another digit (any script), a Latin letter or ``_``, nor continue a code ("ORD-13800138000",
"v1.13800138000", the tail of "6258 0774 2447 9786"). Checksums (ISO 7064 MOD 11-2, Luhn),
calendar dates and region codes are validated, and the keyword just before a number, in its
clause, decides the rest: after 保单号/订单号/金额/claim no. it is not a phone, card or ID; a
landline written as one run needs 电话/tel, a generic passport pattern 护照/passport. Amounts
(100,000元, ¥...) are left alone. What is found is reported as types, fields and offsets, never as
text.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

# --- types and placeholders ---------------------------------------------------------------------

PII_TYPES: tuple[str, ...] = (
    "id_number",
    "mobile",
    "landline",
    "bank_card",
    "email",
    "ip",
    "passport",
    "name",
)
# Aliases accepted in ``types``.
_TYPE_ALIASES: dict[str, tuple[str, ...]] = {"phone": ("mobile", "landline")}
# When two candidates cover the same text, the earlier type in this order wins.
_PRIORITY = {t: i for i, t in enumerate(PII_TYPES)}


class PiiSpan(NamedTuple):
    """One piece of personal data: its type and ``text[start:end]``."""

    type: str
    start: int
    end: int


# --- checksum and plausibility validators -------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# Province-level codes (GB/T 2260), plus 71 Taiwan, 81/82 Hong Kong/Macao, 83 (residence permits).
_PROVINCES = frozenset(
    f"{p}{c}"
    for p, cs in (
        ("1", "12345"),
        ("2", "123"),
        ("3", "1234567"),
        ("4", "123456"),
        ("5", "01234"),
        ("6", "12345"),
        ("7", "1"),
        ("8", "123"),
    )
    for c in cs
)


def id_check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits of a PRC ID number."""
    total = sum(int(d) * w for d, w in zip(first17[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def _plausible_region(code: str) -> bool:
    """A province that exists and a prefecture other than 00."""
    return code[:2] in _PROVINCES and code[2:4] != "00"


def _valid_date(year: int, month: int, day: int) -> bool:
    try:
        born = datetime.date(year, month, day)
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= born <= datetime.date.today()


def _id_shaped(value: str) -> bool:
    """18 digits with a plausible region and birth date (whatever the check character)."""
    return _plausible_region(value[:6]) and _valid_date(
        int(value[6:10]), int(value[10:12]), int(value[12:14])
    )


def is_valid_id18(value: str) -> bool:
    """An 18-character PRC resident ID: region, birth date and MOD 11-2 check character."""
    value = value.replace(" ", "").upper()
    if len(value) != 18 or not value[:17].isascii() or not value[:17].isdigit():
        return False
    if not _plausible_region(value[:6]):
        return False
    if not _valid_date(int(value[6:10]), int(value[10:12]), int(value[12:14])):
        return False
    return id_check_digit(value[:17]) == value[17]


def is_valid_id15(value: str) -> bool:
    """A 15-digit (pre-1999) PRC ID: region and a 19YY birth date (it has no check digit)."""
    if len(value) != 15 or not value.isascii() or not value.isdigit():
        return False
    return _plausible_region(value[:6]) and _valid_date(
        1900 + int(value[6:8]), int(value[8:10]), int(value[10:12])
    )


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_valid_bank_card(value: str) -> bool:
    """16-19 digits (spaces and dashes ignored) with a card-like first digit and a Luhn check."""
    digits = re.sub(r"[ \-]", "", value)
    return 16 <= len(digits) <= 19 and digits[0] in "234569" and luhn_ok(digits)


def is_valid_ipv4(value: str) -> bool:
    """Four decimal octets 0-255 without leading zeros."""
    parts = value.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isascii() or not p.isdigit() or (len(p) > 1 and p[0] == "0") or int(p) > 255:
            return False
    return True


def is_valid_ipv6(value: str) -> bool:
    """A valid IPv6 address with at least two groups and a decimal digit (not "::", "dead::bee")."""
    address = value.split("%", 1)[0]
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    groups = [g for g in re.split(r"[:.]", address) if g]
    return len(groups) >= 2 and any(c.isdigit() for c in address)


# --- candidate patterns -------------------------------------------------------------------------

# Any digit (every script), Latin letter (ASCII or full width) or "_": a number touching one is
# part of a longer code, not a match.
_W = r"[\dA-Za-z_\uff21-\uff3a\uff41-\uff5a]"
# Written after a pattern's first character: the character before it must not be _W, nor "-"
# after _W ("ORD-13800138000") or "." after a digit ("v1.13800138000"; "Tel.13800138000" is a
# phone). A leading look-behind would stop the engine from skipping ahead to the possible first
# characters, which is most of the speed on long texts.
_B = rf"(?<!{_W}.)(?<!{_W}-.)(?<![0-9]\..)"
_POST = rf"(?!{_W})(?![-.][\dA-Za-z])"
# Between digit groups: a space (also no-break and ideographic) or a dash (ASCII, full width,
# en/em dash).
_SEP = r"[ \-\u00a0\u3000\u2013\u2014\uff0d]"

_ID_RE = re.compile(
    rf"[1-8]{_B}(?:[0-9]{{5}} ?(?:18|19|20)[0-9]{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    rf" ?[0-9]{{3}}[0-9Xx]|[0-9]{{7}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{{3}})"
    rf"{_POST}"
)
_MOBILE_BODY = rf"1[3-9][0-9]{_SEP}?[0-9]{{4}}{_SEP}?[0-9]{{4}}{_POST}"
_MOBILE_RE = re.compile(
    # Every alternative starts with a literal character (see _B).
    rf"(?:\+\s?86{_SEP}?{_MOBILE_BODY}"
    rf"|0{_B}086{_SEP}?{_MOBILE_BODY}"
    rf"|\(\s*(?:\+|00)?86\s*[)）]\s*{_MOBILE_BODY}"
    rf"|（\s*(?:\+|00)?86\s*[)）]\s*{_MOBILE_BODY}"
    rf"|8{_B}6[ \-]{_MOBILE_BODY}"
    rf"|1{_B}{_MOBILE_BODY[1:]})"
)
# Area codes: 010, 02X, 0[3-9]XX; after +86 the leading 0 is dropped.
_AREA = r"(?:10|2[0-9]|[3-9][0-9]{2})"
_LOCAL = rf"[1-9][0-9]{{2,3}}{_SEP}?[0-9]{{4}}"
_EXT = r"(?:\s*(?:转|分机|(?i:ext)\.?|[xX#])\s*[0-9]{1,6}|-[0-9]{1,5})?"


def _intl_area(n: int) -> str:
    """The area code after +86/0086, in brackets or not (named groups a<n>, a<n+1>)."""
    return rf"{_SEP}?(?:[(（]\s*0?(?P<a{n}>{_AREA})\s*[)）]\s*|0?(?P<a{n + 1}>{_AREA}){_SEP})"


_LANDLINE_RE = re.compile(
    rf"(?:\+\s?86{_intl_area(1)}"
    rf"|0{_B}(?:086{_intl_area(3)}|(?P<a5>{_AREA})(?:\s?[-\u2013\u2014\uff0d]\s?| ))"
    rf"|\(\s*0(?P<a6>{_AREA})\s*[)）]\s*"
    rf"|（\s*0(?P<a7>{_AREA})\s*[)）]\s*)"
    rf"(?P<local>{_LOCAL}){_EXT}{_POST}"
)
_AREA_GROUPS = tuple(f"a{i}" for i in range(1, 8))
# Area code and number written as one run: a landline only after 电话/tel (see _landlines).
_LANDLINE_BARE_RE = re.compile(rf"0{_B}(?:(?:10|2[0-9])[0-9]{{8}}|[3-9][0-9]{{9,10}}){_POST}")
_CARD_RE = re.compile(
    rf"[2-69]{_B}(?:[0-9]{{15,18}}|[0-9]{{3}}(?P<s>[ \-])[0-9]{{4}}(?P=s)[0-9]{{4}}"
    rf"(?P=s)[0-9]{{4}}(?:(?P=s)[0-9]{{1,3}})?){_POST}"
)
# An email is found from its "@": the local part back from it, the domain on from it.
_EMAIL_LOCAL = "A-Za-z0-9._%+\\-"
_EMAIL_LOCAL_RE = re.compile(rf"[{_EMAIL_LOCAL}]{{1,64}}$")
_EMAIL_DOMAIN_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
_IPV4_RE = re.compile(
    rf"[0-9](?<!{_W}.)(?<!\..)(?<!{_W}-.)[0-9]{{0,2}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}"
    rf"(?!{_W})(?!\.[0-9])"
)
_IPV6_RE = re.compile(
    # Starts with a hex digit or "::"; the check on the character before comes after the first
    # one (see _B).
    r"[0-9A-Fa-f:](?<![0-9A-Za-z_:.].)"
    r"(?:(?<=:)(?::[0-9A-Fa-f]{0,4}){1,7}|(?<!:)[0-9A-Fa-f]{0,3}(?::[0-9A-Fa-f]{0,4}){2,7})"
    r"(?:\.[0-9]{1,3}){0,3}(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z_:])"
)
# PRC passports: E + 8 digits, E + letter + 7 digits (after E99999999), G + 8 digits (before 2012).
_PASSPORT_RE = re.compile(rf"[EG]{_B}(?:[0-9]{{8}}|(?<=E)[A-HJ-NP-Z][0-9]{{7}}){_POST}")
# Any letter+digit document number: only after 护照/passport/通行证 (see _passports).
_PASSPORT_GENERIC_RE = re.compile(rf"[A-Z]{_B}[A-Z]?[0-9]{{6,9}}{_POST}")
# The generic pattern is only tried in a text that names a passport somewhere.
_PASSPORT_HINT_RE = re.compile("护照|通行证|旅行证|(?i:passport)")
_DATE8_RE = re.compile(r"(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])")

# Amounts: a long number followed by one of these is money, not a phone, card or ID.
_UNIT_AFTER = re.compile(
    r"\s*(?:元|万|亿|千|百|块|%|％|‰|美元|港币|港元|欧元|英镑|人民币"
    r"|(?i:yuan|rmb|cny|usd|hkd|eur|dollars?|percent)(?![A-Za-z]))"
)
# "3.1.2.4条/节/版": a dotted number followed by one of these is a section or a version.
_SECTION_AFTER = re.compile(r"\s*(?:条|款|项|章|节|页|版|步|点|部分)")
_CURRENCY_BEFORE = re.compile(r"(?:[¥￥$€£]|(?i:rmb|cny|usd|hkd|eur))\s*$")

# --- context keywords ---------------------------------------------------------------------------

# Category -> keywords (lower case; Latin ones are whole words and may be regexes starting with a
# letter). The keyword nearest before a candidate, in its clause, is its context.
_NO = r"(?:\s*(?:no\.?|number|#))?"
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "id": (
        "身份证号码",
        "身份证号",
        "身份证件号码",
        "身份证",
        "公民身份号码",
        "身份号码",
        "证件号码",
        "证件号",
        rf"id\s*card{_NO}",
        rf"identity\s*card{_NO}",
        rf"national\s*id{_NO}",
        rf"resident\s*id{_NO}",
        r"id\s*(?:no\.?|number|#)",
        "id",
    ),
    "phone": (
        "手机号码",
        "手机号",
        "手机",
        "电话号码",
        "联系电话",
        "电话",
        "联系方式",
        "联系人",
        "座机",
        "固话",
        "移动电话",
        "致电",
        "拨打",
        "来电",
        "传真",
        rf"tel(?:ephone)?{_NO}",
        rf"phone{_NO}",
        rf"mobile{_NO}",
        "cell",
        "call",
        "fax",
        "contact",
        "whatsapp",
    ),
    "card": (
        "银行卡号",
        "银行卡",
        "卡号",
        "借记卡",
        "信用卡",
        "储蓄卡",
        "银行账号",
        "银行账户",
        "收款账户",
        "开户行",
        rf"credit\s*card{_NO}",
        rf"debit\s*card{_NO}",
        rf"bank\s*card{_NO}",
        rf"card{_NO}",
    ),
    # An account may be a card or a login (often a phone number): positive for cards only.
    "acct": ("账号", "账户", "帐号", "帐户", rf"account{_NO}", "a/c"),
    "passport": (
        "护照号码",
        "护照号",
        "护照",
        "通行证号码",
        "通行证号",
        "通行证",
        "旅行证",
        rf"passport{_NO}",
    ),
    "ip": (
        "ip地址",
        "ipv4",
        "ipv6",
        "ip",
        "服务器",
        "主机",
        "网关",
        "dns",
        "server",
        "host",
        "gateway",
    ),
    "neg": (
        "保单号码",
        "保单号",
        "保单",
        "保险单号",
        "投保单号",
        "批单号",
        "合同号",
        "合同编号",
        "订单号码",
        "订单号",
        "订单编号",
        "订单",
        "单号",
        "编号",
        "编码",
        "代码",
        "案件号",
        "赔案号",
        "理赔号",
        "报案号",
        "案号",
        "流水号",
        "交易号",
        "发票号码",
        "发票号",
        "发票代码",
        "运单号",
        "工号",
        "序号",
        "序列号",
        "凭证号",
        "客户号",
        "会员号",
        "批次号",
        "注册号",
        "信用代码",
        "税号",
        "条码",
        "车架号",
        "发动机号",
        "文号",
        "版本号",
        "版本",
        "金额",
        "保额",
        "保费",
        "赔款",
        "费用",
        "价格",
        "合计",
        "人民币",
        "总计",
        "第",
        "gb/t",
        "iso",
        *(
            rf"{w}\s*(?:no\.?|number|#|id|ref)"
            for w in (
                "policy",
                "claim",
                "order",
                "case",
                "invoice",
                "contract",
                "member",
                "customer",
                "ticket",
                "booking",
                "part",
                "model",
                "item",
            )
        ),
        r"no\.",
        "policy",
        "claim",
        "order",
        "invoice",
        rf"ref(?:erence)?{_NO}",
        "tracking",
        "serial",
        "transaction",
        "certificate",
        "batch",
        "version",
        r"ver\.",
        "build",
        "release",
        "article",
        "section",
        "clause",
        "chapter",
        "amount",
        "premium",
        r"sum\s+insured",
        "total",
        "price",
        "sku",
    ),
}


def _keyword_rest(keyword: str) -> str:
    """The regex of a keyword after its first character; Latin ones end at a word's end."""
    body = keyword[1:] if re.search(r"[\\()?|*+\[]", keyword) else re.escape(keyword[1:])
    if keyword[-1:].isascii() and keyword[-1:].isalpha():
        body += "(?![a-z])"
    return body


def _keyword_regex(keywords: Sequence[str]) -> re.Pattern[str]:
    """One regex for every keyword, grouped by first character (a literal, so the search skips
    ahead fast); a Latin keyword must not continue a word, checked after its first letter since
    a leading look-behind would stop that skipping."""
    by_first: dict[str, list[str]] = {}
    for k in keywords:
        by_first.setdefault(k[0], []).append(_keyword_rest(k))
    alts = []
    for first, rests in by_first.items():
        guard = "(?<![a-z].)" if first.isascii() and first.isalpha() else ""
        alts.append(f"{re.escape(first)}{guard}(?:{'|'.join(rests)})")
    return re.compile("|".join(alts))


_KEYWORD_LIST = [(k, cat) for cat, kws in _KEYWORDS.items() for k in kws]
# Longest first, so that at one position "保单号" wins over "保单".
_KEYWORD_LIST.sort(key=lambda kc: -len(kc[0]))
_KEYWORD_RE = _keyword_regex([k for k, _ in _KEYWORD_LIST])
# Category of a matched keyword: literal ones by lookup, the few regexes by trying each.
_KEYWORD_LITERAL = {k: cat for k, cat in _KEYWORD_LIST if not re.search(r"[\\()?|*+\[]", k)}
_KEYWORD_PATTERNS = [
    (re.compile(k[0] + _keyword_rest(k)), cat)
    for k, cat in _KEYWORD_LIST
    if k not in _KEYWORD_LITERAL
]
_WINDOW = 30

# The candidate's own category, and the categories that rule it out when nearest before it.
_CATEGORY = {
    "id_number": "id",
    "mobile": "phone",
    "landline": "phone",
    "bank_card": "card",
    "passport": "passport",
    "ip": "ip",
}
_CONFLICTS = {
    "id_number": {"neg"},
    "mobile": {"neg", "id", "card", "passport", "ip"},
    "landline": {"neg", "id", "card", "passport", "ip"},
    "bank_card": {"neg", "id", "phone", "passport", "ip"},
    "passport": {"neg", "id", "phone", "card", "ip"},
    "ip": {"neg"},
}


_DIGIT_RE = re.compile("[0-9]")
# Everything up to the last clause end: a Chinese or ASCII stop, comma or line break, or the
# end of an English sentence ("batch. Our office line is"; not "Tel. 138" or "No. 5").
_CLAUSE_START_RE = re.compile(r"(?s).*(?:[。；;！？!?\n，,、]|\.\s+(?=[A-Z]))")
_INNER_SEP_RE = re.compile(r"[0-9]([ \-])[0-9]")


def _grouped_tail(text: str, start: int, end: int) -> bool:
    """A grouped candidate right after a group of four digits with the same separator: the tail
    of a longer grouped number ("6258 0774 2447 9786" is a card, or nothing, not the landline
    "0774 2447 9786")."""
    inner = _INNER_SEP_RE.search(text, start, end)
    if inner is None or start < 5 or text[start - 1] != inner.group(1):
        return False
    group = text[start - 5 : start - 1]
    return group.isascii() and group.isdigit() and (start == 5 or not text[start - 6].isdigit())


def _context(text: str, start: int) -> str | None:
    """Category of the keyword nearest before ``start`` in the same clause, or None."""
    window = text[max(0, start - _WINDOW) : start]
    clause = _CLAUSE_START_RE.match(window)
    if clause is not None:
        window = window[clause.end() :]
    window = window.lower()
    found = list(_KEYWORD_RE.finditer(window))
    # A keyword with another number after it labels that number ("保单号P2024001 投保人
    # 13800138000"): it says nothing about this one.
    if not found or _DIGIT_RE.search(window, found[-1].end()):
        return None
    return _keyword_category(found[-1].group())


@lru_cache(maxsize=4096)
def _keyword_category(keyword: str) -> str:
    """The category of a matched keyword: literal ones by lookup, else the pattern it fits."""
    cat = _KEYWORD_LITERAL.get(keyword)
    if cat is None:
        cat = next(c for regex, c in _KEYWORD_PATTERNS if regex.fullmatch(keyword))
    return cat


# --- detection ----------------------------------------------------------------------------------

NerHook = Callable[[str], Iterable[Any]]
# NER labels taken as names (spaCy, Hugging Face, LTP/HanLP styles).
_NER_NAME_LABELS = frozenset({"person", "per", "name", "nr", "人名", "person_name", "b-per"})


def _amount_like(text: str, start: int, end: int) -> bool:
    """A number with a unit or currency around it (100,000元, ¥13800138000)."""
    return bool(
        _UNIT_AFTER.match(text, end) or _CURRENCY_BEFORE.search(text, max(0, start - 5), start)
    )


class PiiDetector:
    """Finds personal data in text; built once per configuration (types, names, NER hook)."""

    def __init__(
        self,
        *,
        types: Iterable[str] | None = None,
        names: Iterable[str] = (),
        ner: NerHook | None = None,
    ) -> None:
        self.types = frozenset(normalize_types(types))
        self.names = tuple(sorted({n.strip() for n in names if n.strip()}, key=lambda n: -len(n)))
        self.ner = ner
        self._names_re = _names_regex(self.names) if "name" in self.types else None

    def find(self, text: str) -> list[PiiSpan]:
        """Non-overlapping spans in order; the earliest, then the longest, candidate wins."""
        cands: list[PiiSpan] = []
        t = self.types
        if _DIGIT_RE.search(text):
            if "id_number" in t:
                cands.extend(self._ids(text))
            if "mobile" in t:
                cands.extend(self._mobiles(text))
            if "landline" in t:
                cands.extend(self._landlines(text))
            if "bank_card" in t:
                cands.extend(self._cards(text))
            if "passport" in t:
                cands.extend(self._passports(text))
        if "ip" in t:
            cands.extend(self._ips(text))
        if "email" in t and "@" in text:
            cands.extend(_emails(text))
        if "name" in t:
            if self._names_re is not None:
                cands.extend(
                    PiiSpan("name", m.start(), m.end()) for m in self._names_re.finditer(text)
                )
            if self.ner is not None:
                cands.extend(s for s in _ner_spans(self.ner, text) if s.type in t)
        return _resolve(cands)

    def _accept(self, kind: str, text: str, start: int, end: int, *, needs: bool = False) -> bool:
        """Context check: no amount, no conflicting keyword; ``needs`` asks for a positive one."""
        if kind != "ip" and (_amount_like(text, start, end) or _grouped_tail(text, start, end)):
            return False
        ctx = _context(text, start)
        if ctx in _CONFLICTS[kind]:
            return False
        if needs:
            want = {"card", "acct"} if kind == "bank_card" else {_CATEGORY[kind]}
            return ctx in want
        return True

    def _mobiles(self, text: str) -> Iterable[PiiSpan]:
        for m in _MOBILE_RE.finditer(text):
            if self._accept("mobile", text, m.start(), m.end()):
                yield PiiSpan("mobile", m.start(), m.end())

    def _ids(self, text: str) -> Iterable[PiiSpan]:
        for m in _ID_RE.finditer(text):
            value = m.group().replace(" ", "")
            ok = is_valid_id18(value) if len(value) == 18 else is_valid_id15(value)
            if ok and self._accept("id_number", text, m.start(), m.end()):
                yield PiiSpan("id_number", m.start(), m.end())

    def _landlines(self, text: str) -> Iterable[PiiSpan]:
        for m in _LANDLINE_RE.finditer(text):
            area = next(g for g in map(m.group, _AREA_GROUPS) if g is not None)
            local = re.sub(r"\D", "", m.group("local"))
            # 3-digit area codes (010, 02X) have 8-digit numbers, 4-digit ones 7 or 8.
            if (len(local) == 8 if len(area) == 2 else len(local) in (7, 8)) and self._accept(
                "landline", text, m.start(), m.end()
            ):
                yield PiiSpan("landline", m.start(), m.end())
        for m in _LANDLINE_BARE_RE.finditer(text):
            if self._accept("landline", text, m.start(), m.end(), needs=True):
                yield PiiSpan("landline", m.start(), m.end())

    def _cards(self, text: str) -> Iterable[PiiSpan]:
        for m in _CARD_RE.finditer(text):
            if not is_valid_bank_card(m.group()):
                continue
            digits = m.group().replace(" ", "").replace("-", "")
            # Mastercard's 2-series and the old 9xxx domestic cards are rare and clash with dated
            # order numbers and serials; an 18-digit number shaped like an ID (region, birth
            # date) but failing its check is a mistyped ID as often as a card. These need
            # 卡号/card before them.
            needs = digits[0] in "29" or (len(digits) == 18 and _id_shaped(digits))
            if self._accept("bank_card", text, m.start(), m.end(), needs=needs):
                yield PiiSpan("bank_card", m.start(), m.end())

    def _passports(self, text: str) -> Iterable[PiiSpan]:
        seen = set()
        for m in _PASSPORT_RE.finditer(text):
            # "G20240301" is more often a dated code than a passport: ask for 护照/passport.
            needs = _DATE8_RE.fullmatch(m.group()[1:]) is not None
            if self._accept("passport", text, m.start(), m.end(), needs=needs):
                seen.add(m.start())
                yield PiiSpan("passport", m.start(), m.end())
        if not _PASSPORT_HINT_RE.search(text):
            return
        for m in _PASSPORT_GENERIC_RE.finditer(text):
            if m.start() not in seen and self._accept(
                "passport", text, m.start(), m.end(), needs=True
            ):
                yield PiiSpan("passport", m.start(), m.end())

    def _ips(self, text: str) -> Iterable[PiiSpan]:
        if "." in text:
            for m in _IPV4_RE.finditer(text):
                value = m.group()
                if not is_valid_ipv4(value) or not _host_address(value):
                    continue
                # "3.1.2.4" is more often a section number than an address: ask for IP/server.
                needs = all(len(p) == 1 for p in value.split(".")) or bool(
                    _SECTION_AFTER.match(text, m.end())
                )
                if self._accept("ip", text, m.start(), m.end(), needs=needs):
                    yield PiiSpan("ip", m.start(), m.end())
        if "::" in text or text.count(":") >= 7:
            for m in _IPV6_RE.finditer(text):
                value = m.group()
                if (
                    is_valid_ipv6(value)
                    and _host_address(value.split("%", 1)[0])
                    and self._accept("ip", text, m.start(), m.end())
                ):
                    yield PiiSpan("ip", m.start(), m.end())


def _host_address(value: str) -> bool:
    """An address a person's device could have: not loopback (127.0.0.1), unspecified,
    multicast or reserved (255.255.255.0 is a netmask)."""
    ip = ipaddress.ip_address(value)
    return not (ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_reserved)


_AT_RE = re.compile("@")


def _emails(text: str) -> Iterable[PiiSpan]:
    """Email addresses, found from each "@" outwards (cheap on long texts)."""
    for at in (m.start() for m in _AT_RE.finditer(text)):
        local = _EMAIL_LOCAL_RE.search(text, max(0, at - 64), at)
        if local is None:
            continue
        start = local.start()
        if start > 0 and re.match(rf"[{_EMAIL_LOCAL}]", text[start - 1]):
            continue  # a local part over 64 characters: not an address
        while start < at and not (text[start].isascii() and text[start].isalnum()):
            start += 1
        domain = _EMAIL_DOMAIN_RE.match(text, at + 1)
        if start < at and text[at - 1] != "." and domain is not None:
            yield PiiSpan("email", start, domain.end())


def _resolve(cands: list[PiiSpan]) -> list[PiiSpan]:
    """Non-overlapping spans: earliest start first, then longest, then type priority."""
    cands.sort(key=lambda s: (s.start, s.start - s.end, _PRIORITY.get(s.type, 99)))
    out: list[PiiSpan] = []
    end = -1
    for s in cands:
        if s.start >= end:
            out.append(s)
            end = s.end
    return out


def _names_regex(names: Sequence[str]) -> re.Pattern[str] | None:
    """One alternation, longest first, any case; Latin names only as whole words."""
    if not names:
        return None
    alts = []
    for n in names:
        body = re.escape(n)
        if n[0].isascii() and n[0].isalnum():
            body = rf"(?<![A-Za-z0-9]){body}"
        if n[-1].isascii() and n[-1].isalnum():
            body = rf"{body}(?![A-Za-z0-9])"
        alts.append(body)
    # "JOHN SMITH" in a form is the same person as "John Smith" in the list.
    return re.compile("|".join(alts), re.IGNORECASE)


def _span_label(item: Any) -> tuple[Any, Any, Any]:
    """(start, end, label) of one NER result in any of the usual shapes."""
    if isinstance(item, PiiSpan):
        return item.start, item.end, item.type
    if isinstance(item, Mapping):
        label = next(
            (item[k] for k in ("type", "label", "entity_group", "entity") if k in item), None
        )
        return item.get("start"), item.get("end"), label
    if isinstance(item, (tuple, list)):
        if len(item) == 3 and isinstance(item[0], str):
            return item[1], item[2], item[0]
        if len(item) in (2, 3):
            return item[0], item[1], item[2] if len(item) == 3 else None
        return None, None, None
    start = getattr(item, "start_char", getattr(item, "start", None))
    end = getattr(item, "end_char", getattr(item, "end", None))
    label = next(
        (
            getattr(item, k)
            for k in ("type", "label_", "label")
            if isinstance(getattr(item, k, None), str)
        ),
        None,
    )
    return start, end, label


def _ner_spans(hook: NerHook, text: str) -> list[PiiSpan]:
    """The hook's spans that are well formed, with labels mapped to our types (default name)."""
    spans = []
    for item in hook(text) or ():
        start, end, label = _span_label(item)
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            continue
        kind = "name" if label is None else str(label)
        if kind not in _PRIORITY:
            kind = "name" if kind.casefold() in _NER_NAME_LABELS else ""
        if kind:
            spans.append(PiiSpan(kind, start, end))
    return spans


def normalize_types(types: Iterable[str] | None) -> tuple[str, ...]:
    """Known type names (aliases expanded) in canonical order.

    Raises:
        ValueError: a type that is not one of PII_TYPES or an alias.
    """
    if types is None:
        return PII_TYPES
    if isinstance(types, str) or not isinstance(types, Iterable):
        raise ValueError(f"types must be a list of type names, got {types!r}")
    wanted: set[str] = set()
    for t in types:
        if t in _TYPE_ALIASES:
            wanted.update(_TYPE_ALIASES[t])
        elif t in _PRIORITY:
            wanted.add(t)
        else:
            known = ", ".join([*PII_TYPES, *_TYPE_ALIASES])
            raise ValueError(f"types: unknown type {t!r}; known: {known}")
    return tuple(t for t in PII_TYPES if t in wanted)


@lru_cache(maxsize=32)
def _detector(types: tuple[str, ...] | None, names: tuple[str, ...], ner: Any) -> PiiDetector:
    return PiiDetector(types=types, names=names, ner=ner)


def find_pii(
    text: str,
    *,
    types: Iterable[str] | None = None,
    names: Iterable[str] = (),
    ner: NerHook | None = None,
) -> list[PiiSpan]:
    """Personal data in ``text``: non-overlapping typed spans, earliest and longest first."""
    key = None if types is None else tuple(normalize_types(types))
    return _detector(key, tuple(names), ner).find(text)


# --- redaction ----------------------------------------------------------------------------------


# --- options (messages name the option; build_gates adds the gate index and type) ---------------


# --- gate and slice scrub -----------------------------------------------------------------------
