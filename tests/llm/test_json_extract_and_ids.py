"""utils: reasoning stripping, JSON extraction on real and shipped model replies, ids, text keys."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sft_distill.errors import JSONExtractionError
from sft_distill.ids import stable_id
from sft_distill.llm.json_extract import extract_json, split_reasoning
from sft_distill.text import casefold_spaced as normalize_text
from tests.helpers import NO_SHARED, REPO, SHARED_DATA, TEST_DATA, needs_shared, read_jsonl

SHIPPED_CASES = TEST_DATA / "json_cases.jsonl"
REAL_CASES = SHARED_DATA / "llm_json_cases.jsonl"
EXPECT = {None: None, "list": list, "dict": dict}


def _params(path: Path) -> list[Any]:
    if not path.exists():
        return [pytest.param(None, id="missing", marks=pytest.mark.skip(reason=NO_SHARED))]
    return [pytest.param(case, id=case["id"]) for case in read_jsonl(path)]


# --- split_reasoning -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reasoning", "content"),
    [
        ("no tags here", None, "no tags here"),
        ("<think>plan</think>\n\n{}", "plan", "{}"),
        ("<thinking>plan</thinking>[1]", "plan", "[1]"),
        ("<THINK>plan</THINK> ok", "plan", "ok"),
        ("<think>a</think>\n<think>b</think>\n{}", "a\n\nb", "{}"),
        # Qwen3 in non-thinking mode still emits an empty block.
        ("<think>\n</think>\n\n{}", None, "{}"),
        # DeepSeek-R1: the template pre-fills <think>, only the closing tag arrives.
        (
            "This is a reasoning section</think>This is the rest",
            "This is a reasoning section",
            "This is the rest",
        ),
        # Cut off while thinking: all reasoning, no content.
        ("<think>This is a reasoning section", "This is a reasoning section", ""),
        ("  <think>x</think>answer", "x", "answer"),
        # Only leading blocks are reasoning; a later mention is content.
        ('{"tag": "<think>"}', None, '{"tag": "<think>"}'),
    ],
)
def test_split_reasoning(text: str, reasoning: str | None, content: str) -> None:
    assert split_reasoning(text) == (reasoning, content)


def test_split_reasoning_accepts_either_closing_tag() -> None:
    assert split_reasoning("<thinking>a</think>b") == ("a", "b")


# --- extract_json: the 94 real cases -------------------------------------------------------

# Cases where json_repair 0.64.5 alone is wrong (SOURCES.md) and we assert our better answer,
# which is the case's `expected`: the brace inside <think> (DeepTutor PR #675), a key whose
# value never started (langchain-perplexity partial JSON), unescaped ASCII quotes inside
# Chinese strings (wenyi PR #23; json_repair splits the string in two).
BETTER_THAN_JSON_REPAIR = {"case-073", "case-087", "case-088", "case-089"}


@pytest.mark.parametrize("case", _params(REAL_CASES))
def test_real_llm_json_cases(case: dict[str, Any]) -> None:
    kind, raw = case["expect_kind"], case["raw"]
    if kind == "parsed":
        assert extract_json(raw) == case["expected"]
    elif kind == "no_json":
        with pytest.raises(JSONExtractionError):
            extract_json(raw)
    elif kind == "error":
        # case-072 "<think>…</think>{invalid json}": a strict parser fails; json_repair would
        # invent ["invalid json}"]. A brace followed by words and no "key:" is not JSON to us.
        assert case["id"] == "case-072"
        with pytest.raises(JSONExtractionError):
            extract_json(raw)
    else:
        # case-092: Qwen3 guided JSON cut off by max_tokens in a whitespace runaway. The
        # garbage would be the unfinished task object; we drop unfinished array items.
        assert kind == "truncated"
        assert case["id"] == "case-092"
        got = extract_json(raw)
        assert got == {"tasks": []}
        assert extract_json(raw, expect=list) == []


@needs_shared("llm_json_cases.jsonl")
@pytest.mark.parametrize("case_id", sorted(BETTER_THAN_JSON_REPAIR))
def test_cases_where_json_repair_alone_is_wrong(case_id: str) -> None:
    case = next(c for c in read_jsonl(REAL_CASES) if c["id"] == case_id)
    expected = {
        "case-073": {"name": "John"},  # json_repair: {"name": "John", "age": ""}
        "case-087": {"title": "T", "description": "D"},  # json_repair: [{"draft": true}, {...}]
        "case-088": {
            "translations": ['她说道：“一块八毛七分钱。……所谓的‘折扣’是假的。"她低声说……']
        },
        "case-089": {"t": ['暗含的"小气"二字']},
    }[case_id]
    assert extract_json(case["raw"]) == expected


# --- extract_json: our shipped cases (always run) --------------------------------------------


def test_shipped_cases_are_present() -> None:
    assert len(read_jsonl(SHIPPED_CASES)) >= 15


@pytest.mark.parametrize("case", _params(SHIPPED_CASES))
def test_shipped_json_cases(case: dict[str, Any]) -> None:
    expect = EXPECT[case["expect"]]
    if case["expect_kind"] == "no_json":
        with pytest.raises(JSONExtractionError):
            extract_json(case["raw"], expect=expect)
    else:
        assert extract_json(case["raw"], expect=expect) == case["expected"]


# --- extract_json: behaviour ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expect", "expected"),
    [
        ('{"samples": [{"q": "a"}]}', list, [{"q": "a"}]),
        ('{"data": ["x", "y"]}', list, ["x", "y"]),
        # A sample with a list field is a sample, not a wrapper.
        ('{"q": "a", "tags": ["x", "y"]}', list, [{"q": "a", "tags": ["x", "y"]}]),
        ('[{"score": 5}]', dict, {"score": 5}),
        ('{"score": 5}', None, {"score": 5}),
        ("[1, 2]", None, [1, 2]),
        ('Ref [1]. Answer: {"score": 4, "reason": "ok"}', None, {"score": 4, "reason": "ok"}),
        (
            'Use the form {question, answer}: {"question": "q", "answer": "a"}',
            None,
            {"question": "q", "answer": "a"},
        ),
        (
            'Sure! {"a": [1, {"b": "c"}]} Hope this helps {if} needed [sic].',
            None,
            {"a": [1, {"b": "c"}]},
        ),
        ('"{\\"a\\": 1}"', None, {"a": 1}),  # a JSON document sent as a JSON string
        ('{"text": "line one\nline two"}', None, {"text": "line one\nline two"}),  # raw newline
        ('```json\n{"a": "```nested```"}\n```', None, {"a": "```nested```"}),
    ],
)
def test_extract_json_shapes(raw: str, expect: type | None, expected: Any) -> None:
    assert extract_json(raw, expect=expect) == expected


@pytest.mark.parametrize(
    ("raw", "expect", "expected"),
    [
        # Complete items only, at top level and inside a wrapper.
        ('[{"a":1},{"a":2},{"a":', None, [{"a": 1}, {"a": 2}]),
        ('[{"a":1},{"a":2},', list, [{"a": 1}, {"a": 2}]),
        ('{"samples": [{"q": "1"}, {"q": "2", "tags": ["x", "y', list, [{"q": "1"}]),
        ('[{"q": "1"}, {"q": "2", "a": "半截', list, [{"q": "1"}]),
        # A truncated object keeps finished members and a partial trailing string...
        (
            '{"score": 4, "reason": "the answer is accur',
            dict,
            {"score": 4, "reason": "the answer is accur"},
        ),
        # ...but drops a key whose value never started,
        ('{"score": 4, "reason":', dict, {"score": 4}),
        # and, as the unfinished first item of the implied list, gives [] for expect=list.
        ('{"question": "什么是免赔额？", "answer": "免赔额是指', list, []),
        # Scalars inside a truncated array are kept (json_repair / langchain semantics).
        ('{"tags": ["a", "b", "c', None, {"tags": ["a", "b", "c"]}),
    ],
)
def test_extract_json_truncation_policy(raw: str, expect: type | None, expected: Any) -> None:
    assert extract_json(raw, expect=expect) == expected


def test_extract_json_multiple_values() -> None:
    # Several fences or a comma/newline-separated run give a list (json_repair semantics).
    assert extract_json('```json\n{"a": 1}\n```\ntext\n```json\n{"a": 2}\n```') == [
        {"a": 1},
        {"a": 2},
    ]
    assert extract_json('{"a": 1}\n{"a": 2}', expect=list) == [{"a": 1}, {"a": 2}]
    # expect=dict takes the first object.
    assert extract_json('{"a": 1}\n{"a": 2}', expect=dict) == {"a": 1}
    # Two fenced arrays are one answer split in two.
    assert extract_json("```json\n[1]\n```\n```json\n[2]\n```", expect=list) == [1, 2]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   \n\t ",
        "No structured output",
        '<think>{"draft": true}</think>',
        '<think>unclosed {"a": 1}',
        "{invalid json}",
        "see [sic] and {the answer}",
        "```python\nprint({1: 2})\n```",
        "42",
        '"just a string"',
    ],
)
def test_extract_json_raises_when_there_is_no_json(raw: str) -> None:
    with pytest.raises(JSONExtractionError):
        extract_json(raw)


def test_extract_json_raises_when_kind_is_missing() -> None:
    with pytest.raises(JSONExtractionError, match="object"):
        extract_json("[1, 2, 3]", expect=dict)
    with pytest.raises(JSONExtractionError):
        extract_json('[{"a": 1}, {"a": 2}]', expect=dict)  # which one? refuse to guess


def test_extract_json_rejects_unknown_expect() -> None:
    with pytest.raises(TypeError):
        extract_json("{}", expect=tuple)


def test_error_message_shows_at_most_80_chars() -> None:
    text = "前言" * 1000 + "tail-marker"
    with pytest.raises(JSONExtractionError) as info:
        extract_json(text)
    msg = str(info.value)
    assert "前言" * 40 in msg
    assert "前言" * 41 not in msg
    assert "tail-marker" not in msg
    assert len(msg) < 200


PROSE_UNIT = "这是一段很长的说明文字，没有任何结构化输出。Plain prose, no JSON at all. "
PROSE_300K = (PROSE_UNIT * 6000)[:300_000]


@pytest.mark.parametrize(
    "text",
    [
        PROSE_300K,
        # Brackets, quotes and a JSON-ish opener that never closes: still no quadratic rescans
        # and no json_repair over 300 KB (it is superlinear).
        PROSE_300K.replace("。", '{x}[y]"z"。'),
        '{"' + PROSE_300K,
        '{"a' * 100_000,
        "[1] " * 75_000,
    ],
    ids=["prose", "prose-with-brackets", "unclosed-object", "many-openers", "many-citations"],
)
@pytest.mark.slow
def test_extract_json_is_fast_on_300kb(text: str) -> None:
    start = time.perf_counter()
    with contextlib.suppress(JSONExtractionError):
        extract_json(text)
    assert time.perf_counter() - start < 2.0  # a guard against hangs, not a benchmark


def test_extract_json_salvages_a_large_truncated_array_quickly() -> None:
    items = [{"instruction": f"问题{i}", "output": "回答" * 50} for i in range(2000)]
    raw = json.dumps(items, ensure_ascii=False)[:-60]
    start = time.perf_counter()
    got = extract_json(raw, expect=list)
    assert time.perf_counter() - start < 2.0
    assert got == items[:-1]


# --- stable_id -----------------------------------------------------------------------------


def test_stable_id_is_deterministic_across_processes() -> None:
    code = "from sft_distill.utils import stable_id; print(stable_id('条款', 'b', prefix='s-'))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert runs == {stable_id("条款", "b", prefix="s-")}


def test_stable_id_format_and_separation() -> None:
    sid = stable_id("a", "b")
    assert len(sid) == 16
    assert all(c in "0123456789abcdef" for c in sid)
    assert stable_id("a", "b", prefix="smp-", length=8) == "smp-" + sid[:8]
    assert stable_id("a", "b") != stable_id("b", "a")
    assert stable_id("ab", "") != stable_id("a", "b")
    assert stable_id("a\x1fb") != stable_id("a", "b")
    assert stable_id("a\x1e", "b") != stable_id("a", "\x1eb")
    assert len(stable_id("x", length=64)) == 64
    # A lone surrogate (valid JSON "\ud800" in an input line) cannot be UTF-8 encoded.
    assert stable_id("a\ud800") != stable_id("a")


def test_stable_id_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        stable_id("a", length=0)
    with pytest.raises(ValueError):
        stable_id("a", length=65)
    with pytest.raises(TypeError):
        stable_id("a", 1)  # type: ignore[arg-type]


# --- normalize_text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Hello   World \n", "hello world"),
        ("ＡＢＣ１２３", "abc123"),  # fullwidth forms (NFKC)
        ("保险\u3000合同\t\t条款", "保险 合同 条款"),  # ideographic space is whitespace
        ("Straße", "strasse"),  # casefold, not lower
        ("ﬁle", "file"),  # compatibility ligature
        ("", ""),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_fenced_json_with_backticks_inside_strings_and_a_trailing_comma() -> None:
    """A ```json fence whose strings hold ```sql fences, plus a trailing comma (found by a gate)."""
    items = [
        {
            "instruction": "查询订单数",
            "input": "",
            "output": "```sql\nSELECT COUNT(*) FROM orders;\n```",
        },
        {
            "instruction": "List customers",
            "input": "",
            "output": "```sql\nSELECT name FROM c;\n```",
        },
    ]
    body = json.dumps(items, ensure_ascii=False, indent=1)
    text = "Here you go:\n```json\n" + body[:-2] + ",\n]\n```\nDone."
    assert extract_json(text, expect=list) == items
