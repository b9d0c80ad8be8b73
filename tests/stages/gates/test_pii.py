"""PII detection, redaction and the ``pii`` gate: found in many formats, not in look-alikes.

Every value is synthetic (tests/pii_factory.py): IDs and cards carry computed check digits.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import textwrap
import time
from typing import Any

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.errors import ConfigError
from sft_distill.models import Sample
from sft_distill.stages.gates.base import GateResult, run_gates
from sft_distill.stages.gates.pii import PiiGate, redact, scrub_slice_text
from sft_distill.stages.gates.pii_detect import (
    PiiSpan,
    find_pii,
    id_check_digit,
    is_valid_bank_card,
    is_valid_id15,
    is_valid_id18,
    is_valid_ipv4,
    is_valid_ipv6,
    luhn_ok,
)
from sft_distill.stages.gates.registry import build_gates, gate_types
from tests import pii_factory as pf
from tests.helpers import sim_config


def found(text: str, **kw: Any) -> list[tuple[str, str]]:
    """(type, matched text) of every span ``find_pii`` returns."""
    return [(s.type, text[s.start : s.end]) for s in find_pii(text, **kw)]


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)


# --- validators ----------------------------------------------------------------------------


def test_generated_ids_pass_and_altered_ones_fail():
    r = rng()
    for _ in range(300):
        value = pf.id_number(r)
        assert is_valid_id18(value), value
        assert id_check_digit(value[:17]) == value[17]
        assert not is_valid_id18(value[:17] + ("0" if value[17] != "0" else "1"))
    assert is_valid_id18(pf.id_number_with_x(r).lower())  # a lower-case x is accepted
    assert all(not is_valid_id18(pf.bad_check_id(r)) for _ in range(100))
    assert all(is_valid_id15(pf.old_id_number(r)) for _ in range(100))


@pytest.mark.parametrize(
    ("first17", "why"),
    [
        ("99010119900307123", "no province 99"),
        ("11000019900307123", "prefecture 00"),
        ("11010119900230123", "30 February"),
        ("11010118800101123", "born before 1900"),
        ("11010121000101123", "born in the future"),
        ("11010119901301123", "month 13"),
    ],
)
def test_id_numbers_with_a_valid_check_digit_but_implausible_fields_are_rejected(first17, why):
    value = first17 + id_check_digit(first17)
    assert not is_valid_id18(value), why
    assert find_pii(f"身份证号：{value}") == [], why


def test_luhn_and_card_validation():
    r = rng()
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    for _ in range(200):
        card = pf.bank_card(r)
        assert is_valid_bank_card(card) and is_valid_bank_card(pf.group(card))
        assert not is_valid_bank_card(pf.bad_luhn_card(r, length=len(card)))
    assert not luhn_ok("４１１１１１１１１１１１１１１１")  # full-width digits are not digits here


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("192.0.2.1", True),
        ("255.255.255.255", True),
        ("256.1.1.1", False),
        ("192.168.01.1", False),
        ("1.2.3", False),
        ("1.2.3.4.5", False),
    ],
)
def test_ipv4_validation(value, ok):
    assert is_valid_ipv4(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2001:db8::1", True),
        ("fe80::1ff:fe23:4567:890a", True),
        ("::ffff:192.0.2.1", True),
        ("12:30:45", False),
        ("dead::beef", False),
        ("2001:db8:::1", False),
    ],
)
def test_ipv6_validation(value, ok):
    assert is_valid_ipv6(value) is ok


# --- found ---------------------------------------------------------------------------------


def test_id_numbers_found_in_realistic_sentences():
    r = rng(1)
    new, x, old = pf.id_number(r), pf.id_number_with_x(r), pf.old_id_number(r)
    spaced = f"{new[:6]} {new[6:14]} {new[14:]}"
    text = (
        f"被保险人身份证号码：{new}；投保人证件号{x}，其配偶的旧身份证{old}"
        f"（15位）。Claimant ID number {x.lower()}. 分段书写：{spaced}。"
    )
    assert found(text) == [
        ("id_number", new),
        ("id_number", x),
        ("id_number", old),
        ("id_number", x.lower()),
        ("id_number", spaced),
    ]


@pytest.mark.parametrize("fmt", pf.MOBILE_FORMATS)
def test_mobile_numbers_found_in_every_format(fmt):
    number = pf.format_mobile("13800138000", fmt)
    assert found(f"请联系客户经理，手机：{number}。") == [("mobile", number)]
    assert found(f"Please call {number} before Friday.") == [("mobile", number)]
    assert found(f"{number}") == [("mobile", number)]


@pytest.mark.parametrize(
    "number", ["138－0013－8000", "138\u30000013\u30008000", "138–0013–8000", "tel:13800138000"]
)
def test_mobile_numbers_with_full_width_or_typographic_separators(number):
    value = number.removeprefix("tel:")
    assert found(f"客户手机号码：{number}（微信同号）") == [("mobile", value)]


def test_mobile_numbers_found_without_keywords_and_next_to_chinese():
    r = rng(2)
    numbers = [pf.mobile(r) for _ in range(50)]
    text = "".join(f"客户{n}已回访；" for n in numbers)
    assert found(text) == [("mobile", n) for n in numbers]


@pytest.mark.parametrize(
    "number",
    [
        "010-12345678",
        "(0755) 8888 6666",
        "（0755）88886666",
        "021-1234-5678",
        "021-1234-5678 转 801",
        "0571-87654321-123",
        "0898-6123456",
        "+86-10-12345678",
        "+86 755 8888 6666",
        "020 8765 4321",
        "010－12345678",
        "010-12345678 ext. 12",
    ],
)
def test_landlines_found(number):
    assert found(f"公司地址见官网，电话 {number}，工作日受理。") == [("landline", number)]
    assert found(f"Office: {number}") == [("landline", number)]


def test_landline_written_as_one_run_needs_a_phone_keyword():
    assert found("联系电话01088886666") == [("landline", "01088886666")]
    assert found("Tel: 075588886666") == [("landline", "075588886666")]
    assert found("批次01088886666已入库") == []
    assert found("编码075588886666") == []


def test_bank_cards_found_contiguous_and_grouped():
    r = rng(3)
    cards = [pf.bank_card(r, length=n) for n in (16, 17, 18, 19)]
    for card in cards:
        for written in (card, pf.group(card), pf.group(card, "-")):
            assert found(f"理赔款将转入您的银行卡 {written}，请核对。") == [("bank_card", written)]
            assert found(f"Refund to card {written}.") == [("bank_card", written)]
            assert found(f"户名张先生 {written}") == [("bank_card", written)]


def test_emails_found():
    r = rng(4)
    for _ in range(20):
        address = pf.email(r)
        assert found(f"请将材料发送至{address}。") == [("email", address)]
        assert found(f"Send the claim form to <{address}>, thanks.") == [("email", address)]
    assert found("邮箱：claims-team.sh@mail.example.cn，") == [
        ("email", "claims-team.sh@mail.example.cn")
    ]


def test_ip_addresses_found():
    text = (
        "用户从IP 203.0.113.7 登录，后台地址 10.12.3.254:8080；"
        "IPv6 地址 2001:db8::8a2e:370:7334，网关 fe80::1ff:fe23:4567:890a。DNS 1.1.1.1."
    )
    assert found(text) == [
        ("ip", "203.0.113.7"),
        ("ip", "10.12.3.254"),
        ("ip", "2001:db8::8a2e:370:7334"),
        ("ip", "fe80::1ff:fe23:4567:890a"),
        ("ip", "1.1.1.1"),
    ]


def test_ipv6_found_where_no_digit_run_is_long():
    text = "本次升级涉及2001:db8::c1af:809a等87台服务器"
    assert found(text) == [("ip", "2001:db8::c1af:809a")]


def test_addresses_no_person_has_are_not_personal_data():
    text = "服务监听 127.0.0.1:8080 与 ::1，子网掩码 255.255.255.0，组播 224.0.0.251，IP 0.0.0.0"
    assert found(text) == []
    assert found("IP 192.168.1.20 / ff02::1 / fe80::1") == [
        ("ip", "192.168.1.20"),
        ("ip", "fe80::1"),
    ]


def test_passports_found():
    assert found("护照号码：E12345678，有效期至2030年") == [("passport", "E12345678")]
    assert found("旧护照 G12345678 已注销") == [("passport", "G12345678")]
    assert found("新版护照EA1234567") == [("passport", "EA1234567")]
    # A generic letter + digits number only after a passport keyword.
    assert found("Passport No. K1234567 (UK)") == [("passport", "K1234567")]
    assert found("港澳通行证号 C12345678") == [("passport", "C12345678")]
    assert found("车型 K1234567 已停产") == []


def test_names_from_a_list_and_latin_names_as_whole_words():
    names = ["张伟", "Li Na", "欧阳娜娜"]
    text = "被保险人张伟与欧阳娜娜是夫妻；agent Li Na called. Li Nan is someone else."
    assert found(text, names=names) == [
        ("name", "张伟"),
        ("name", "欧阳娜娜"),
        ("name", "Li Na"),
    ]
    assert found(text) == []  # no list configured: no names
    assert found("Claimant: ZHANG WEI / zhang wei", names=["Zhang Wei"]) == [
        ("name", "ZHANG WEI"),
        ("name", "zhang wei"),
    ]


def test_ner_hook_spans_are_mapped_to_names():
    def ner(text: str) -> list[Any]:
        i = text.find("王小明")
        return [
            {"start": i, "end": i + 3, "entity_group": "PER"},
            (0, 2, "ORG"),  # unknown label: ignored
            (5, 999, "PERSON"),  # out of range: ignored
        ]

    assert found("保险公司客户王小明已结案", ner=ner) == [("name", "王小明")]


# --- not found -----------------------------------------------------------------------------

LOOK_ALIKES = [
    "保单号：13800138000，请妥善保管。",
    "保单号P2024030100123已生效，保险期间自2024-03-01起至2025-02-28止。",
    "理赔案件号CLM-20240301-000123，报案号 20240301000123，赔案号13912345678。",
    "根据《保险法》第105条及第十六条，保险人应在30日内作出核定。",
    "保险金额为100,000元，免赔额1,000.00元，赔付比例80%。",
    "订单号：15012345678 已发货，运单号 SF1234567890123。",
    "Policy No. 13800138000 was renewed on 2024-03-01.",
    "Claim number 6222021234567890128 is under review.",
    "Order #13800138000 shipped; invoice INV-2024-0301.",
    "本产品通过ISO 9001:2015认证，执行标准GB/T 19001-2016。",
    "请升级到版本 1.2.3，或 v2.10.1.4；详见第3.1.2.4节。",
    "Version 10.0.19041.1 fixes section 4.2.1.1 of the manual.",
    "日期写作20240301或2024.03.01均可，时间12:30:45。",
    "总保费¥13800138000，折合USD 1,900,000,000。",
    "合同编号：440305199003071234（非身份证号）。",
    "流水号9900112233445566778899，凭证号 62220212345678901234567。",
    "客户号ABC13800138000和13800138000X1都不是手机号。",
    "产品编码 P13800138000、SKU-13800138000、item_13800138000。",
    "全角数字１３８００１３８０００与阿拉伯数字١٣٨٠٠١٣٨٠٠٠不算。",
    "The premium was 13800138000 yuan; the sum insured 6222021234567890128 USD.",
    "车架号LSVAU2180N2183294，发动机号 G12345678。",
    "统一社会信用代码91310000MA1FL8KQ3X，税号 913100007178591234。",
    "第13800138000号文件",
    "共赔偿13800138000元整，另付6222021234567890128万元。",
    "A loss of $13800138000 and 13900139000 USD in damages.",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_not_personal_data(text):
    assert found(text) == []


def test_numbers_that_fail_checksums_are_not_ids_or_cards():
    r = rng(5)
    for _ in range(200):
        bad_id = pf.bad_check_id(r)
        bad_card = pf.bad_luhn_card(r, length=r.choice((16, 19)))
        assert found(f"编码{bad_id}") == [], bad_id
        assert found(f"号码 {bad_card} 无效") == [], bad_card
        assert found(f"卡号 {pf.group(bad_card)}") == [], bad_card


def test_digits_inside_longer_runs_are_not_matches():
    r = rng(6)
    valid_id, card, phone = pf.id_number(r), pf.bank_card(r, length=16), "13800138000"
    for value in (valid_id, card, phone):
        for text in (
            f"A{value}",
            f"{value}7",
            f"9{value}",
            f"REF-{value}",
            f"{value}-B2",
            f"v1.{value}",
            f"x_{value}",
            f"１{value}",  # a full-width digit continues the run
            f"{value}٣",  # so does an Arabic-Indic one
        ):
            # The longer run may be something valid in itself, but never the value inside it.
            assert value not in [t for _, t in found(text)], text
    assert found(f"{valid_id}12 与 A{phone}") == []


def test_keyword_context_lowers_and_raises_confidence():
    # The nearest keyword in the clause decides: an order number, then a phone.
    text = "订单号13912345678，联系电话13800138000"
    assert found(text) == [("mobile", "13800138000")]
    assert found("客户身份证号 13800138000") == []  # a phone-shaped value under another label
    assert found("保单号P2024001对应的被保险人手机13800138000") == [("mobile", "13800138000")]
    # A keyword followed by another number labels that number, not the next one.
    assert found("保单号P2024001 投保人 13800138000") == [("mobile", "13800138000")]
    assert found("Policy number is 13800138000") == []
    assert found("No.13800138000") == [] and found("Tel.13800138000") == [("mobile", "13800138000")]


def test_only_money_units_make_a_long_number_an_amount():
    # 月底 / 日前 / 年内 after a phone number are words, not units.
    assert found("请拨打13800138000月底前回复") == [("mobile", "13800138000")]
    assert found("客服13800138000日夜值守") == [("mobile", "13800138000")]
    assert found("共计13800138000元") == [] and found("13800138000万") == []
    # A dotted number followed by 条/节/版 is a section or a version.
    assert found("依据10.2.3.14条办理") == [] and found("登录地址10.2.3.14") == [
        ("ip", "10.2.3.14")
    ]


def test_the_tail_of_a_grouped_number_is_not_a_match():
    assert not luhn_ok("6258077424479786")
    # "0774 2447 9786" alone would be a landline (0774 is Wuzhou's area code).
    assert found("0774 2447 9786") == [("landline", "0774 2447 9786")]
    assert found("卡号 6258 0774 2447 9786") == []
    assert found("编号 6258-0774-2447-9786") == []


def test_overlapping_candidates_earliest_then_longest_wins():
    r = rng(8)
    # An ID number that also passes Luhn: reported once, as an ID.
    while not luhn_ok(value := pf.id_number(r)):
        pass
    assert found(f"证件 {value}") == [("id_number", value)]
    spans = find_pii(f"{value} 13800138000 a@example.com")
    assert spans == sorted(spans, key=lambda s: s.start) and all(
        a.end <= b.start for a, b in itertools.pairwise(spans)
    )
    assert find_pii("x" * 10 + "13800138000") == find_pii("x" * 10 + "13800138000")


def test_types_option_limits_what_is_found():
    text = "手机13800138000，邮箱a@example.com，电话010-12345678"
    assert [t for t, _ in found(text, types=["email"])] == ["email"]
    assert [t for t, _ in found(text, types=["phone"])] == ["mobile", "landline"]


def test_long_and_adversarial_texts_are_fast():
    r = rng(9)
    parts = []
    while sum(map(len, parts)) < 10_000:
        parts.append(
            f"根据第{r.randint(1, 200)}条，保单号P{r.randint(10**9, 10**10)}的被保险人"
            f"（手机 {pf.mobile(r)}，邮箱 {pf.email(r)}）于2024-03-0{r.randint(1, 9)}报案，"
            f"金额{r.randint(1, 999)},000元。"
        )
    text = "".join(parts)[:10_000]
    adversarial = [
        "1 " * 5000,
        "1-" * 5000,
        "a@" * 5000,
        "1." * 5000,
        ":1" * 5000,
        "身份证号" * 2500,
    ]
    find_pii(text)
    start = time.perf_counter()
    for _ in range(20):
        find_pii(text)
    per_text = (time.perf_counter() - start) / 20
    # Measured about 1 ms; the bound only catches a regex gone quadratic on a shared machine.
    assert per_text < 0.05, per_text
    for bad in adversarial:
        start = time.perf_counter()
        find_pii(bad)
        assert time.perf_counter() - start < 0.2, bad[:10]


# --- redaction -----------------------------------------------------------------------------


def test_one_value_one_placeholder_across_fields_and_formats():
    fields = {
        "instruction": "客户手机 138 0013 8000 和 13900139000 哪个是主号？",
        "input": "备用：+86-138-0013-8000；邮箱 li_na8@example.com",
        "output": "主号为13800138000，备用号码13900139000，邮件发到 LI_NA8@example.com。",
    }
    out, summary = redact(fields)
    assert out == {
        "instruction": "客户手机 [手机号1] 和 [手机号2] 哪个是主号？",
        "input": "备用：[手机号1]；邮箱 [EMAIL]",
        "output": "主号为[手机号1]，备用号码[手机号2]，邮件发到 [EMAIL]。",
    }
    assert summary["counts"] == {"email": 2, "mobile": 5}
    assert summary["lang"] == "zh"
    # Offsets are in the original text.
    for rec in summary["spans"]:
        original = fields[rec["field"]][rec["start"] : rec["end"]]
        assert find_pii(original) == [PiiSpan(rec["type"], 0, len(original))]


def test_english_text_gets_english_placeholders_and_shared_ones_are_numbered():
    r = rng(10)
    id_value, card = pf.id_number(r), pf.bank_card(r)
    fields = {
        "instruction": f"The claimant (ID {id_value}) gave mobile 13800138000 and office "
        "010-12345678. Which should we call?",
        "output": f"Call 13800138000 first; refund to card {card}.",
    }
    out, summary = redact(fields)
    assert out["instruction"] == (
        "The claimant (ID [ID_NUMBER]) gave mobile [PHONE1] and office [PHONE2]. "
        "Which should we call?"
    )
    assert out["output"] == "Call [PHONE1] first; refund to card [BANK_CARD]."
    assert summary["lang"] == "en"


def test_placeholders_and_language_can_be_configured():
    fields = {"output": "请拨打13800138000，或联系 Zhang Wei。"}
    spans = {"output": find_pii(fields["output"], names=["Zhang Wei"])}
    out, _ = redact(
        fields,
        spans,
        lang="en",
        placeholders={"mobile": "<TEL>", "name": {"en": "<PERSON>", "zh": "<人名>"}},
    )
    assert out == {"output": "请拨打<TEL>，或联系 <PERSON>。"}


def test_landlines_written_differently_share_a_placeholder():
    fields = {
        "instruction": "总部电话 010-1234 5678 还是 +86-10-12345678 转 801？",
        "output": "拨打 (010) 12345678，分机另计；或 021-87654321。",
    }
    out, _ = redact(fields)
    assert out == {
        "instruction": "总部电话 [电话1] 还是 [电话2]？",
        "output": "拨打 [电话1]，分机另计；或 [电话3]。",
    }


def test_redact_rejects_an_unknown_language():
    with pytest.raises(ValueError, match="lang must be one of auto, zh, en, got 'fr'"):
        redact({"output": "13800138000"}, lang="fr")


def test_scrub_slice_text():
    r = rng(11)
    card = pf.bank_card(r)
    text = f"第十条 理赔款支付至被保险人账户{card}。联系邮箱 a.b@example.org。第十一条 无PII。"
    scrubbed, counts = scrub_slice_text(text)
    assert (
        scrubbed == "第十条 理赔款支付至被保险人账户[银行卡号]。联系邮箱 [EMAIL]。第十一条 无PII。"
    )
    assert counts == {"bank_card": 1, "email": 1}
    assert scrub_slice_text("没有个人信息。") == ("没有个人信息。", {})


# --- the gate ------------------------------------------------------------------------------


def pii_sample(r: random.Random) -> tuple[Sample, list[str]]:
    """A sample with one of every type in its fields, and the values it holds."""
    values = {
        "id": pf.id_number(r),
        "phone": pf.mobile(r),
        "landline": "0755-86668888",
        "card": pf.bank_card(r, bin_="622848"),
        "email": pf.email(r),
        "ip": pf.ipv4(r),
        "passport": pf.passport(r),
        "name": "欧阳娜娜",
    }
    sample = Sample(
        id="s1",
        slice_id="slice",
        instruction=f"客户欧阳娜娜（身份证号{values['id']}，手机{values['phone']}）如何理赔？",
        input=f"银行卡：{values['card']}；护照号 {values['passport']}；登录IP {values['ip']}",
        output=(
            f"请欧阳娜娜将材料发至{values['email']}，或致电{values['landline']}；"
            f"理赔款将转入尾号{values['card'][-4:]}的银行卡，客服会回拨{values['phone']}。"
        ),
    )
    return sample, list(values.values())


def assert_no_values(obj: Any, values: list[str]) -> None:
    dumped = json.dumps(obj, ensure_ascii=False, default=str)
    for v in values:
        assert v not in dumped, v


async def test_redact_mode_through_build_gates():
    gate = build_gates([{"type": "pii", "names": ["欧阳娜娜"]}])[0]
    sample, values = pii_sample(rng(12))
    original = {f: getattr(sample, f) for f in ("instruction", "input", "output")}
    result, dropped_by = await run_gates(sample, [gate])
    assert (result, dropped_by) == (None, None)
    note = sample.annotations["pii"]
    assert note["mode"] == "redact"
    assert note["counts"] == {
        "bank_card": 1,
        "email": 1,
        "id_number": 1,
        "ip": 1,
        "landline": 1,
        "mobile": 2,
        "name": 2,
        "passport": 1,
    }
    for rec in note["spans"]:
        assert set(rec) == {"field", "type", "start", "end"}
        assert find_pii(original[rec["field"]][rec["start"] : rec["end"]], names=["欧阳娜娜"])
    assert sample.instruction == "客户[姓名]（身份证号[身份证号]，手机[手机号]）如何理赔？"
    assert sample.output.endswith("客服会回拨[手机号]。")
    assert_no_values(sample.model_dump(), values)


async def test_drop_mode_drops_with_a_reason_and_scrubs_the_dropped_text():
    gate = build_gates([{"type": "pii", "mode": "drop", "names": ["欧阳娜娜"]}])[0]
    sample, values = pii_sample(rng(13))
    result, dropped_by = await run_gates(sample, [gate])
    assert dropped_by == "pii" and result is not None and not result.keep
    assert result.reason.startswith("personal data in instruction, input, output: 1 bank_card")
    assert sample.annotations["pii"]["mode"] == "drop"
    assert_no_values([result.reason, sample.model_dump()], values)


async def test_drop_mode_can_leave_the_dropped_text():
    gate = build_gates([{"type": "pii", "mode": "drop", "scrub_dropped": False}])[0]
    sample, values = pii_sample(rng(14))
    result, _ = await run_gates(sample, [gate])
    assert result is not None and not result.keep
    assert values[0] in sample.instruction
    assert_no_values([result.reason, sample.annotations], values)


async def test_tag_mode_keeps_the_text_and_annotates():
    gate = build_gates([{"type": "pii", "mode": "tag", "types": ["phone", "email"]}])[0]
    sample, values = pii_sample(rng(15))
    before = sample.model_dump()
    result, _ = await run_gates(sample, [gate])
    assert result is None
    note = sample.annotations.pop("pii")
    assert sample.model_dump() == {**before, "annotations": {}}
    assert note["mode"] == "tag" and note["counts"] == {"email": 1, "landline": 1, "mobile": 2}
    assert_no_values(note, values)


async def test_a_sample_without_personal_data_is_untouched():
    gate = PiiGate()
    sample = Sample(
        id="s",
        slice_id="x",
        instruction="保单号P2024030100123何时生效？",
        output="自2024-03-01起生效。",
    )
    before = sample.model_dump()
    assert await gate.check(sample) == (await PiiGate(mode="tag").check(sample))
    assert sample.model_dump() == before


async def test_reasoning_and_reference_output_are_scanned_too():
    sample = Sample(
        id="s",
        slice_id="x",
        instruction="怎么联系？",
        output="请致电客服。",
        reasoning="用户的号码是13800138000",
        reference_output="拨打13800138000",
    )
    result = await PiiGate().check(sample)
    assert sample.reasoning == "用户的号码是[手机号]" and sample.reference_output == "拨打[手机号]"
    spans = result.annotations["pii"]["spans"]
    assert [(s["field"], s["start"]) for s in spans] == [("reasoning", 6), ("reference_output", 2)]
    only = PiiGate(mode="tag", fields=["instruction", "output"])
    assert (await only.check(Sample(**{**sample.model_dump(), "reasoning": "13800138000"}))).keep


async def test_evidence_quotes_are_scanned_and_redacted_like_the_answer():
    """Evidence quotes are copied from the source and written to generated_raw.jsonl."""
    sample = Sample(
        id="s",
        slice_id="x",
        instruction="怎么报案？",
        output="拨打13800138000报案。",
        evidence=["报案电话请拨打13800138000。", "工作日受理。"],
    )
    result = await PiiGate().check(sample)
    assert sample.output == "拨打[手机号]报案。"
    assert sample.evidence == ["报案电话请拨打[手机号]。", "工作日受理。"]
    fields = [s["field"] for s in result.annotations["pii"]["spans"]]
    assert fields == ["output", "evidence.0"]
    dropped = await PiiGate(mode="drop").check(Sample(**{**sample.model_dump(), "output": "x"}))
    assert dropped.keep  # already redacted: nothing left to find
    only = PiiGate(fields=["output"])
    quoted = Sample(id="t", slice_id="x", instruction="q", output="o", evidence=["13800138000"])
    assert (await only.check(quoted)).annotations == {} and quoted.evidence == ["13800138000"]


async def test_names_file_is_read_next_to_the_config(tmp_path):
    (tmp_path / "names.txt").write_text("# 客户名单\n欧阳娜娜\n\nZhang Wei\n", encoding="utf-8")
    gate = build_gates([{"type": "pii", "names_file": "names.txt"}], base_dir=tmp_path)[0]
    sample = Sample(id="s", slice_id="x", instruction="Zhang Wei 和欧阳娜娜是谁？", output="客户。")
    await gate.check(sample)
    assert sample.instruction == "[姓名1] 和[姓名2]是谁？"


async def test_ner_hook_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_ner.py").write_text(
        textwrap.dedent(
            """
            def people(text):
                i = text.find("王小明")
                return [] if i < 0 else [{"start": i, "end": i + 3, "label": "PERSON"}]
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    gate = build_gates([{"type": "pii", "ner": "my_ner:people"}])[0]
    sample = Sample(id="s", slice_id="x", instruction="王小明的保单？", output="王小明已投保。")
    await gate.check(sample)
    assert (sample.instruction, sample.output) == ("[姓名]的保单？", "[姓名]已投保。")
    sys.modules.pop("my_ner", None)


