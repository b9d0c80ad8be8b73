"""Deterministic sample checks (zh and en), their gates, and the quality benchmark."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.errors import ConfigError
from sft_distill.models import Sample, ScoredSample
from sft_distill.outputs.formats import FORMATS, row_for
from sft_distill.stages.gates.base import run_gates
from sft_distill.stages.gates.checks.evidence import check_evidence, quote_score
from sft_distill.stages.gates.checks.non_answer import find_non_answer
from sft_distill.stages.gates.checks.numbers import check_numbers, extract_quantities
from sft_distill.stages.gates.checks.numerals import (
    normalize_numerals,
    parse_en_number,
    parse_zh_number,
    roman_to_int,
)
from sft_distill.stages.gates.checks.provisions import is_case_question, target_passage
from sft_distill.stages.gates.checks.referential import find_referential
from sft_distill.stages.gates.checks.support import find_unsupported
from sft_distill.stages.gates.checks.truncation import find_truncation
from sft_distill.stages.gates.registry import QUALITY_GATE_TYPES, build_gates
from tests.helpers import REPO, SHARED_DATA, SLICES, needs_shared, read_jsonl, sim_config

# A window of the Insurance Law as a teacher sees it.
ZH_SOURCE = """# 中华人民共和国保险法

第二十三条 保险人收到被保险人或者受益人的赔偿或者给付保险金的请求后，应当及时作出核定；情形复杂的，\
应当在三十日内作出核定，但合同另有约定的除外。保险人应当将核定结果通知被保险人或者受益人；对属于保险责任的，\
在与被保险人或者受益人达成赔偿或者给付保险金的协议后十日内，履行赔偿或者给付保险金义务。

第二十四条 保险人依照本法第二十三条的规定作出核定后，对不属于保险责任的，应当自作出核定之日起三日内\
向被保险人或者受益人发出拒绝赔偿或者拒绝给付保险金通知书，并说明理由。

第二十五条 保险人自收到赔偿或者给付保险金的请求和有关证明、资料之日起六十日内，\
对其赔偿或者给付保险金的\
数额不能确定的，应当根据已有证明和资料可以确定的数额先予支付；保险人最终确定赔偿或者给付保险金的数额后，\
应当支付相应的差额。

第二十六条 人寿保险以外的其他保险的被保险人或者受益人，\
向保险人请求赔偿或者给付保险金的诉讼时效期间为二年，\
自其知道或者应当知道保险事故发生之日起计算。

第九十七条 保险公司应当按照其注册资本总额的百分之二十提取保证金，\
存入国务院保险监督管理机构指定的银行，\
除公司清算时用于清偿债务外，不得动用。
"""
EN_SOURCE = """# US Constitution: Article I

## 1. Article I

### Section 3

The Senate of the United States shall be composed of two Senators from each State, chosen by the \
Legislature thereof, for six Years; and each Senator shall have one Vote.

No Person shall be a Senator who shall not have attained to the Age of thirty Years, and been nine \
Years a Citizen of the United States.

The Vice President of the United States shall be President of the Senate, but shall have no Vote, \
unless they be equally divided.

### Section 7

