"""sft_distill.structured: reply models, strict schemas, dialects, thinking, usage and prices.

Error and usage bodies are the real ones quoted in ../shared/wire.md or in the public issue or
source named beside each; "reconstructed" marks a body assembled from a server's source code.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import aiohttp
import pytest

from sft_distill.config.models import DIMENSIONS, ModelPrice
from sft_distill.llm import structured as st
from sft_distill.llm.client import LLMClient
from sft_distill.llm.json_extract import extract_json, split_reasoning
from sft_distill.llm.prompts import (
    evaluation_messages,
    generation_messages,
    iset_rephrase_messages,
    topic_answer_messages,
    topic_expand_messages,
    topic_questions_messages,
)
from sft_distill.llm.structured import Dialect, ReplyKind
from sft_distill.llm.transport import ChatResult
from sft_distill.simulator.faults import Scripted
from sft_distill.simulator.server import Simulator
from sft_distill.sources.topics import parse_answer, parse_string_list
from sft_distill.stages.generate import parse_samples
from sft_distill.stages.judge import parse_scores
from tests.conftest import endpoint

# ---------------------------------------------------------------------------------------------
# A strictness checker and a small validator for the JSON Schema subset the schemas use
# ---------------------------------------------------------------------------------------------

ALLOWED_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "anyOf",
    "description",
    "minimum",
    "maximum",
}


def strictness_problems(node: Any, path: str = "$") -> list[str]:
    """Why a schema is not OpenAI-strict: open objects, optional properties, other keywords."""
    problems: list[str] = []
    if not isinstance(node, dict):
        return [f"{path}: not a schema object"]
    for key in node:
        if key not in ALLOWED_KEYWORDS:
            problems.append(f"{path}: keyword {key!r}")
    if node.get("type") == "object" or "properties" in node:
        props = node.get("properties", {})
        if node.get("additionalProperties") is not False:
            problems.append(f"{path}: additionalProperties is not false")
        if sorted(node.get("required", [])) != sorted(props):
            problems.append(f"{path}: required {node.get('required')} != {sorted(props)}")
        for name, sub in props.items():
            problems += strictness_problems(sub, f"{path}.{name}")
    if "items" in node:
        problems += strictness_problems(node["items"], f"{path}[]")
    for i, sub in enumerate(node.get("anyOf", [])):
        problems += strictness_problems(sub, f"{path}|{i}")
    return problems


_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def schema_errors(value: Any, node: dict[str, Any], path: str = "$") -> list[str]:
    """Where ``value`` breaks ``node`` (type, enum, range, required, additionalProperties)."""
    if "anyOf" in node:
        if any(not schema_errors(value, sub, path) for sub in node["anyOf"]):
            return []
        return [f"{path}: matches no anyOf branch"]
    kind = node.get("type")
    if kind is not None:
        expected = _TYPES[kind]
        if kind == "integer" and isinstance(value, float) and value.is_integer():
            expected = float  # JSON Schema (draft 6+): 7.0 is an integer
        if not isinstance(value, expected) or (isinstance(value, bool) and kind != "boolean"):
            return [f"{path}: {value!r} is not {kind}"]
    errors: list[str] = []
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: {value!r} not in {node['enum']}")
    if "minimum" in node and value < node["minimum"]:
        errors.append(f"{path}: {value} < {node['minimum']}")
    if "maximum" in node and value > node["maximum"]:
        errors.append(f"{path}: {value} > {node['maximum']}")
    if kind == "object":
        props = node.get("properties", {})
        errors += [f"{path}: missing {k}" for k in node.get("required", []) if k not in value]
        if node.get("additionalProperties") is False:
            errors += [f"{path}: extra {k}" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                errors += schema_errors(v, props[k], f"{path}.{k}")
    if kind == "array":
        for i, item in enumerate(value):
            errors += schema_errors(item, node.get("items", {}), f"{path}[{i}]")
    return errors


SCORES = {d: 7 for d in DIMENSIONS}

# A reply in each kind's wrapped shape, as a constrained server would send it.
VALID: dict[ReplyKind, dict[str, Any]] = {
    ReplyKind.GENERATION: {
        "samples": [
            {
                "question_type": "calculation",
                "difficulty": "medium",
                "instruction": "投保人在犹豫期内退保，保险公司应退还多少保费？",
                "input": "",
                "evidence": ["犹豫期内解除合同的，保险公司应退还全部保费。"],
                "output": "应退还全部保费。",
            }
        ]
    },
    ReplyKind.JUDGE: {
        "claims": [
            {
                "claim": "The cooling-off period is 15 days.",
                "evidence": "犹豫期为15日",
                "verdict": "supported",
            }
        ],
        "analysis": "The answer quotes clause 3.",
        "reason": "Good.",
        "scores": SCORES,
    },
    ReplyKind.JUDGE_BATCH: {
        "results": [
            {"id": "s1", "claims": [], "analysis": "fine", "reason": "ok", "scores": SCORES},
            {
                "id": "s2",
                "claims": [{"claim": "30 days.", "evidence": "15日", "verdict": "contradicted"}],
                "analysis": "wrong number",
                "reason": "bad",
                "scores": {**SCORES, "accuracy": 2},
            },
        ]
    },
    ReplyKind.TOPICS: {"topics": ["规则", "历史"]},
    ReplyKind.QUESTIONS: {"questions": ["What is offside?", "Who invented football?"]},
    ReplyKind.ANSWER: {"answer": "Offside is a rule that ..."},
    ReplyKind.REPHRASINGS: {"rephrasings": ["Explain offside.", "What does offside mean?"]},
    ReplyKind.CLAIMS: {
        "claims": [
            {
                "claim": "The cooling-off period is 15 days.",
                "evidence": "犹豫期为15日",
                "verdict": "supported",
            },
            {"claim": "A fee of 10% applies.", "evidence": "", "verdict": "not_in_source"},
        ]
    },
}


def _schema_view(reply: Any, schema: dict[str, Any]) -> Any:
    """A model dump restricted to what the schema describes (drops schema-less extras)."""
    dumped = reply.model_dump(mode="json") if hasattr(reply, "model_dump") else reply

    def cut(value: Any, node: dict[str, Any]) -> Any:
        if isinstance(value, dict) and "properties" in node:
            return {k: cut(value[k], sub) for k, sub in node["properties"].items() if k in value}
        if isinstance(value, list) and "items" in node:
            return [cut(v, node["items"]) for v in value]
        return value

    return cut(dumped, schema)


# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ReplyKind))
def test_schema_is_strict_and_closed(kind: ReplyKind) -> None:
    schema = st.schema_for(kind)
    assert schema["type"] == "object", "json_object grammars need an object at the root"
    assert strictness_problems(schema) == []
    assert "$defs" not in json.dumps(schema) and "$ref" not in json.dumps(schema)


def test_strictness_checker_catches_what_pydantic_emits() -> None:
    # The checker itself must fail on a plain pydantic schema (optional field, title, $ref).
    raw = st.GenerationReply.model_json_schema()
    assert strictness_problems(raw) != []


@pytest.mark.parametrize("kind", list(ReplyKind))
def test_valid_reply_round_trips_through_schema_and_model(kind: ReplyKind) -> None:
    schema = st.schema_for(kind)
    reply_json = VALID[kind]
    assert schema_errors(reply_json, schema) == []
    reply = st.unwrap(kind, reply_json)
    again = _schema_view(reply, schema)
    assert schema_errors(again, schema) == []
    assert st.unwrap(kind, again) == reply


@pytest.mark.parametrize("kind", list(ReplyKind))
def test_schema_rejects_an_extra_property(kind: ReplyKind) -> None:
    bad = {**VALID[kind], "note": "free text the grammar must not allow"}
    assert any("extra note" in e for e in schema_errors(bad, st.schema_for(kind)))


def test_schema_for_is_cached_but_returns_fresh_copies() -> None:
    a = st.schema_for(ReplyKind.JUDGE)
    a["properties"].clear()
    assert st.schema_for("judge")["properties"], "a caller's edit must not reach the cache"


def test_judge_schema_reasons_first_and_scores_last_within_range() -> None:
    schema = st.schema_for(ReplyKind.JUDGE)
    # eval-v2: the claim checks come first, then the analysis, the scores last.
    assert list(schema["properties"]) == ["claims", "analysis", "reason", "scores"]
    claim = schema["properties"]["claims"]["items"]
    assert list(claim["properties"]) == ["claim", "evidence", "verdict"]
    assert claim["properties"]["verdict"]["enum"] == ["supported", "contradicted", "not_in_source"]
    scores = schema["properties"]["scores"]
    assert list(scores["properties"]) == list(DIMENSIONS)
    for dim in DIMENSIONS:
        assert scores["properties"][dim] == {"type": "integer", "minimum": 0, "maximum": 10}
    batch = st.schema_for(ReplyKind.JUDGE_BATCH)["properties"]["results"]["items"]
    assert list(batch["properties"]) == ["id", "claims", "analysis", "reason", "scores"]


def test_generation_schema_has_evidence_before_output_and_closed_labels() -> None:
    item = st.schema_for(ReplyKind.GENERATION)["properties"]["samples"]["items"]
    order = list(item["properties"])
    assert order.index("evidence") < order.index("output")
    assert item["properties"]["difficulty"]["enum"] == ["easy", "medium", "hard"]
    assert "other" in item["properties"]["question_type"]["enum"]
    assert "reasoning" not in item["properties"], "reasoning stays out of the JSON"


# ---------------------------------------------------------------------------------------------
# Legacy shapes and lenient parsing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "bare"),
    [
        (ReplyKind.GENERATION, [{"instruction": "Q?", "input": "", "output": "A."}]),
        (ReplyKind.TOPICS, ["规则", {"name": "历史"}, {"主题": "装备"}]),
        (ReplyKind.QUESTIONS, ["Q1?", {"question": "Q2?"}]),
        (ReplyKind.REPHRASINGS, ["R1", {"rephrasing": "R2"}]),
        (ReplyKind.JUDGE_BATCH, [{"id": 7, **SCORES, "reason": "flat"}]),
        (ReplyKind.CLAIMS, [{"claim": "c", "evidence": "", "verdict": "Supported"}]),
    ],
)
def test_bare_legacy_array_unwraps(kind: ReplyKind, bare: list[Any]) -> None:
    reply = st.unwrap(kind, bare)
    items = getattr(reply, reply.wrapper)
    assert len(items) == len(bare)


def test_string_list_items_from_objects_and_own_wrapper_key() -> None:
    assert st.TopicsReply.unwrap(["规则", {"name": "历史"}, {"主题": "装备"}]).texts() == [
        "规则",
        "历史",
        "装备",
    ]
    # a json_object reply that picked its own key
    assert st.QuestionsReply.unwrap({"items": ["Q1?", "Q2?"]}).texts() == ["Q1?", "Q2?"]
    assert st.TopicsReply.unwrap([]).texts() == []  # an empty list is a valid answer
    with pytest.raises(ValueError, match="none of the 2 item"):
        st.TopicsReply.unwrap([1, [2]])
    with pytest.raises(ValueError, match="lists no rephrasings"):
        st.RephrasingsReply.unwrap([])


def test_generation_skips_unusable_items_and_reads_old_keys() -> None:
    reply = st.GenerationReply.unwrap(
        [
            {"question": " Q1? ", "answer": "A1", "input": None, "reasoning": "because"},
            {"instruction": "", "output": "no question"},
            "not an object",
            {"prompt": "Q3", "response": "A3", "question_type": "Case-Study", "difficulty": "HARD"},
        ]
    )
    assert [(s.instruction, s.output) for s in reply.samples] == [("Q1?", "A1"), ("Q3", "A3")]
    assert reply.skipped == 2
    assert reply.samples[0].input == "" and reply.samples[0].reasoning == "because"
    assert reply.samples[1].question_type == "other" and reply.samples[1].difficulty == "hard"
    lone = st.GenerationReply.unwrap({"instruction": "Q", "output": "A", "evidence": "one quote"})
    assert lone.samples[0].evidence == ["one quote"]
    with pytest.raises(ValueError, match="no sample with both instruction and output among 1"):
        st.GenerationReply.unwrap([{"instruction": "Q"}])


def test_errors_are_one_line_without_pydantic_prefix() -> None:
    with pytest.raises(ValueError) as info:
        st.JudgeReply.unwrap({"accuracy": 8, "reason": "missing the rest"})
    text = str(info.value)
    assert "\n" not in text and "Value error" not in text
    assert "no score for completeness, logicality, helpfulness, safety" in text


def test_judge_reads_flat_legacy_and_required_subset() -> None:
    flat = {**SCORES, "completeness": "9/10", "reason": 42}
    reply = st.JudgeReply.unwrap([flat])
    assert reply.score_dict()["completeness"] == 9.0 and reply.reason == "42"
    partial = {"accuracy": 8, "safety": 10}
    assert st.JudgeReply.unwrap(partial, required=("accuracy",)).score_dict() == {
        "accuracy": 8.0,
        "safety": 10.0,
    }


def test_judge_out_of_range_reply_from_wire_md_is_rejected() -> None:
    # wire.md: llama-cpp-python did not enforce maximum; a judge replied "accuracy": 2017.
    with pytest.raises(ValueError, match="between 0 and 10"):
        st.JudgeReply.unwrap({"analysis": "", "reason": "", "scores": {**SCORES, "accuracy": 2017}})
    with pytest.raises(ValueError):
        st.JudgeReply.unwrap({"scores": {**SCORES, "accuracy": -1}})


@pytest.mark.parametrize(
    "values",
    [
        SCORES,
        {**SCORES, "accuracy": "8/10", "safety": "4.5/5"},
        {**SCORES, "accuracy": 85, "completeness": 90},  # a 0-100 scale
        {**SCORES, "accuracy": "8.5分", "logicality": {"score": 6}},
        {"Accuracy ": 3, "completeness": 4, "logicality": 5, "helpfulness": 6, "safety": 7},
    ],
)
def test_judge_reads_scores_as_the_evaluator_does(values: dict[str, Any]) -> None:
    content = json.dumps({**values, "reason": "r"})
    expected = parse_scores(
        ChatResult(content=content, reasoning=None, finish_reason="stop", model="m")
    )
    reply = st.JudgeReply.unwrap(json.loads(content))
    assert (reply.score_dict(), reply.reason) == expected


def test_batch_judging_keyed_by_id_and_no_duplicates() -> None:
    reply = st.JudgeBatchReply.unwrap(VALID[ReplyKind.JUDGE_BATCH])
    assert reply.by_id()["s2"].score_dict()["accuracy"] == 2.0
    dup = {"results": [VALID[ReplyKind.JUDGE_BATCH]["results"][0]] * 2}
    with pytest.raises(ValueError, match="judged twice: s1"):
        st.JudgeBatchReply.unwrap(dup)
    with pytest.raises(ValueError, match=r"results\.0\.id"):
        st.JudgeBatchReply.unwrap({"results": [{"scores": SCORES}]})


def test_answer_accepts_plain_text_and_rejects_empty() -> None:
    assert st.AnswerReply.unwrap("  plain text answer \n").answer == "plain text answer"
    assert st.unwrap("answer", {"answer": "x"}).answer == "x"
    with pytest.raises(ValueError):
        st.AnswerReply.unwrap("   ")


def test_claims_verdicts_normalised_and_share() -> None:
    reply = st.ClaimsReply.unwrap(
        [
            {"claim": "a", "verdict": True},
            {"claim": "b", "evidence": "q", "verdict": "Not Found"},
            {"claim": "c", "verdict": "contradicted"},
            {"claim": "d", "verdict": "yes"},
        ]
    )
    # The judge prompt's spelling (issue 12) is the one verdict; "not found" reads as it.
    assert [c.verdict for c in reply.claims] == [
        "supported",
        "not_in_source",
        "contradicted",
        "supported",
    ]
    assert reply.supported_share() == 0.5
    assert st.ClaimsReply.unwrap([]).supported_share() is None
    with pytest.raises(ValueError, match="verdict"):
        st.ClaimsReply.unwrap([{"claim": "a", "verdict": "maybe"}])


def test_reply_model_lookup_covers_every_kind() -> None:
    for kind in ReplyKind:
        assert st.reply_model(kind.value) is st.reply_model(kind)
        assert st.reply_model(kind).wrapper in st.schema_for(kind)["properties"]


# The simulator answers today's prompts in today's (legacy) shapes over real HTTP: the new
# models must read exactly what the current parsers read from the same replies.


def _decoded(result: ChatResult) -> Any:
    return extract_json(split_reasoning(result.content)[1])


async def test_simulator_generation_reply_parses_as_today(sim: Simulator) -> None:
    doc = "犹豫期为15日。犹豫期内解除合同的，保险公司应退还全部保费。" * 5
    async with LLMClient("generator", endpoint(sim)) as client:
        (old, new), _ = await client.chat(
            generation_messages(doc, 3),
            lambda r: (parse_samples(r), st.GenerationReply.unwrap(_decoded(r))),
        )
    assert [(s["instruction"], s["input"], s["output"]) for s in old] == [
        (s.instruction, s.input, s.output) for s in new.samples
    ]


async def test_simulator_judge_reply_parses_as_today(sim: Simulator) -> None:
    messages = evaluation_messages("doc text", "What is X?", "", "X is Y.")
    async with LLMClient("primary", endpoint(sim, model="judge-a")) as client:
        (old, new), _ = await client.chat(
            messages, lambda r: (parse_scores(r), st.JudgeReply.unwrap(_decoded(r)))
        )
    assert old == (new.score_dict(), new.reason)


@pytest.mark.parametrize(
    ("kind", "messages"),
    [
        (ReplyKind.TOPICS, topic_expand_messages(["体育与运动", "足球"], 4, siblings=["篮球"])),
        (ReplyKind.QUESTIONS, topic_questions_messages(["Sports", "Football"], 3, language="en")),
    ],
)
async def test_simulator_topic_replies_parse_as_today(
    sim: Simulator, kind: ReplyKind, messages: list[dict[str, str]]
) -> None:
    async with LLMClient("generator", endpoint(sim)) as client:
        (old, new), _ = await client.chat(
            messages, lambda r: (parse_string_list(r), st.unwrap(kind, _decoded(r)))
        )
    assert old and old == new.texts()


async def test_simulator_rephrasings_and_answers_parse_as_today(sim: Simulator) -> None:
    async with LLMClient("generator", endpoint(sim)) as client:
        new, _ = await client.chat(
            iset_rephrase_messages("How do I reset my password?", "", 3),
            lambda r: st.RephrasingsReply.unwrap(_decoded(r)),
        )
        (old_answer, new_answer), _ = await client.chat(
            topic_answer_messages(["Sports", "Football"], "What is offside?", language="en"),
            lambda r: (parse_answer(r), st.AnswerReply.unwrap(split_reasoning(r.content)[1])),
        )
    assert len(new.texts()) == 3
    assert old_answer[1] == new_answer.answer


# ---------------------------------------------------------------------------------------------
# Dialects
# ---------------------------------------------------------------------------------------------


def test_response_format_per_dialect_follows_wire_md() -> None:
    rf = st.response_format_for(Dialect.JSON_SCHEMA, ReplyKind.GENERATION)
    assert rf == {
        "type": "json_schema",
        "json_schema": {
            "name": "generation_reply",
            "schema": st.schema_for("generation"),
            "strict": True,
        },
    }
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", rf["json_schema"]["name"])
    assert st.response_format_for("json_object_schema", "judge") == {
        "type": "json_object",
        "schema": st.schema_for("judge"),
    }
    assert st.response_format_for("json_object", "topics") == {"type": "json_object"}
    assert st.response_format_for("none", "topics") is None


def test_vllm_structured_outputs_body() -> None:
    assert st.vllm_structured_outputs("claims") == {
        "structured_outputs": {"json": st.schema_for("claims")}
    }


def test_step_down_order_and_settings() -> None:
    chain = [Dialect.JSON_SCHEMA]
    while (nxt := st.next_dialect(chain[-1])) is not None:
        chain.append(nxt)
    assert chain == [
        Dialect.JSON_SCHEMA,
        Dialect.JSON_OBJECT_SCHEMA,
        Dialect.JSON_OBJECT,
        Dialect.NONE,
    ]
    assert st.first_dialect("auto") is Dialect.JSON_SCHEMA
    assert st.first_dialect("json_object") is Dialect.JSON_OBJECT
    with pytest.raises(ValueError):
        st.first_dialect("xml")


def test_ladder_steps_once_per_rejection_and_remembers_per_endpoint() -> None:
    ladder = st.DialectLadder("auto")
    base, model = "http://127.0.0.1:8000/v1", "qwen"
    assert ladder.current(base, model) is Dialect.JSON_SCHEMA
    # Three requests sent at json_schema are all rejected: the ladder drops one level only.
    for _ in range(3):
        assert ladder.reject(base, model, Dialect.JSON_SCHEMA) is Dialect.JSON_OBJECT_SCHEMA
    assert ladder.current(base, model) is Dialect.JSON_OBJECT_SCHEMA
    assert ladder.current(base, "other-model") is Dialect.JSON_SCHEMA
    assert ladder.reject(base, model, "json_object_schema") is Dialect.JSON_OBJECT
    assert ladder.reject(base, model, "json_object") is Dialect.NONE
    assert ladder.reject(base, model, "none") is None
    assert ladder.confirm(base, model) is True
    assert ladder.confirm(base, model) is False


def test_pinned_setting_never_steps_down() -> None:
    ladder = st.DialectLadder("json_schema")
    assert ladder.reject("http://x/v1", "m", Dialect.JSON_SCHEMA) is None
    assert ladder.current("http://x/v1", "m") is Dialect.JSON_SCHEMA


# Error bodies, each with its source. True: the body rejects the structured-output request.
LLAMA_CPP_PYTHON_500 = {  # reconstructed: llama_cpp/server/errors.py wraps str(exc) as a 500;
    # the loc/msg are quoted from a llama.cpp-server user's log (wire.md: HTTP 500, pydantic error)
    "error": {
        "message": "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
        "'ctx': {'expected': \"'text' or 'json_object'\"}}]",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}
RF_ERRORS: list[tuple[str, int, Any]] = [
    ("llama-cpp-python json_schema (wire.md)", 500, LLAMA_CPP_PYTHON_500),
    (
        "simulator: llama-cpp-python debug traceback",
        500,
        {
            "error": {
                "message": 'Traceback (most recent call last):\n  File "app.py", line 412\n'
                "pydantic_core._pydantic_core.ValidationError: 1 validation error for "
                "CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' or "
                "'json_object' [type=literal_error, input_value='json_schema', input_type=str]",
                "type": "internal_server_error",
                "param": None,
                "code": None,
            }
        },
    ),
    (
        "DeepSeek json_schema, llm-exe/llm-exe#662 and UKGovernmentBEIS/inspect_ai#4916",
        400,
        {
            "error": {
                "message": "This response_format type is unavailable now",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_request_error",
            }
        },
    ),
    (
        "DeepSeek 422 plain text, browser-use/browser-use#215 and dzhng/deep-research#22",
        422,
        "Failed to deserialize the JSON body into the target type: response_format: "
        "response_format.type `json_schema` is unavailable now at line 1 column 12440",
    ),
    (
        "DeepSeek 422, langgenius/dify#12868",
        422,
        "Failed to deserialize the JSON body into the target type: response_format.type: "
        "invalid type: map, expected variant identifier at line 1 column 132",
    ),
    (
        "DeepSeek json_object without the word json, browserbase/stagehand#1204",
        400,
        {
            "error": {
                "message": "Prompt must contain the word 'json' in some form to use "
                "'response_format' of type 'json_object'",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_request_error",
            }
        },
    ),
    (
        "llama.cpp json_schema and grammar (llama.cpp#11847, wire.md); reconstructed envelope",
        400,
        {
            "error": {
                "code": 400,
                "message": 'Either "json_schema" or "grammar" can be specified, but not both',
                "type": "invalid_request_error",
            }
        },
    ),
    (
        "older llama.cpp server, utils.hpp oaicompat_chat_params_parse; reconstructed envelope",
        500,
        {
            "error": {
                "code": 500,
                "message": 'response_format type must be one of "text" or "json_object", '
                "but got: json_schema",
                "type": "server_error",
            }
        },
    ),
    (
        "vLLM >= 0.16 envelope (wire.md) with xgrammar's message, z-lab/paroquant#31",
        400,
        {
            "error": {
                "message": "The provided JSON schema contains features not supported by xgrammar.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
    ),
    (
        "vLLM old flat envelope (wire.md), grammar error from noonghunna/club-3090#45",
        500,
        {
            "object": "error",
            "message": 'Grammar error: Unimplemented keys: ["propertyNames"]',
            "type": "BadRequestError",
            "param": None,
            "code": 500,
        },
    ),
    (
        "OpenAI strict schema rejected, seen in litellm users' logs (the code index)",
        400,
        {
            "error": {
                "message": "Invalid schema for response_format 'EnforcementFindings': In "
                "context=(), 'required' is required to be supplied and to be an array including "
                "every key in properties.",
                "type": "invalid_request_error",
                "param": "response_format",
                "code": None,
            }
        },
    ),
    (
        "FastAPI default 422 detail list",
        422,
        {
            "detail": [
                {
                    "loc": ["body", "response_format", "type"],
                    "msg": "Input should be 'text' or 'json_object'",
                }
            ]
        },
    ),
]
# False: every other error body quoted in wire.md, and look-alikes.
OTHER_ERRORS: list[tuple[str, int, Any]] = [
    (
        "OpenAI 500 (wire.md 4)",
        500,
        {
            "error": {
                "message": "The server experienced an error while processing your request. Sorry "
                "about that! You can retry your request, or contact us through our help center at "
                "help.openai.com if the error persists.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    ),
    (
        "OpenAI 500 short form (wire.md 4)",
        500,
        "500:server_error:The server had an error while processing your request. Sorry about that!",
    ),
    (
        "OpenAI 503 (wire.md 4)",
        503,
        {
            "error": {
                "message": "That model is currently overloaded with other requests.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    ),
    (
        "overloaded (wire.md 4)",
        503,
        {
            "error": {
                "code": "server_is_overloaded",
                "message": "Our servers are currently overloaded. Please try again later.",
                "param": None,
                "type": "service_unavailable_error",
            }
        },
    ),
    (
        "Gemini 503 (wire.md 4)",
        503,
        {
            "error": {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            }
        },
    ),
    (
        "Ollama 503 (wire.md 4)",
        503,
        {"error": "server busy, please try again.  maximum pending requests exceeded"},
    ),
    (
        "OpenAI context (wire.md 3)",
        400,
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your "
                "messages resulted in 173172 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    ),
    (
        "DeepSeek context (wire.md 3)",
        400,
        {
            "error": {
                "message": "This model's maximum context length is 131072 tokens. However, you "
                "requested 131134 tokens (122942 in the messages, 8192 in the completion). Please "
                "reduce the length of the messages or completion.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_request_error",
            }
        },
    ),
    (
        "vLLM old context (wire.md 3)",
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 131072 tokens. However, you "
            "requested 156632 tokens (152536 in the messages, 4096 in the completion). Please "
            "reduce the length of the messages or completion.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    ),
    (
        "vLLM max_tokens (wire.md 3)",
        400,
        {
            "object": "error",
            "message": "max_tokens must be at least 1, got -186.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    ),
    (
        "vLLM >= 0.16 context (wire.md 3)",
        400,
        {
            "error": {
                "message": "You passed 1015 input tokens and requested 10 output tokens. However, "
                "the model's context length is only 1024 tokens, resulting in a maximum input "
                "length of 1014 tokens. Please reduce the length of the input prompt. "
                "(parameter=input_tokens, value=1015)",
                "type": "BadRequestError",
                "param": "input_tokens",
                "code": 400,
            }
        },
    ),
    (
        "OpenAI 429 TPM (wire.md 2.1)",
        429,
        {
            "error": {
                "message": "Rate limit reached for 10KTPM-200RPM in organization org-x on "
                "tokens per min.",
                "type": "tokens",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
    ),
    (
        "quota (wire.md 2.2)",
        429,
        {
            "error": {
                "message": "You exceeded your current quota, please check your plan and "
                "billing details.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
    ),
    ("Ollama native 404 (wire.md 1)", 404, {"error": 'model "x" not found, try pulling it first'}),
    (
        "DeepSeek reasoning_content (wire.md 6)",
        400,
        {
            "error": {
                "message": "The reasoning_content in the thinking mode must be passed back "
                "to the API.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_request_error",
            }
        },
    ),
    (
        "Ollama think (wire.md 6)",
        400,
        {
            "error": {
                "message": 'think value "medium" is not supported for this model',
                "type": "api_error",
                "param": None,
                "code": None,
            }
        },
    ),
    (
        "HTML from a proxy",
        500,
        "<html><head><title>500 Internal Server Error</title></head><body>nginx</body></html>",
    ),
    (
        "DeepSeek 400 about messages (tailcallhq/forgecode#2008): 'JSON body' is not a format",
        400,
        {
            "error": {
                "message": "Failed to deserialize the JSON body into the target type: "
                "messages[9]: invalid type: sequence, expected a string at line 1 column 45446",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_request_error",
            }
        },
    ),
    (
        "a validation error about messages that echoes the whole request",
        500,
        {
            "error": {
                "message": "[{'type': 'missing', 'loc': ('body', 'messages'), "
                "'msg': 'Field required', "
                "'input': {'model': 'm', 'response_format': {'type': 'json_schema'}}}]",
                "type": "internal_server_error",
                "param": None,
                "code": None,
            }
        },
    ),
    (
        "pydantic v2 text echoing the request in input_value",
        500,
        "1 validation error for CreateChatCompletionRequest\nmessages\n  Field required "
        "[type=missing, input_value={'model': 'm', 'response_format': {'type': 'json_object'}}, "
        "input_type=dict]",
    ),
    ("empty body", 500, ""),
    ("no body", 400, None),
]


@pytest.mark.parametrize(("source", "status", "body"), RF_ERRORS, ids=[e[0] for e in RF_ERRORS])
def test_response_format_errors_recognised(source: str, status: int, body: Any) -> None:
    assert st.is_response_format_error(status, body) is True
    if not isinstance(body, str):
        assert st.is_response_format_error(status, json.dumps(body)) is True  # raw text too


@pytest.mark.parametrize(
    ("source", "status", "body"), OTHER_ERRORS, ids=[e[0] for e in OTHER_ERRORS]
)
def test_other_errors_not_taken_for_response_format(source: str, status: int, body: Any) -> None:
    assert st.is_response_format_error(status, body) is False


def test_only_400_422_500_step_down() -> None:
    body = RF_ERRORS[2][2]
    assert [
        s for s in (400, 401, 404, 422, 429, 500, 502, 503) if st.is_response_format_error(s, body)
    ] == [400, 422, 500]


async def test_classification_on_the_wire(sim: Simulator) -> None:
    # The bytes as a server sends them (JSON or text/plain), read back over HTTP.
    cases = [RF_ERRORS[0], RF_ERRORS[3], OTHER_ERRORS[0], OTHER_ERRORS[16]]
    sim.queue(*(Scripted(status=status, body=body) for _, status, body in cases))
    got = []
    async with aiohttp.ClientSession() as session:
        for _ in cases:
            async with session.post(
                f"{sim.url}/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            ) as resp:
                got.append(st.is_response_format_error(resp.status, await resp.text()))
    assert got == [True, True, False, False]


# ---------------------------------------------------------------------------------------------
# Prompt suffixes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ReplyKind))
@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("dialect", [Dialect.JSON_OBJECT, Dialect.JSON_OBJECT_SCHEMA])
def test_json_object_suffix_says_json_and_shows_the_shape(
    kind: ReplyKind, lang: str, dialect: Dialect
) -> None:
    suffix = st.prompt_suffix_for(dialect, kind, lang)
    assert "json" in suffix.lower(), "DeepSeek and DashScope reject json_object without it"
    assert f'"{st.reply_model(kind).wrapper}"' in suffix
    assert not re.search(r'":\s*-?\d', suffix), "no fixed numbers a judge could copy"
    # Every top-level property of the schema appears in the example, in the schema's order.
    example = suffix.splitlines()[-1]
    positions = [example.index(f'"{k}":') for k in st.schema_for(kind)["properties"]]
    assert positions == sorted(positions)


def test_judge_example_uses_placeholders() -> None:
    suffix = st.prompt_suffix_for("json_object", "judge")
    assert '"accuracy": <0-10>' in suffix
    assert suffix.index('"analysis"') < suffix.index('"scores"')


def test_suffix_for_other_dialects() -> None:
    assert st.prompt_suffix_for("none", "generation") == ""
    line = st.prompt_suffix_for("json_schema", "generation")
    assert "\n" not in line and '"samples"' in line and "JSON" in line
    assert "“samples”" in st.prompt_suffix_for("json_schema", "generation", "zh")
    assert st.prompt_suffix_for("json_schema", "answer", "zh").endswith("回答正文。")


# ---------------------------------------------------------------------------------------------
# Thinking
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "payload"),
    [
        (st.ThinkingSettings(), {}),
        (st.ThinkingSettings("off"), {"chat_template_kwargs": {"enable_thinking": False}}),
        (
            st.ThinkingSettings("on", style="chat_template_kwargs"),
            {"chat_template_kwargs": {"enable_thinking": True}},
        ),
        (
            st.ThinkingSettings("off", style=st.ThinkingStyle.ENABLE_THINKING),
            {"enable_thinking": False},
        ),
        (st.ThinkingSettings("on", style="enable_thinking"), {"enable_thinking": True}),
        (st.ThinkingSettings("auto", "high", "reasoning_effort"), {"reasoning_effort": "high"}),
        (st.ThinkingSettings("off", style="reasoning_effort"), {"reasoning_effort": "none"}),
        (st.ThinkingSettings("on", style="reasoning_effort"), {}),
        (
            st.ThinkingSettings("on", "low", "chat_template_kwargs"),
            {"reasoning_effort": "low", "chat_template_kwargs": {"enable_thinking": True}},
        ),
    ],
)
def test_thinking_payload(settings: st.ThinkingSettings, payload: dict[str, Any]) -> None:
    assert st.thinking_payload(settings) == payload


def test_thinking_settings_rejects_contradictions() -> None:
    with pytest.raises(ValueError, match="contradicts"):
        st.ThinkingSettings("off", "high")
    with pytest.raises(ValueError, match="on, off or auto"):
        st.ThinkingSettings("maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        st.ThinkingSettings(style="think")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        st.ThinkingSettings("on", " ")


def test_merge_payload_keeps_endpoint_template_kwargs() -> None:
    base = {"temperature": 0, "chat_template_kwargs": {"add_generation_prompt": True}}
    extra = st.thinking_payload(st.ThinkingSettings("off"))
    merged = st.merge_payload(base, extra)
    assert merged == {
        "temperature": 0,
        "chat_template_kwargs": {"add_generation_prompt": True, "enable_thinking": False},
    }
    assert base == {"temperature": 0, "chat_template_kwargs": {"add_generation_prompt": True}}


# ---------------------------------------------------------------------------------------------
# Usage
# ---------------------------------------------------------------------------------------------

U = st.UsageCounts
USAGE_CASES: list[tuple[str, Any, Any, st.UsageCounts]] = [
    (
        "OpenAI prompt-caching guide, quoted in 64bit/async-openai#272",
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        None,
        U(2006, 300, 1920, 0, 0, True),
    ),
    (
        "DeepSeek, BerriAI/litellm#5017",
        {
            "completion_tokens": 40,
            "prompt_tokens": 11,
            "total_tokens": 51,
            "prompt_cache_hit_tokens": 0,
            "prompt_cache_miss_tokens": 11,
        },
        None,
        U(11, 40, 0, 0, 0, True),
    ),
    (
        "DeepSeek with null OpenAI details, deepseek-ai/DeepSeek-V3#302",
        {
            "completion_tokens": 30,
            "prompt_tokens": 33,
            "total_tokens": 63,
            "completion_tokens_details": None,
            "prompt_tokens_details": None,
            "prompt_cache_hit_tokens": 0,
            "prompt_cache_miss_tokens": 33,
        },
        None,
        U(33, 30, 0, 0, 0, True),
    ),
    (
        "DeepSeek hit and miss, mozilla-ai/any-llm#795",
        {
            "prompt_tokens": 100,
            "prompt_cache_hit_tokens": 80,
            "prompt_cache_miss_tokens": 20,
            "completion_tokens": 50,
            "total_tokens": 150,
        },
        None,
        U(100, 50, 80, 0, 0, True),
    ),
    (
        "DashScope implicit cache (Model Studio docs, quoted in alibaba/spring-ai-alibaba#2699)",
        {
            "prompt_tokens": 3019,
            "completion_tokens": 104,
            "total_tokens": 3123,
            "prompt_tokens_details": {"cached_tokens": 2048},
        },
        None,
        U(3019, 104, 2048, 0, 0, True),
    ),
    (
        "DashScope explicit cache write (field per epam/ai-dial-adapter-openai#525)",
        {
            "prompt_tokens": 18628,
            "completion_tokens": 344,
            "total_tokens": 18972,
            "prompt_tokens_details": {
                "text_tokens": 18628,
                "cache_creation_input_tokens": 18613,
                "cache_type": "ephemeral",
                "cached_tokens": 0,
            },
        },
        None,
        U(18628, 344, 0, 0, 18613, True),
    ),
    (
        "vLLM V0 with --enable-prompt-tokens-details, vllm-project/vllm#16162",
        {
            "completion_tokens": 73,
            "prompt_tokens": 24,
            "total_tokens": 97,
            "completion_tokens_details": None,
            "prompt_tokens_details": {"audio_tokens": None, "cached_tokens": 16},
        },
        None,
        U(24, 73, 16, 0, 0, True),
    ),
    (
        "vLLM 0.18 details null, reasoning counted, vllm-project/vllm-ascend#9030",
        {
            "prompt_tokens": 25,
            "total_tokens": 1049,
            "completion_tokens": 1024,
            "prompt_tokens_details": None,
            "completion_tokens_details": {"reasoning_tokens": 428},
        },
        None,
        U(25, 1024, 0, 428, 0, False),
    ),
    (
        "vLLM 0.27, noonghunna/club-3090#1260",
        {
            "prompt_tokens": 3617,
            "prompt_tokens_details": {"cached_tokens": 1600, "created_cache_tokens": 0},
        },
        None,
        U(3617, 0, 1600, 0, 0, True),
    ),
    (
        "SGLang --enable-cache-report, ai-dynamo/dynamo#10925",
        {
            "completion_tokens": 4,
            "prompt_tokens": 516,
            "prompt_tokens_details": {"audio_tokens": None, "cached_tokens": 512},
            "total_tokens": 520,
        },
        None,
        U(516, 4, 512, 0, 0, True),
    ),
    (
        "SGLang without the flag, dynamo#10925 'before'",
        {"completion_tokens": 4, "prompt_tokens": 516, "total_tokens": 520},
        None,
        U(516, 4, 0, 0, 0, False),
    ),
    (
        "llama.cpp timings, ggml-org/llama.cpp#15827 (usage taken from the same numbers)",
        {"completion_tokens": 35, "prompt_tokens": 237, "total_tokens": 272},
        {
            "cache_n": 236,
            "prompt_n": 1,
            "prompt_ms": 30.958,
            "predicted_n": 35,
            "predicted_ms": 661.064,
        },
        U(237, 35, 236, 0, 0, True),
    ),
    (
        "llama.cpp timings alone",
        None,
        {"cache_n": 236, "prompt_n": 1, "predicted_n": 35},
        U(237, 0, 236, 0, 0, True),
    ),
    (
        "Ollama /v1 content null with zero usage (wire.md 5)",
        {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        None,
        U(0, 0, 0, 0, 0, False),
    ),
    (
        "garbage",
        {
            "prompt_tokens": "12",
            "completion_tokens": True,
            "prompt_tokens_details": {"cached_tokens": "lots"},
            "completion_tokens_details": {"reasoning_tokens": float("nan")},
            "prompt_cache_hit_tokens": -5,
        },
        {"cache_n": [1]},
        U(12, 0, 0, 0, 0, True),
    ),
    (
        "cached above prompt (a proxy's sum) is capped",
        {
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 99},
            "completion_tokens_details": {"reasoning_tokens": 7},
        },
        None,
        U(10, 3, 10, 3, 0, True),
    ),
    ("not a mapping", ["prompt_tokens", 5], "x", U()),
    ("None", None, None, U()),
]


@pytest.mark.parametrize(
    ("source", "usage", "timings", "expected"), USAGE_CASES, ids=[c[0] for c in USAGE_CASES]
)
def test_parse_usage(source: str, usage: Any, timings: Any, expected: st.UsageCounts) -> None:
    assert st.parse_usage(usage, timings=timings) == expected


def test_nested_cached_tokens_win_over_deepseek_fields() -> None:
    # A proxy that adds the OpenAI shape beside DeepSeek's: the OpenAI field (even 0) is read.
    usage = {
        "prompt_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 0},
        "prompt_cache_hit_tokens": 80,
    }
    assert st.parse_usage(usage).cached_prompt == 0
    assert (
        st.parse_usage({"prompt_cache_hit_tokens": 80, "prompt_cache_miss_tokens": 20}).prompt
        == 100
    )


def test_usage_from_bodies() -> None:
    llama = {
        "choices": [],
        "usage": {"completion_tokens": 35, "prompt_tokens": 237, "total_tokens": 272},
        "timings": {"cache_n": 236, "prompt_n": 1, "predicted_n": 35},
    }
    assert st.usage_from_body(llama).cached_prompt == 236
    # Ollama native /api/generate body (wire.md 6, ollama/ollama#12831)
    ollama = {
        "model": "qwen3-vl:8b",
        "response": "",
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 14,
        "eval_count": 161,
    }
    assert st.usage_from_body(ollama) == U(14, 161)
    # Ollama /v1 zero usage (wire.md 5, ollama/ollama#13371)
    zero = {
        "id": "chatcmpl-832",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
    assert st.usage_from_body(zero) == U()
    assert st.usage_from_body("not json") == U()


def test_usage_adds_up() -> None:
    total = U(10, 5, 4, 1, 0, False) + U(20, 6, 0, 0, 3, True)
    assert total == U(30, 11, 4, 1, 3, True)
    assert total.uncached_prompt == 26


# ---------------------------------------------------------------------------------------------
# Prices
# ---------------------------------------------------------------------------------------------


def test_input_token_equivalents_formula() -> None:
    # DeepSeek-like: a hit costs 1/10 of a miss, output 1.5x input.
    card = st.PriceCard(input_per_1k=0.28, output_per_1k=0.42, cached_input_per_1k=0.028)
    eq = st.billed_input_equivalents(1000, 800, 100, price=card)
    assert math.isclose(eq, 200 + 800 * 0.1 + 100 * 1.5)
    assert math.isclose(
        st.cost(1000, 800, 100, price=card), (200 * 0.28 + 800 * 0.028 + 100 * 0.42) / 1000
    )


def test_batch_discount_halves_both_figures() -> None:
    card = st.PriceCard(input_per_1k=1.0, output_per_1k=4.0, batch_discount=0.5)
    assert st.billed_input_equivalents(100, 0, 10, price=card, batched=True) == 70.0
    assert st.billed_input_equivalents(100, 0, 10, price=card) == 140.0
    assert st.cost(100, 0, 10, price=card, batched=True) == pytest.approx(0.07)


def test_cached_price_defaults_to_input_and_free_servers_count_tokens() -> None:
    card = st.PriceCard(input_per_1k=2.0, output_per_1k=2.0)
    assert card.cached_rate == 2.0
    assert st.billed_input_equivalents(100, 50, 10, price=card) == 110.0
    free = st.PriceCard()
    assert st.billed_input_equivalents(100, 50, 10, price=free) == 110.0
    assert st.cost(100, 50, 10, price=free) == 0.0


def test_price_card_from_config_and_validation() -> None:
    assert st.PriceCard.from_config(
        ModelPrice(input_per_1k=1.0, output_per_1k=3.0)
    ) == st.PriceCard(1.0, 3.0)
    card = st.PriceCard.from_config(
        {"input_per_1k": 1, "output_per_1k": 2, "cached_input_per_1k": 0.1, "batch_discount": 0.5}
    )
    assert (card.cached_rate, card.factor(batched=True), card.factor(batched=False)) == (
        0.1,
        0.5,
        1.0,
    )
    for bad in (
        {"input_per_1k": -1},
        {"output_per_1k": float("inf")},
        {"batch_discount": 1.0},
        {"input_per_1k": True},
        {"cached_input_per_1k": "cheap"},
    ):
        with pytest.raises(ValueError):
            st.PriceCard(**bad)


def test_token_arguments_checked() -> None:
    card = st.PriceCard(1.0, 1.0)
    with pytest.raises(ValueError, match="exceed"):
        st.billed_input_equivalents(10, 11, 0, price=card)
    with pytest.raises(ValueError, match="integer"):
        st.cost(-1, 0, 0, price=card)
    usage = st.parse_usage(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1920},
        }
    )
    assert st.cost(
        usage.prompt, usage.cached_prompt, usage.completion, price=card
    ) == pytest.approx(2.306)