@pytest.mark.parametrize(
    "text",
    [
        "Call 13800138000 today.",
        "请拨打 010-12345678 咨询。",
        "客户张伟的邮箱 zw@example.com，身份证号 {id}。",
        "Card {card} belongs to Zhang Wei.",
    ],
)
async def test_placeholder_gate_ignores_the_pii_gates_placeholders(text):
    """[PHONE], [电话], [姓名], [EMAIL], [BANK_CARD] written by the pii gate are not template text,
    whichever of the two gates runs first."""
    r = rng(21)
    text = text.format(id=pf.id_number(r), card=pf.bank_card(r))

    question = "How do I reach the claims desk?" if text.isascii() else "怎样联系理赔部门？"

    def sample() -> Sample:
        return Sample(id="s", slice_id="x", instruction=question, output=text)

    for order in ([{"type": "rules"}, {"type": "pii"}], [{"type": "pii"}, {"type": "rules"}]):
        s = sample()
        gates = build_gates(
            [
                {**spec, "names": ["张伟", "Zhang Wei"]} if spec["type"] == "pii" else spec
                for spec in order
            ]
        )
        result, by = await run_gates(s, gates)
        assert (result, by) == (None, None), (order, result)
    redacted = sample()
    await PiiGate(names=["张伟", "Zhang Wei"]).check(redacted)
    assert "[" in redacted.output
    # A placeholder the teacher left unfilled is still caught.
    unfilled = Sample(id="u", slice_id="x", instruction="Who?", output="Call [PHONE] now.")
    result, by = await run_gates(unfilled, build_gates([{"type": "pii"}, {"type": "rules"}]))
    assert by == "placeholder" and result is not None