Every Bill which shall have passed the House of Representatives and the Senate, shall, before it \
become a Law, be presented to the President of the United States. \
If after such Reconsideration two \
thirds of that House shall agree to pass the Bill, it shall become a Law. If any Bill shall not be \
returned by the President within ten Days (Sundays excepted) after it shall have been presented to \
him, the Same shall be a Law.
"""


# --- numerals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("自收到通知之日起三十日内", "自收到通知之日起30日内"),
        ("百分之二十", "20%"),
        ("千分之五", "0.5%"),
        ("三分之二", "2/3"),
        ("二〇二四年", "2024年"),
        ("两年内", "2年内"),
        ("第一百零五条", "第105条"),
        ("第十六条第三款", "第16条第3款"),
        ("十万元", "100000元"),
        ("10万元", "100000元"),
        ("1.5亿元", "150000000元"),
        ("处五万元以上三十万元以下罚款", "处50000元以上300000元以下罚款"),
        ("201,000元", "201000元"),
        # words that only contain a numeral stay as they are
        ("一般情况下统一规定，万一两者不同", "一般情况下统一规定，万一两者不同"),
        ("一次性支付", "一次性支付"),
        ("not exceeding ten dollars", "not exceeding 10 dollars"),
        ("two thirds of the Senators", "2/3 of the Senators"),
        ("three fourths thereof", "3/4 thereof"),
        ("the Year one thousand eight hundred and eight", "the Year 1808"),
        ("thirty-five Years", "35 Years"),
        ("Article IV, Section 2", "Article 4, Section 2"),
        ("the Fifth Amendment", "the Amendment 5"),
        ("a third party", "a third party"),
        ("a third of the members", "1/3 of the members"),
    ],
)
def test_normalize_numerals(text, expected):
    assert normalize_numerals(text).replace("，", ",") == expected.replace("，", ",")


def test_normalize_numerals_ordinals_on_request():
    text = "chosen every second Year; the first Monday; the twenty-first day"
    assert normalize_numerals(text) == text
    assert normalize_numerals(text, ordinals=True) == (
        "chosen every 2nd Year; the 1st Monday; the 21st day"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("三十", 30),
        ("十五", 15),
        ("一百零五", 105),
        ("二〇二四", 2024),
        ("两万", 20000),
        ("一万二千", 12000),
        ("三亿五千万", 350_000_000),
        ("十", 10),
        ("零", 0),
        ("一般", None),
    ],
)
def test_parse_zh_number(text, value):
    assert parse_zh_number(text) == value


def test_parse_en_number_and_roman():
    assert parse_en_number("thirty five") == 35
    assert parse_en_number("one thousand eight hundred and eight") == 1808
    assert parse_en_number("a hundred") == 100
    assert parse_en_number("many") is None
    assert [roman_to_int(r) for r in ("I", "IV", "IX", "XIV", "XXVII")] == [1, 4, 9, 14, 27]
    assert roman_to_int("IIII") is None


def test_extract_quantities_units_and_what_is_left_out():
    zh = extract_quantities(
        "应当在30日内核定；2023年3月31日前；第二十三条；（一）二倍罚款；百分之二十", "zh"
    )
    assert [(q.value, q.unit) for q in zh] == [(30, "day"), (2, "multiple"), (20, "percent")]
    en = extract_quantities("within ten Days, two thirds, on March 4, 1789, $20, Section 7", "en")
    assert [(round(q.value, 3), q.unit) for q in en] == [
        (10, "day"),
        (0.667, "ratio"),
        (20, "money"),
    ]


# --- referential -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question",
    [
        "根据上述资料，犹豫期是多少天？",
        "文中提到的现金价值应当在多长时间内退还？",
        "本合同的犹豫期是多少天？",
        "该条款规定的宽限期是多少天？",
        "根据以上内容，交强险的保险期间是多久？",
        "这段条文中，保险人解除合同的期限是怎么规定的？",
        "请结合所给材料，说明定金罚则。",
        "材料里说的救助基金有哪些资金来源？",
        "本条例对挂车有什么特别规定？",
        "According to the passage above, how old must a Senator be?",
        "In the text, what limits are placed on suspending habeas corpus?",
        "Based on the excerpt provided, how are amendments ratified?",
        "What does the document say about revenue bills?",
        "What does the author say about the punishment of treason?",
        "What does this section say about the Vice President's vote?",
        "Summarize the main point of the given text.",
    ],
)
def test_referential_question_dropped(question):
    found = find_referential(question, "保险人应当在三十日内作出核定。")
    assert found is not None and "referential question" in found.reason


@pytest.mark.parametrize(
    "question",
    [
        "《平安福终身寿险》条款中，本合同的犹豫期是多少天？",
        "《保险法》中本法所称保险人是指什么？",
        "某公司与张某签订了一份保险合同，该合同约定的犹豫期是多少天？",
        "违法所得十万元以上的，罚款幅度是多少？",
        "下列哪些情形属于保险事故？A.地震 B.火灾",
        "保险人在什么情况下可以解除合同？",
        "Under Article I, Section 3, what does this section say about the Vice President's vote?",
        "What is the text of the Fifth Amendment about takings?",
        "How long is a Senator's term under the U.S. Constitution?",
    ],
)
def test_self_contained_question_kept(question):
    assert find_referential(question, "An answer.") is None


def test_referential_question_with_its_material_inline():
    assert (
        find_referential(
            "Summarize this paragraph: Scientists now know that tardigrades survive in space."
        )
        is None
    )
    assert find_referential("将以下内容分为两类：香蕉、橙子、胡萝卜、土豆") is None
    assert (
        find_referential("识别该段落中表达的情绪。\n\n帮助别人是一件很棒的事情，它让你感觉良好。")
        is None
    )
    # "above" cannot point at what follows
    assert (
        find_referential("根据上述资料：犹豫期是多少天？请详细说明并举例分析其中的要点和理由。")
        is not None
    )


def test_referential_answer_and_input():
    found = find_referential("保险人多久内作出核定？", "文中提到，保险人应当在三十日内作出核定。")
    assert found is not None and found.details["where"] == "output"
    found = find_referential("How long is a term?", "According to the passage, six years.")
    assert found is not None and "answer refers" in found.reason
    # quoting the law's own "上述规定" is not referring to a text
    assert find_referential("违反规定会怎样？", "违反上述规定的，处五万元以上罚款。") is None
    # the material is in the input: the question may point at it
    material = "第十六条 订立保险合同，保险人就保险标的提出询问的，投保人应当如实告知。" * 2
    assert (
        find_referential("根据下面的材料，投保人有什么义务？", "如实告知。", input=material) is None
    )


# --- evidence --------------------------------------------------------------------------------


def test_evidence_exact_and_tolerant_of_spacing_punctuation_and_case():
    assert quote_score("应当在三十日内作出核定", ZH_SOURCE) == 1.0
    # full-width vs ASCII punctuation, spaces, a dropped comma
    assert (
        quote_score(
            "保险人收到被保险人或者受益人的赔偿或者给付保险金的请求后 , 应当及时作出核定", ZH_SOURCE
        )
        == 1.0
    )
    assert quote_score("shall be composed of TWO senators from each state", EN_SOURCE) == 1.0
    result = check_evidence(
        ["应当在三十日内作出核定", "除公司清算时用于清偿债务外，不得动用"], ZH_SOURCE
    )
    assert result.verified is True and result.failed == [] and result.scores == [1.0, 1.0]


def test_evidence_fuzzy_character_level_for_cjk():
    # two characters changed in a long quote: still found
    near = (
        "保险人自收到赔偿或者给付保险金的请示和有关证明、资料之日起六十日内，"
        "对其赔偿或者给付保险金的数目不能确定的"
    )
    assert 0.85 <= quote_score(near, ZH_SOURCE) < 1.0
    assert check_evidence([near], ZH_SOURCE).verified is True
    # a phrase skipped: not verbatim any more
    elided = (
        "保险人自收到赔偿或者给付保险金的请求和有关证明资料之日起六十日内，对赔偿的数额不能确定的"
    )
    assert quote_score(elided, ZH_SOURCE) < 0.85
    # a sentence the source does not have
    invented = "保险人延迟承担保险责任的，应当按日支付保险费千分之一的违约金"
    result = check_evidence(["应当在三十日内作出核定", invented], ZH_SOURCE)
    assert result.verified is False and result.failed == [invented]
    assert result.scores[1] < 0.85
    assert check_evidence([], ZH_SOURCE).verified is None
    assert check_evidence(["  "], ZH_SOURCE).verified is None


@pytest.mark.slow
def test_evidence_is_fast_on_a_long_chunk():
    chunk = ZH_SOURCE * 40  # about 20,000 characters
    quotes = [
        "保险人最终确定赔偿或者给付保险金的数额后，应当支付相应的差额",
        "被保险人完全没有说过的话" * 3,
    ]
    start = time.perf_counter()
    for _ in range(10):
        result = check_evidence(quotes, chunk)
    assert time.perf_counter() - start < 2.0
    assert result.failed == [quotes[1]]


# --- numbers and references ------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        # restated in other numerals: 三十日 = 30日, 百分之二十 = 20%, 二年 = 两年
        "保险人情形复杂的，应当在30日内作出核定；达成协议后10日内履行赔付义务。",
        "保险公司应当按照注册资本总额的20%提取保证金。",
        "其他保险的诉讼时效期间为两年，自知道或者应当知道保险事故发生之日起计算。",
        "依照《保险法》第二十四条，保险人应当自作出核定之日起三日内发出拒赔通知书。",
        "依照本法第二十三条作出核定后，不属于保险责任的，三日内发出拒绝赔偿通知书。",
    ],
)
def test_numbers_faithful_answers_kept(answer):
    assert check_numbers(answer, ZH_SOURCE, "《保险法》第二十四条规定了什么？") is None


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        # a swapped deadline, even though 60 occurs elsewhere in the source
        ("保险人应当自作出核定之日起六十日内发出拒绝赔偿通知书。", "differs from the source"),
        ("保险人应当自作出核定之日起五日内发出拒绝赔偿通知书。", "5日"),
        ("保险公司应当按照注册资本总额的百分之三十提取保证金。", "30% (source: 20)"),
        ("根据《保险法》第四十三条，保险人应当自作出核定之日起三日内发出通知书。", "第43条"),
        ("根据《保险法》第二十五条，保险人应当自作出核定之日起三日内发出通知书。", "attributes it"),
        ("依照《劳动合同法》第八十四条，用人单位不得扣押劳动者证件。", "劳动合同法"),
    ],
)
def test_numbers_wrong_answers_dropped(answer, reason):
    found = check_numbers(answer, ZH_SOURCE, "《保险法》第二十四条规定了什么？")
    assert found is not None and reason in found.reason, found


def test_numbers_calculations_and_cases_kept():
    q = "某保险公司注册资本为5亿元，依照《保险法》第九十七条应提取多少保证金？"
    assert check_numbers("保证金为注册资本的百分之二十，即5亿元×20%＝1亿元。", ZH_SOURCE, q) is None
    # a one-step derivation without writing the equation out
    assert check_numbers("应提取20%，也就是1亿元。", ZH_SOURCE, q) is None
    # a chain: the first step's result feeds the second
    q2 = "甲乙约定定金20万元，主合同标的额为80万元，依照法律规定超出部分多少无效？"
    source2 = (
        "定金的数额由当事人约定；但是，不得超过主合同标的额的百分之二十，超过部分不产生定金的效力。"
    )
    answer2 = "80万元×20%＝16万元，约定的20万元中超出的4万元不产生定金效力。"
    assert check_numbers(answer2, source2, q2) is None
    # dates computed from the question's date are not rule quantities
    q3 = "保险人于2023年3月1日收到请求，情形复杂，最晚何时作出核定？"
    assert check_numbers("应在三十日内核定，即最晚2023年3月31日。", ZH_SOURCE, q3) is None
    # but a wrong rule quantity in a case answer is still caught
    assert check_numbers("应在四十五日内核定，即最晚2023年4月15日。", ZH_SOURCE, q3) is not None


def test_numbers_english():
    q = "What does Article I, Section 7 say about bills the President does not return?"
    good = "A bill not returned by the President within ten days, Sundays excepted, becomes law."
    assert check_numbers(good, EN_SOURCE, q) is None
    swapped = (
        "A bill not returned by the President within twelve Days (Sundays excepted) becomes law."
    )
    assert "differs from the source" in check_numbers(swapped, EN_SOURCE, q).reason
    assert (
        "section 9"
        in check_numbers(
            "Under Article I, Section 9, bills go to the President.", EN_SOURCE, q
        ).reason
    )
    assert "amendment 6" in check_numbers("The Sixth Amendment says so.", EN_SOURCE, q).reason
    count = check_numbers(
        "The Senate is composed of three Senators from each State.",
        EN_SOURCE,
        "How is the Senate composed?",
    )
    assert count is not None and "differs" in count.reason
    calc_q = "The Senate has 89 Senators present for a veto override. How many must agree?"
    calc = "Two thirds of that House must agree: two thirds of 89 is 59.33, so 60 Senators."
    assert check_numbers(calc, EN_SOURCE, calc_q) is None
    year_q = (
        "Someone became a citizen in 2017. In what year does he meet the Senate's citizenship rule?"
    )
    assert (
        check_numbers(
            "A Senator must have been a citizen for nine years, so in 2026.", EN_SOURCE, year_q
        )
        is None
    )


# --- truncation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "根据《保险法》第二十三条，保险人收到赔偿请求后，应当及时作出核定；情形复杂的，应当在三十日内作出",
        "保险人应当在三十日内作出核定，",
        "保险人应当在三十日内作出核定（合同另有约定的",
        "保险合同应当包括：\n（一）保险人的名称和住所；\n（二）",
        "另外，根据《民法典》",
        "A bill not returned within ten days becomes law, unless Congress by adjournment stops the",
        "The Senate shall be composed of two Senators from each State, chosen by the Legislature",
        "```python\nprint('unfinished')",
    ],
)
def test_truncated_answers_dropped(answer):
    assert find_truncation(answer) is not None


@pytest.mark.parametrize(
    "answer",
    [
        "保险人应当在三十日内作出核定。",
        "二年",
        "保险合同应当包括下列事项：\n1. 保险人的名称和住所\n2. 保险标的",
        "保险人应当退还保险费（《保险法》第十六条）",
        "He said “I cannot accept it.”",
        "Six years.",
        "```python\nprint('done')\n```",
    ],
)
def test_complete_answers_kept(answer):
    assert find_truncation(answer) is None


def test_finish_reason_length_is_truncated():
    found = find_truncation("保险人应当在三十日内作出核定。", finish_reason="length")
    assert found is not None and "length" in found.reason
    assert find_truncation("保险人应当在三十日内作出核定。", finish_reason="stop") is None


# --- non-answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "资料中没有提及相关内容。",
        "根据现有信息，无法确定。",
        "文中未说明这一点。",
        "很抱歉，我没有找到相关信息。",
        "请咨询专业人士。",
        "视具体情况而定。",
        "The text does not say.",
        "I cannot determine this from the information given.",
        "I'm not able to answer that based on what was provided.",
        "It depends.",
        "Please consult a lawyer.",
    ],
)
def test_non_answers_dropped(answer):
    assert find_non_answer(answer) is not None


@pytest.mark.parametrize(
    "answer",
    [
        "故意或者因重大过失未及时通知，致使保险事故的性质难以确定的，保险人对无法确定的部分，不承担赔偿责任。",
        "不一定能。洪水属于不可抗力，可以根据影响部分或者全部免除责任；但厂方应当及时通知买方，并在合理期限内提供证明。",
        "张某对客服说“我不知道这条规定”，但投保人仍应当如实告知。",
        "The Constitution does not set the number of Justices; Congress fixes it by law.",
        "Within ten days, Sundays excepted. If the insurer refuses, you may consult a lawyer next.",
    ],
)
def test_real_answers_kept(answer):
    assert find_non_answer(answer) is None


# --- support: invented rules and misattributed answers ---------------------------------------


def test_invented_sentence_dropped_and_faithful_paraphrase_kept():
    q = "《保险法》第九十七条规定了什么？"
    faithful = (
        "保险公司应当按注册资本总额的百分之二十提取保证金，存入指定的银行；"
        "除公司清算时用于清偿债务外，不得动用。"
    )
    assert find_unsupported(faithful, ZH_SOURCE, q) is None
    invented = (
        faithful + "保险公司违反该规定的，监管机构可以对其董事处以终身市场禁入并公开通报批评。"
    )
    found = find_unsupported(invented, ZH_SOURCE, q)
    assert found is not None and "sentence not supported" in found.reason
    # advice in the answer's own words is no claim about the law
    assert (
        find_unsupported(
            faithful + "建议投保人在签约前仔细阅读合同条款并保留好相关凭证。", ZH_SOURCE, q
        )
        is None
    )
    en_q = "What does Article I, Section 3 say about Senators?"
    en = "Each State has two Senators chosen for six years, and each Senator has one vote."
    assert find_unsupported(en, EN_SOURCE, en_q) is None
    found = find_unsupported(
        en + " No Senator may serve more than two consecutive terms.", EN_SOURCE, en_q
    )
    assert found is not None


def test_misattributed_answer_dropped():
    q = "《保险法》第二十六条规定了什么？"
    other = (
        "根据《保险法》第二十六条，保险标的转让的，保险标的的受让人承继被保险人的权利和义务，"
        "被保险人或者受让人应当及时通知保险人。"
    )
    assert find_unsupported(other, ZH_SOURCE, q) is not None
    en_q = "What does Article I, Section 7 provide?"
    other_en = (
        "Under Article I, Section 7, the right of the people to be secure in their persons, houses "
        "and papers against unreasonable searches shall not be violated."
    )
    assert find_unsupported(other_en, EN_SOURCE, en_q) is not None


def test_case_answers_are_not_support_checked():
    q = "张某买车后被人撞伤，肇事者拒绝赔偿。依照《保险法》第二十六条，他最晚何时起诉保险公司？"
    assert is_case_question(q, "zh")
    answer = (
        "张某得在知道出事之日起两年内去法院告保险公司，过了这个时间，法院一般就不再支持他的请求了。"
    )
    assert find_unsupported(answer, ZH_SOURCE, q) is None
    assert not is_case_question("《保险法》第二十六条规定了什么？", "zh")
    assert not is_case_question(
        "What does Article I, Section 9 say about imports before 1808?",
        "en",
        source="prior to the Year 1808",
    )
    assert is_case_question("Suppose a Senator resigns. Who fills the seat?", "en")


def test_target_passage():
    passage = target_passage(ZH_SOURCE, "《保险法》第二十四条规定了什么？", "zh")
    assert passage is not None and passage.startswith("第24条") and "第25条" not in passage
    section = target_passage(EN_SOURCE, "What does Article I, Section 7 say?", "en")
    assert section is not None and "Every Bill" in section and "Vice President" not in section
    assert target_passage(ZH_SOURCE, "保险人多久内作出核定？", "zh") is None


# --- gates -----------------------------------------------------------------------------------


def sample(**kw: Any) -> Sample:
    base: dict[str, Any] = {
        "id": "s1",
        "slice_id": "law",
        "instruction": "《保险法》第二十四条规定了什么？",
        "output": (
            "保险人作出核定后，对不属于保险责任的，应当自作出核定之日起三日内发出拒绝赔偿通知书，"
            "并说明理由。"
        ),
        "source_text": ZH_SOURCE,
    }
    base.update(kw)
    return Sample(**base)


def test_quality_bundle_builds_every_gate_cheapest_first():
    gates = build_gates([{"type": "quality"}])
    assert [g.name for g in gates] == list(QUALITY_GATE_TYPES)
    assert QUALITY_GATE_TYPES == (
        "truncated",
        "non_answer",
        "referential",
        "evidence",
        "numbers",
        "support",
    )
    some = build_gates(
        [{"type": "quality", "exclude": ["support"], "evidence": {"on_missing": "flag"}}]
    )
    assert [g.name for g in some] == list(QUALITY_GATE_TYPES[:-1])
    assert some[3].on_missing == "flag"
    # every type on its own, with a name
    (gate,) = build_gates([{"type": "numbers", "name": "numbers_strict"}])
    assert gate.name == "numbers_strict"


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (
            [{"type": "evidence", "on_missing": "ignore"}],
            "gates[0] (evidence): on_missing must be 'drop' or 'flag'",
        ),
        (
            [{"type": "evidence", "threshold": 2}],
            "gates[0] (evidence): threshold must be a number from 0 to 1",
        ),
        (
            [{"type": "referential", "check_output": "yes"}],
            "gates[0] (referential): check_output must be true or false",
        ),
        (
            [{"type": "support", "min_sentence_support": -1}],
            "min_sentence_support must be a number",
        ),
        ([{"type": "numbers", "strict": True}], "gates[0] (numbers): unknown option 'strict'"),
        (
            [{"type": "quality", "exclude": ["length"]}],
            "gates[0] (quality): cannot exclude 'length'",
        ),
        (
            [{"type": "quality", "truncated": {"x": 1}}],
            "gates[0] (quality) truncated: unknown option 'x'",
        ),
        ([{"type": "quality", "name": "q"}], "'name' is not allowed here"),
    ],
)
def test_quality_gate_options_are_validated(specs, message):
    with pytest.raises(ConfigError) as err:
        build_gates(specs)
    assert message in str(err.value)


async def test_gates_keep_and_drop_with_their_own_reason():
    gates = {g.name: g for g in build_gates([{"type": "quality"}])}
    good = sample()
    for gate in gates.values():
        assert (await gate.check(good)).keep, gate.name
    cases = {
        "truncated": sample(
            output="保险人作出核定后，对不属于保险责任的，应当自作出核定之日起三日内"
        ),
        "non_answer": sample(output="资料中没有提及相关规定。"),
        "referential": sample(instruction="根据上述资料，拒赔通知应在几日内发出？"),
        "numbers": sample(
            output="保险人应当自作出核定之日起五日内发出拒绝赔偿通知书，并说明理由。"
        ),
        "support": sample(
            instruction="《保险法》第二十六条规定了什么？",
            output="根据《保险法》第二十六条，保险标的转让的，受让人承继被保险人的权利和义务，并应当及时通知保险人。",
        ),
    }
    # support's findings are all suspect: with on_suspect "drop" they drop as every gate's do
    strict = {
        g.name: g for g in build_gates([{"type": "quality", "support": {"on_suspect": "drop"}}])
    }
    for name, bad in cases.items():
        result = await strict[name].check(bad)
        assert not result.keep and result.reason, name
    # by default a suspect finding keeps the sample and flags it for the judges
    flagged = await gates["support"].check(cases["support"])
    assert flagged.keep and flagged.annotations["quality_flags"][0]["check"] == "support"
    truncated_by_length = sample(annotations={"finish_reason": "length"})
    assert not (await gates["truncated"].check(truncated_by_length)).keep
    # run_gates stops at the first and names it
    dropped, name = await run_gates(cases["numbers"], list(gates.values()))
    assert name == "numbers" and dropped is not None


async def test_evidence_gate_drop_flag_and_missing():
    (drop,) = build_gates([{"type": "evidence"}])
    (flag,) = build_gates([{"type": "evidence", "on_missing": "flag"}])
    none = await drop.check(sample())
    assert none.keep and none.annotations == {"evidence_verified": None}
    ok = await drop.check(sample(evidence=["应当自作出核定之日起三日内"]))
    assert ok.keep and ok.annotations["evidence_verified"] is True
    bad = sample(evidence=["应当自作出核定之日起三日内", "保险人可以随时解除合同并没收保险费"])
    dropped = await drop.check(bad)
    assert not dropped.keep and "1 of 2 evidence quotes" in dropped.reason
    assert dropped.annotations["evidence_failed"] == ["保险人可以随时解除合同并没收保险费"]
    flagged = await flag.check(bad)
    assert flagged.keep and flagged.annotations["evidence_verified"] is False
    # quotes may also come in the annotations (a mode that parses them itself)
    via_notes = sample(annotations={"evidence": ["保险人可以随时解除合同并没收保险费"]})
    assert not (await drop.check(via_notes)).keep


def test_evidence_is_kept_on_the_raw_sample_but_not_in_training_rows():
    quote = "情形复杂的，应当在三十日内作出核定"
    scored = ScoredSample(**sample(evidence=[quote]).model_dump())
    assert scored.model_dump()["evidence"] == [quote]
    for fmt in FORMATS:
        row = row_for(scored, fmt, system=None, include_reasoning=False)
        assert quote not in json.dumps(row, ensure_ascii=False), fmt
        assert "evidence" not in json.dumps(row), fmt


async def test_quality_gates_in_a_pipeline_run(sim, tmp_path):
    slices = tmp_path / "slices.jsonl"
    slices.write_text(
        json.dumps({"id": "law", "content": ZH_SOURCE}, ensure_ascii=False)
        + "\n"
        + json.dumps({"id": "con", "content": EN_SOURCE})
        + "\n",
        encoding="utf-8",
    )
    cfg = sim_config(
        sim, output_dir=str(tmp_path / "out"), samples_per_slice=4, gates=[{"type": "quality"}]
    )
    pipeline = DatasetDistillationPipeline(cfg, show_progress=False)
    # the pii gate is on by default and runs first
    assert [g.name for g in pipeline.gates] == ["pii", *QUALITY_GATE_TYPES]
    result = await pipeline.run(slices)
    out = result.output_dir
    raw = read_jsonl(out / "generated_raw.jsonl")
    # The simulated teacher quotes its evidence verbatim (gen-v2): every quote is verified.
    assert raw and all(r["evidence"] for r in raw)
    assert all(r["annotations"].get("evidence_verified") is True for r in raw)
    gated = {r["drop_reason"] for r in raw if (r["drop_reason"] or "").startswith("gate:")}
    assert gated <= {f"gate:{name}" for name in QUALITY_GATE_TYPES}
    for path in out.glob("train*.jsonl"):
        assert '"evidence"' not in path.read_text(encoding="utf-8")


# --- the benchmark ---------------------------------------------------------------------------


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_quality", REPO / "benchmarks" / "bench_quality.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_on_the_shipped_set(capsys):
    bench = _bench()
    shipped = REPO / "benchmarks" / "data" / "quality_small.jsonl"
    assert bench.main(["--data", str(shipped)]) == 0
    table = capsys.readouterr().out
    assert "### zh" in table and "### en" in table
    kinds = [*bench.GOOD_KINDS, *bench.DEFECT_KINDS]
    for lang_block in table.split("### ")[1:]:
        for kind in kinds:
            assert f"| {kind} |" in lang_block, (kind, lang_block[:3])
    rows = bench.load_rows(shipped)
    for lang in ("zh", "en"):
        counts = {
            kind: sum(1 for r in rows if r["lang"] == lang and r["defect"] == kind)
            for kind in kinds
        }
        assert min(counts.values()) >= 10, (lang, counts)
    assert bench.main(["--data", str(shipped), "--lang", "en", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert list(summary) == ["en"]
    for kind, target in bench.TARGETS.items():
        # recall counts drops and flags for the judges; false drops count drops only
        rate = bench.measured(kind, summary["en"][kind])
        assert (rate <= target) if kind in bench.GOOD_KINDS else (rate >= target), (kind, rate)


def test_bench_bad_path(capsys, tmp_path):
    assert _bench().main(["--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


@needs_shared("quality_seeded.jsonl")
@pytest.mark.slow
def test_bench_on_the_shared_set_meets_the_targets(capsys):
    bench = _bench()
    assert bench.main(["--data", str(SHARED_DATA / "quality_seeded.jsonl"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    for lang, kinds in summary.items():
        for kind, target in bench.TARGETS.items():
            rate = bench.measured(kind, kinds[kind])  # recall: drops and flags
            assert (rate <= target) if kind in bench.GOOD_KINDS else (rate >= target), (
                lang,
                kind,
                rate,
            )


def test_shipped_set_is_built_from_the_example_texts():
    rows = read_jsonl(REPO / "benchmarks" / "data" / "quality_small.jsonl")
    examples = {row["id"] for row in read_jsonl(SLICES)}
    assert {r["source_id"] for r in rows} <= examples
    assert len({r["id"] for r in rows}) == len(rows)
    assert Path(REPO / "benchmarks" / "data" / "build_quality_small.py").is_file()
