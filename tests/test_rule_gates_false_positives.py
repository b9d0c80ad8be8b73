"""Rule gates must not drop ordinary answers that only look like placeholders or refusals."""

from __future__ import annotations

import pytest

from sft_distill.models import Sample
from sft_distill.rule_gates import PlaceholderGate, RefusalGate


def make(output: str, instruction: str = "问题是什么？") -> Sample:
    return Sample(id="s1", slice_id="slice", instruction=instruction, output=output)


@pytest.mark.parametrize(
    "output",
    [
        "我国的农业保险制度亟待完善。",
        "相关配套规定尚待补充，目前以合同约定为准。",
        "这一机制仍待完善，但原则已经确立。",
        "患者被送入重症监护病房[ICU]治疗，相关费用属于保险责任。",
        "Patients in the intensive care unit [ICU] are covered from the first day.",
        "费用按照国内生产总值[GDP]的一定比例确定。",
    ],
)
async def test_placeholder_gate_keeps_prose_and_abbreviations(output):
    result = await PlaceholderGate().check(make(output))
    assert result.keep, result.reason


@pytest.mark.parametrize(
    "output",
    [
        "联系人：待补充",
        "保险金额：【待完善】",
        "Dear [NAME], your claim was approved.",
        "Contact [MANAGER] for details.",
        "Send it to [COMPANY ADDRESS].",
    ],
)
async def test_placeholder_gate_still_drops_fields(output):
    assert not (await PlaceholderGate().check(make(output))).keep


@pytest.mark.parametrize(
    "output",
    [
        "“我不能接受拒赔”，张某对保险公司说。依照保险法，保险公司应当说明理由。",
        "张某对保险公司说“抱歉，我不能接受这个结果”，保险公司仍应当在三十日内作出核定。",
        '张某对保险公司说"我不能接受这个结果"，保险公司应当说明拒赔理由。',
        '"I cannot help you," the agent told Smith; the insurer must still pay the claim.',
    ],
)
async def test_refusal_gate_keeps_quoted_speech_in_a_case(output):
    result = await RefusalGate().check(make(output))
    assert result.keep, result.reason


@pytest.mark.parametrize(
    "output",
    [
        "抱歉，我不能回答这个问题。",
        "“抱歉，我不能回答这个问题。”",  # the whole answer in quotes is still the answer
        "张某的问题很好。抱歉，我无法回答这个问题。",
    ],
)
async def test_refusal_gate_still_drops_its_own_refusals(output):
    assert not (await RefusalGate().check(make(output))).keep