def test_pii_is_a_registered_gate_type():
    assert "pii" in gate_types()
    assert isinstance(build_gates([{"type": "pii", "name": "privacy"}])[0], PiiGate)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "mask"}, "gates[0] (pii): mode must be one of redact, drop, tag, got 'mask'"),
        (
            {"types": ["phone", "ssn"]},
            "gates[0] (pii): types: unknown type 'ssn'; known: id_number",
        ),
        ({"types": "email"}, "gates[0] (pii): types must be a list of type names"),
        ({"names": "张伟"}, "gates[0] (pii): names must be a list of strings"),
        ({"names": ["张伟", ""]}, "gates[0] (pii): names must be a list of non-empty strings"),
        ({"names_file": "missing.txt"}, "gates[0] (pii): names_file: file 'missing.txt' not found"),
        (
            {"ner": "no_such_module_xyz:f"},
            "gates[0] (pii): ner: cannot import 'no_such_module_xyz'",
        ),
        ({"ner": "json"}, "gates[0] (pii): ner must be a callable or 'package.module:function'"),
        (
            {"ner": "json:nothing_here"},
            "gates[0] (pii): ner: 'json:nothing_here' is not a function",
        ),
        ({"lang": "fr"}, "gates[0] (pii): lang must be one of auto, zh, en, got 'fr'"),
        ({"placeholders": {"ssn": "[X]"}}, "gates[0] (pii): placeholders: unknown type 'ssn'"),
        (
            {"placeholders": {"email": ""}},
            "gates[0] (pii): placeholders: 'email' must be a non-empty",
        ),
        ({"fields": ["answer"]}, "gates[0] (pii): fields: unknown field(s) ['answer']"),
        ({"scrub_dropped": "yes"}, "gates[0] (pii): scrub_dropped must be true or false"),
        ({"mask": True}, "gates[0] (pii): unknown option 'mask'; known: mode, types, names"),
    ],
)
def test_bad_options_are_config_errors_naming_the_option(options, message):
    with pytest.raises(ConfigError) as err:
        build_gates([{"type": "pii", **options}])
    assert str(err.value).startswith(message), str(err.value)


