"""Rule gates must not drop ordinary answers that only look like placeholders or refusals."""

from __future__ import annotations

import pytest

from sft_distill.models import Sample
from sft_distill.stages.gates.rules import PlaceholderGate, RefusalGate


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


# A case answer in plain words shares little wording with the statute, but it is grounded.
CASE_SOURCE = (
    "# 保险法\n\n第六十条 因第三者对保险标的的损害而造成保险事故的，"
    "保险人自向被保险人赔偿保险金之日起，在赔偿金额范围内代位行使被保险人对第三者请求赔偿的权利。\n\n"
    "保险人依照本条第一款规定行使代位请求赔偿的权利，不影响被保险人就未取得赔偿的部分"
    "向第三者请求赔偿的权利。\n"
)
CASE_QUESTION = (
    "小李的电动车投保了财产险，被楼上掉落的花盆砸坏，保险公司已经赔了5000元。依据《保险法》第六十条，"
    "保险公司能找楼上住户要这笔钱吗？"
)


async def test_grounding_gate_keeps_a_case_answer_in_plain_words():
    from sft_distill.stages.gates.rules import GroundingGate

    answer = (
        "能。保险公司赔完以后，就取代小李的位置，在5000元以内找楼上那户人家追讨；"
        "小李没拿到赔偿的那部分，照样可以自己去要。"
    )
    sample = Sample(
        id="s1", slice_id="s", instruction=CASE_QUESTION, output=answer, source_text=CASE_SOURCE
    )
    result = await GroundingGate().check(sample)
    assert result.keep, result.reason


async def test_grounding_gate_still_drops_an_off_topic_case_answer():
    from sft_distill.stages.gates.rules import GroundingGate

    answer = "今天天气晴朗，适合外出郊游，记得多喝水，带好防晒用品，早点回家休息。"
    sample = Sample(
        id="s1", slice_id="s", instruction=CASE_QUESTION, output=answer, source_text=CASE_SOURCE
    )
    assert not (await GroundingGate().check(sample)).keep
