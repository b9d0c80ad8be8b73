"""Synthetic personal data with valid checksums, for the PII tests and benchmark (never real).

IDs get a real prefecture code, a random valid birth date, a random sequence and the computed
ISO 7064 MOD 11-2 check character; cards a realistic BIN and the Luhn check digit. Emails use
the reserved example domains, IPs the documentation and private ranges.
"""

from __future__ import annotations

import datetime
import random

from sft_distill.stages.gates.pii_detect import id_check_digit, luhn_ok

# Prefecture-level codes: Dongcheng (Beijing), Xuhui (Shanghai), Futian (Shenzhen), Tianhe
# (Guangzhou), Xihu (Hangzhou), Wuhou (Chengdu), Jianghan (Wuhan), Xuanwu (Nanjing).
REGION_CODES = ("110101", "310104", "440305", "440106", "330106", "510107", "420103", "320102")
# Card BINs: UnionPay (62xxxx) debit and credit, Visa (4xxxx), Mastercard (51-55).
CARD_BINS = ("622202", "622848", "621700", "625807", "436742", "404119", "518710", "552599")
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.cn")


def birth_date(rng: random.Random, *, first: int = 1950, last: int = 2005) -> datetime.date:
    """A random valid date between 1 January ``first`` and 31 December ``last``."""
    start = datetime.date(first, 1, 1).toordinal()
    return datetime.date.fromordinal(rng.randint(start, datetime.date(last, 12, 31).toordinal()))


def id_number(rng: random.Random, *, lowercase_x: bool = False) -> str:
    """An 18-character resident ID number with a valid check character."""
    born = birth_date(rng)
    first17 = f"{rng.choice(REGION_CODES)}{born:%Y%m%d}{rng.randint(0, 999):03d}"
    check = id_check_digit(first17)
    return first17 + (check.lower() if lowercase_x else check)


def id_number_with_x(rng: random.Random) -> str:
    """An 18-character ID number whose check character is X."""
    while True:
        value = id_number(rng)
        if value.endswith("X"):
            return value


def bad_check_id(rng: random.Random) -> str:
    """An ID number like ``id_number`` but with a wrong check character."""
    value = id_number(rng)
    wrong = [c for c in "0123456789X" if c != value[-1]]
    return value[:-1] + rng.choice(wrong)


def old_id_number(rng: random.Random) -> str:
    """A 15-digit (pre-1999) ID number: region, YYMMDD, sequence."""
    born = birth_date(rng, last=1999)
    return f"{rng.choice(REGION_CODES)}{born:%y%m%d}{rng.randint(0, 999):03d}"


def luhn_complete(body: str) -> str:
    """``body`` plus the digit that makes it pass the Luhn check."""
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


def bank_card(rng: random.Random, *, length: int = 0, bin_: str = "") -> str:
    """A Luhn-valid card number of 16-19 digits with a realistic BIN."""
    length = length or rng.choice((16, 16, 19, 17, 18))
    prefix = bin_ or rng.choice(CARD_BINS)
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return luhn_complete(body)


def bad_luhn_card(rng: random.Random, *, length: int = 16) -> str:
    """A card-shaped number that fails the Luhn check."""
    value = bank_card(rng, length=length)
    return value[:-1] + str((int(value[-1]) + rng.randint(1, 9)) % 10)


def group(digits: str, sep: str = " ") -> str:
    """Digits in groups of four: 6222 0212 3456 7890 123."""
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def mobile(rng: random.Random) -> str:
    """An 11-digit mainland mobile number (1[3-9]x ...)."""
    return f"1{rng.choice('3456789')}{rng.randint(0, 9)}{rng.randint(0, 99999999):08d}"


MOBILE_FORMATS = (
    "{m}",
    "{a} {b} {c}",
    "{a}-{b}-{c}",
    "+86 {m}",
    "+86-{a}-{b}-{c}",
    "+86 {a} {b} {c}",
    "0086 {m}",
    "(+86) {m}",
    "+86{m}",
)


def format_mobile(number: str, fmt: str) -> str:
    """``number`` written as ``fmt`` (one of MOBILE_FORMATS)."""
    return fmt.format(m=number, a=number[:3], b=number[3:7], c=number[7:])


def landline(rng: random.Random) -> str:
    """A landline with area code in one of the usual ways of writing it."""
    area, digits = rng.choice(
        (("010", 8), ("021", 8), ("020", 8), ("0755", 8), ("0571", 8), ("0898", 7))
    )
    local = str(rng.randint(2, 8)) + "".join(rng.choice("0123456789") for _ in range(digits - 1))
    style = rng.randrange(5)
    if style == 0:
        return f"{area}-{local}"
    if style == 1:
        return f"({area}) {local[:-4]} {local[-4:]}"
    if style == 2:
        return f"{area}-{local[:-4]}-{local[-4:]}"
    if style == 3:
        return f"{area}-{local}转{rng.randint(100, 8999)}"
    return f"+86-{area[1:]}-{local}"


def email(rng: random.Random) -> str:
    """An address at one of the reserved example domains."""
    user = rng.choice(
        ("zhang.wei", "li_na", "wang.fang88", "chen.jie", "j.smith", "m.brown+claims")
    )
    return f"{user}{rng.randint(1, 99)}@{rng.choice(EMAIL_DOMAINS)}"


def ipv4(rng: random.Random) -> str:
    """An address in a documentation or private range."""
    base = rng.choice(("192.0.2", "198.51.100", "203.0.113", "10.12.3", "192.168.1"))
    return f"{base}.{rng.randint(1, 254)}"


def ipv6(rng: random.Random) -> str:
    """An address in 2001:db8::/32 (documentation)."""
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(3)]
    return rng.choice((f"2001:db8::{groups[0]}:{groups[1]}", f"2001:db8:{groups[0]}::{groups[2]}"))


def passport(rng: random.Random) -> str:
    """A PRC passport number: E + 8 digits (or E + letter + 7 digits)."""
    if rng.random() < 0.2:
        return f"E{rng.choice('ABCDEFGH')}{rng.randint(0, 9999999):07d}"
    return f"E{rng.randint(10000000, 99999999)}"