# --- through the pipeline ------------------------------------------------------------------


async def test_pipeline_outputs_never_hold_the_values(sim, tmp_path):
    """The simulator's teacher copies slice sentences into samples: the gate must catch them."""
    r = rng(16)
    values = [pf.id_number(r), pf.mobile(r), pf.bank_card(r), pf.email(r)]
    slices = [
        {
            "id": "claims",
            "content": (
                f"第一条 被保险人张先生，身份证号码{values[0]}，出险后应及时报案。"
                f"第二条 报案电话请拨打{values[1]}，工作日九点至十七点受理。"
                f"第三条 理赔款支付至被保险人名下银行卡{values[2]}，不得代领。"
                f"第四条 电子材料请发送至{values[3]}，逾期不予受理。"
                "第五条 保单号P2024030100123的保险期间自2024-03-01起计算，金额100,000元。"
            ),
        }
    ]
    path = tmp_path / "slices.jsonl"
    path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in slices), "utf-8")
    cfg = sim_config(
        sim, output_dir=str(tmp_path / "out"), samples_per_slice=8, gates=[{"type": "pii"}]
    )
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(path)
    raw = [
        json.loads(x)
        for x in (result.output_dir / "generated_raw.jsonl").read_text("utf-8").splitlines()
    ]
    redacted = [x for x in raw if "pii" in x["annotations"]]
    assert redacted, "the teacher copied no personal data: the test proves nothing"
    assert "P2024030100123" in "".join(x["output"] for x in raw)  # look-alikes survive
    checked = 0
    for f in result.output_dir.rglob("*"):
        # The response cache holds the teacher's raw replies; scrub slices before the teacher
        # (scrub_slice_text) to keep values out of it.
        if f.is_file() and not f.name.startswith("cache.sqlite3"):
            data = f.read_bytes().decode("utf-8", errors="replace")
            for v in values:
                assert v not in data, (f.name, v)
            checked += 1
    assert checked >= 3


