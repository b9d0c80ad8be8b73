"""The eval's prompts: the student's training prompt, the pairwise request and its reply."""

from __future__ import annotations

import pytest

from sft_distill.errors import JSONExtractionError
from sft_distill.evaluation.prompts import (
    PAIRWISE_TASK,
    pairwise_messages,
    parse_pairwise,
    parse_student_answer,
    student_messages,
)
from sft_distill.llm.prompts import NO_DOCUMENT, parse_task_prompt
from sft_distill.llm.transport import ChatResult
from sft_distill.models import ScoredSample
from sft_distill.outputs.formats import to_sharegpt


def reply(text: str) -> ChatResult:
    return ChatResult(content=text, reasoning=None, finish_reason="stop", model="judge")


def test_the_student_is_asked_exactly_what_it_was_trained_on():
    sample = ScoredSample(
        id="s", slice_id="x", instruction="What is Article 2?", input="Some context.", output="A."
    )
    trained = to_sharegpt(sample, system="You answer insurance questions.")
    asked = student_messages(
        sample.instruction, sample.input, system="You answer insurance questions."
    )
    assert asked == [
        {"role": "system", "content": trained["system"]},
        {"role": "user", "content": trained["conversations"][0]["value"]},
    ]
    assert student_messages("Q?") == [{"role": "user", "content": "Q?"}]


def test_a_student_answer_keeps_its_reasoning_apart_and_may_be_empty():
    assert parse_student_answer(reply("<think>\nhmm\n</think>\n\nThe answer.")) == (
        "The answer.",
        "hmm",
    )
    assert parse_student_answer(reply("  ")) == ("", None)


def test_pairwise_messages_fence_every_part_and_say_when_there_is_no_document():
    messages = pairwise_messages("", "Q?", "ctx", "first </field> answer", "second")
    assert messages[0]["role"] == "system" and "tie" in messages[0]["content"]
    kind, fields = parse_task_prompt(messages[1]["content"])
    assert kind == PAIRWISE_TASK
    assert fields == {
        "document": NO_DOCUMENT,
        "question": "Q?\nctx",
        "answer_a": "first </field> answer",
        "answer_b": "second",
    }
    # the system prompt is the same for every pair: cacheable
    assert pairwise_messages("doc", "q", "", "a", "b")[0] == messages[0]


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ('{"analysis": "...", "reason": "A is exact.", "winner": "A"}', "A"),
        ('```json\n{"winner": "B", "reason": "r"}\n```', "B"),
        ('{"winner": "tie"}', "tie"),
        ('{"Winner": "Answer A"}', "A"),
        ('{"verdict": "[[B]]"}', "B"),
        ('{"winner": "answer_b"}', "B"),
        ('{"winner": "Both are equally good"}', None),
        ('{"winner": "equal"}', "tie"),
        ('{"winner": "平局"}', "tie"),
        ("After careful thought my verdict is [[A]].", "A"),
        ("Both are fine: [[C]]", "tie"),
    ],
)
def test_parse_pairwise_reads_what_judges_send(text, verdict):
    if verdict is None:
        with pytest.raises(ValueError, match='"winner" must be "A", "B" or "tie"'):
            parse_pairwise(reply(text))
    else:
        assert parse_pairwise(reply(text))[0] == verdict


def test_parse_pairwise_rejects_replies_without_a_winner_so_they_are_re_asked():
    with pytest.raises(ValueError, match='no "winner"'):
        parse_pairwise(reply('{"analysis": "A is better"}'))
    with pytest.raises(JSONExtractionError):
        parse_pairwise(reply("I prefer the first one."))
    assert parse_pairwise(reply('{"winner": "A", "reason": "exact"}')) == ("A", "exact")
