"""The simulator's students (answers with a quality gap) and pairwise judge (position bias)."""

from __future__ import annotations

import json

import pytest

from sft_distill.evaluation.prompts import pairwise_messages, parse_pairwise, student_messages
from sft_distill.llm.client import LLMClient
from sft_distill.simulator.cli import config_from_args, parse_args
from sft_distill.simulator.server import SimulatorConfig
from sft_distill.simulator.students import (
    answer_merit,
    dry_run_knobs,
    pairwise_reply,
    parse_answer_gaps,
    student_reply,
)
from tests.helpers import endpoint

DOCUMENT = (
    "第十六条 订立保险合同，保险人就保险标的或者被保险人的有关情况提出询问的，投保人应当如实告知。"
    "投保人故意或者因重大过失未履行前款规定的如实告知义务，保险人有权解除合同。前款规定的合同解除权，"
    "自保险人知道有解除事由之日起，超过30日不行使而消灭。"
)
QUESTION = "资料中关于“投保人故意或者因重大过失未履行前款规定的如实告知义务”是如何规定的？"
REFERENCE = "投保人故意或者因重大过失未履行前款规定的如实告知义务，保险人有权解除合同。"


def merit(answer: str) -> float:
    return answer_merit(DOCUMENT, QUESTION, answer)


def test_a_student_answer_is_a_pure_function_of_model_question_and_gap():
    assert student_reply("student", QUESTION, -0.5) == student_reply("student", QUESTION, -0.5)
    assert student_reply("student", QUESTION, 0.0) != student_reply("student", QUESTION, 1.0)


def test_the_judges_merit_follows_the_gap():
    questions = [
        f"资料中关于“第{i}条 投保人应当如实告知保险人询问的情况”是如何规定的？" for i in range(40)
    ]

    def mean_merit(gap: float) -> float:
        return sum(answer_merit(DOCUMENT, q, student_reply("s", q, gap)) for q in questions) / 40

    merits = [mean_merit(g) for g in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    assert merits == sorted(merits) and merits[0] < 2 < 7 < merits[2] < merits[-1]
    # a student as good as the teacher is worth about what the teacher's answer is
    assert abs(merits[2] - merit(REFERENCE)) <= 1.0


def test_flawed_sentences_are_unsupported_or_contradicted():
    vague = merit("可能还存在一些例外情形，这里不再详述。")  # not in the source
    assert merit("相关期限为4321日。") < vague == 0 < merit(REFERENCE)
    assert merit(REFERENCE + "超过30日不行使而消灭。") > merit(REFERENCE)  # a number the source has
    assert merit("") == 0


def test_without_a_document_the_judge_can_only_count_claims():
    vague = "可能还存在一些例外情形，这里不再详述。"
    assert answer_merit("", QUESTION, vague) == answer_merit("", QUESTION, REFERENCE)


def test_pairwise_judge_is_consistent_when_the_answers_swap():
    good, bad = REFERENCE, "可能还存在一些例外情形，这里不再详述。"
    fields = {"document": DOCUMENT, "question": QUESTION}
    first = pairwise_reply("j", {**fields, "answer_a": good, "answer_b": bad})
    swapped = pairwise_reply("j", {**fields, "answer_a": bad, "answer_b": good})
    assert (first["winner"], swapped["winner"]) == ("A", "B")
    same = pairwise_reply("j", {**fields, "answer_a": good, "answer_b": good})
    assert same["winner"] == "tie"
    assert list(first) == ["analysis", "reason", "winner"]  # reasons first, verdict last


def test_position_bias_makes_the_judge_pick_a_whatever_it_reads():
    good, bad = REFERENCE, "可能还存在一些例外情形，这里不再详述。"
    fields = {"document": DOCUMENT, "question": QUESTION}
    swapped = {**fields, "answer_a": bad, "answer_b": good}
    assert pairwise_reply("j", swapped, position_bias=1.0)["winner"] == "A"
    picks = [
        pairwise_reply(f"j{i}", swapped, position_bias=0.5)["winner"] == "A" for i in range(200)
    ]
    assert 70 < sum(picks) < 130


def test_a_text2sql_student_writes_the_learned_query_or_breaks_it():
    schema = "CREATE TABLE products (\n  id INTEGER PRIMARY KEY,\n  name TEXT,\n  price REAL\n);"
    user = f"What is the average price in the products table?\n{schema}"
    assert student_reply("s", user, 0.0) == "```sql\nSELECT AVG(price) FROM products;\n```"
    broken = {student_reply(f"s{i}", user, -1.0) for i in range(20)}
    assert all("SELECT AVG(price) FROM products;" not in b for b in broken)
    assert any("missing_col" in b for b in broken) and any("DISTINCT 0" in b for b in broken)


def test_gap_settings_parse_and_are_checked():
    assert parse_answer_gaps("student=0.5, base=-0.6") == {"student": 0.5, "base": -0.6}
    assert parse_answer_gaps("0.3") == {"*": 0.3}
    with pytest.raises(ValueError, match="between -1 and 1"):
        parse_answer_gaps("student=2")
    env = {"SFT_DISTILL_SIM_ANSWER_GAPS": "-0.4", "SFT_DISTILL_SIM_POSITION_BIAS": "0.25"}
    assert dry_run_knobs({"student": 0.0, "base": -0.5}, env) == (
        {"student": -0.4, "base": -0.4},
        0.25,
    )
    assert dry_run_knobs({"student": 0.0}, {}) == ({"student": 0.0}, 0.0)
    with pytest.raises(ValueError, match="SFT_DISTILL_SIM_POSITION_BIAS"):
        dry_run_knobs({}, {"SFT_DISTILL_SIM_POSITION_BIAS": "often"})
    with pytest.raises(ValueError, match="answer gaps"):
        SimulatorConfig(answer_gaps={"student": 3.0})
    cfg = config_from_args(parse_args(["--answer-gap", "student=-0.5", "--position-bias", "0.3"]))
    assert cfg.answer_gaps == {"student": -0.5} and cfg.position_bias == 0.3


async def test_the_server_answers_students_and_pairwise_requests(sim):
    sim.config.answer_gaps = {"student": 0.0}
    sim.config.position_bias = 1.0
    async with (
        LLMClient("s", endpoint(sim, "student")) as student,
        LLMClient("o", endpoint(sim, "someone-else")) as other,
        LLMClient("j", endpoint(sim, "judge")) as judge,
    ):
        messages = student_messages(QUESTION)
        answer, _ = await student.chat(messages, lambda r: r.content)
        assert answer == student_reply("student", QUESTION, 0.0)
        # a model that is not a student keeps the simulator's plain reply
        plain, _ = await other.chat(messages, lambda r: r.content)
        assert plain == "OK. This is the sft_distill simulator."
        compare = pairwise_messages(DOCUMENT, QUESTION, "", "bad", REFERENCE)
        (winner, _), _ = await judge.chat(compare, parse_pairwise)
        assert winner == "A"  # the bias
        sim.config.position_bias = 0.0  # the knob is part of the reply cache's key
        (winner, _), _ = await judge.chat(
            pairwise_messages(DOCUMENT, QUESTION, "", "x", REFERENCE), parse_pairwise
        )
        assert winner == "B"
    assert sim.stats["by_kind"]["evaluation"] == 2 and sim.stats["by_kind"]["generation"] == 1
    assert json.loads(json.dumps(sim.stats))["by_model"]["student"] == 1