# --- the chunk text, evidence quotes, the default gate, failures ---------------------------


async def test_redact_scrubs_the_chunk_the_judges_read_with_the_same_placeholders():
    r = rng(30)
    phone, card, other = pf.mobile(r), pf.bank_card(r), pf.email(r)
    source = f"第二条 报案电话{phone}。第三条 理赔款转入银行卡{card}。第四条 邮箱{other}。"
    sample = Sample(
        id="s",
        slice_id="x",
        instruction="报案打什么电话？",
        output=f"拨打{phone}。",
        source_text=source,
        evidence=[f"报案电话{phone}"],
    )
    result = await PiiGate().check(sample)
    assert result.keep
    assert sample.output == "拨打[手机号]。" and sample.evidence == ["报案电话[手机号]"]
    assert (
        sample.source_text
        == "第二条 报案电话[手机号]。第三条 理赔款转入银行卡[银行卡号]。第四条 邮箱[EMAIL]。"
    )
    note = result.annotations["pii"]
    # counted and located in the sample's own fields only
    assert note["counts"] == {"mobile": 2}
    assert {s["field"] for s in note["spans"]} == {"output", "evidence.0"}
    assert note["placeholders"] == ["[手机号]"]
    # a sample without values still gets the scrubbed chunk; scrub_source: false keeps it
    clean = Sample(
        id="c", slice_id="x", instruction="何时报案？", output="及时。", source_text=source
    )
    assert (await PiiGate().check(clean)) == GateResult(True)
    assert phone not in clean.source_text and "[手机号]" in clean.source_text
    kept = Sample(
        id="k", slice_id="x", instruction="何时报案？", output="及时。", source_text=source
    )
    await PiiGate(scrub_source=False).check(kept)
    assert kept.source_text == source
    tagged = Sample(
        id="t", slice_id="x", instruction="何时报案？", output="及时。", source_text=source
    )
    await PiiGate(mode="tag").check(tagged)
    assert tagged.source_text == source


async def test_the_evidence_gate_still_finds_a_redacted_quote_in_the_redacted_chunk():
    phone = pf.mobile(rng(31))
    source = f"第二条 投保人应拨打{phone}报案，并在十日内提交材料。"
    sample = Sample(
        id="s",
        slice_id="x",
        instruction="如何报案？",
        output=f"拨打{phone}报案，十日内提交材料。",
        source_text=source,
        evidence=[f"投保人应拨打{phone}报案"],
    )
    gates = build_gates([{"type": "evidence"}, {"type": "pii"}])
    assert [g.name for g in gates] == ["pii", "evidence"]
    assert await run_gates(sample, gates) == (None, None)


def test_the_pii_key_sets_the_default_gate():
    from sft_distill.config.merging import build_config

    def gates(**cfg: Any) -> list[Any]:
        return build_gates(build_config(cfg))

    # "gates": [] leaves the quality and rule gates out; the pii gate stays unless "off".
    (default,) = gates(gates=[])
    assert isinstance(default, PiiGate) and default.mode == "redact"
    assert gates()[0].name == "pii"  # first, before the default gates
    assert gates(pii="off", gates=[]) == []
    assert gates(pii="drop")[0].mode == "drop"
    opts = gates(pii={"mode": "tag", "types": ["email"], "name": "privacy"})[0]
    assert (opts.name, opts.mode, opts.detector.types) == ("privacy", "tag", frozenset({"email"}))
    # an entry in gates replaces it and runs first, wherever it is listed
    listed = gates(gates=[{"type": "rules"}, {"type": "pii", "mode": "drop"}])
    assert [g.name for g in listed][:2] == ["pii", "length"] and listed[0].mode == "drop"
    assert sum(isinstance(g, PiiGate) for g in listed) == 1
    with pytest.raises(ConfigError, match="pii: set the pii gate either with the"):
        gates(pii="tag", gates=[{"type": "pii"}])
    with pytest.raises(ConfigError, match=r"pii: mode must be one of redact, drop, tag"):
        gates(pii={"mode": "mask"})
    with pytest.raises(ConfigError, match=r"pii: must be one of redact, drop, tag, off"):
        build_config({"pii": "mask"})


def test_names_given_for_the_gate_are_not_written_to_metadata():
    from sft_distill.config.merging import build_config

    cfg = build_config({"pii": {"names": ["欧阳娜娜", "Zhang Wei"]}})
    public = json.dumps(cfg.public_dict(), ensure_ascii=False)
    assert "欧阳娜娜" not in public and "Zhang Wei" not in public
    assert cfg.public_dict()["pii"]["names"] == "<2 names>"
    listed = build_config({"pii": "redact", "gates": [{"type": "pii", "names": ["李雷"]}]})
    assert "李雷" not in json.dumps(listed.public_dict(), ensure_ascii=False)


def test_failure_details_are_scrubbed(tmp_path):
    """A teacher reply that cannot be used is quoted in failures.jsonl: redacted like samples."""
    from sft_distill.models import Failure
    from sft_distill.outputs.failures import FailureLog
    from sft_distill.outputs.writers import JsonlWriter

    phone = pf.mobile(rng(32))
    with JsonlWriter(tmp_path / "f.jsonl") as w:
        log = FailureLog(w, scrub=lambda t: PiiGate().scrub(t)[0])
        log.add(Failure(kind="generation", reason=f"bad reply {phone}", detail=f"拨打{phone}"))
    text = (tmp_path / "f.jsonl").read_text("utf-8")
    assert phone not in text and "[手机号]" in text


async def test_the_shipped_jieba_ner_hook_finds_chinese_names():
    pytest.importorskip("jieba", reason="the ner extra (jieba) is not installed")
    gate = build_gates([{"type": "pii", "ner": "sft_distill.stages.gates.pii:JiebaNames"}])[0]
    sample = Sample(
        id="s", slice_id="x", instruction="张伟的保单何时生效？", output="李雷已为张伟投保。"
    )
    await gate.check(sample)
    assert (sample.instruction, sample.output) == (
        "[姓名1]的保单何时生效？",
        "[姓名2]已为[姓名1]投保。",
    )


def test_a_ner_class_that_cannot_start_is_a_config_error(tmp_path, monkeypatch):
    (tmp_path / "broken_ner.py").write_text(
        "class Model:\n    def __init__(self):\n        raise RuntimeError('weights missing')\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="gates\\[0\\] \\(pii\\): ner: broken_ner:Model: weights"):
        build_gates([{"type": "pii", "ner": "broken_ner:Model"}])
    sys.modules.pop("broken_ner", None)
