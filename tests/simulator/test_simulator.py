"""The OpenAI-compatible simulator, exercised over real loopback HTTP (no mocks)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import json_repair
import pytest

import sft_distill
from sft_distill.config.defaults import MEAN_DIMENSIONS
from sft_distill.config.models import DIMENSIONS
from sft_distill.llm.prompts import (
    evaluation_messages,
    generation_messages,
    iset_rephrase_messages,
    topic_answer_messages,
    topic_expand_messages,
    topic_questions_messages,
)
from sft_distill.llm.structured import (
    Dialect,
    is_response_format_error,
    response_format_for,
    schema_for,
    unwrap,
    usage_from_body,
)
from sft_distill.simulator.cli import config_from_args, parse_args
from sft_distill.simulator.content import (
    claim_check,
    embed_text,
    evaluation_reply,
    generation_samples,
)
from sft_distill.simulator.faults import Scripted
from sft_distill.simulator.prefix_cache import PrefixCache
from sft_distill.simulator.server import (
    Simulator,
    SimulatorConfig,
    ThreadedSimulator,
    run_in_thread,
)

ZH_DOC = (
    "第一条 为了规范保险活动，保护保险活动当事人的合法权益，制定本法。"
    "第二条 本法所称保险，是指投保人根据合同约定，向保险人支付保险费的商业保险行为。\n"
    "第三条 在中华人民共和国境内从事保险活动，适用本法。"
    "第四条 从事保险活动必须遵守法律、行政法规，尊重社会公德，不得损害社会公共利益！"
    "第五条 保险活动当事人行使权利、履行义务应当遵循诚实信用原则；"
    "保险人不得拒绝正当的理赔请求。第六条 保险业务由依照本法设立的保险公司经营。"
)
EN_DOC = (
    "Employees accrue 1.5 days of paid leave per month of service. "
    "Leave must be requested at least two weeks in advance.\n"
    "Unused leave expires at the end of the calendar year! "
    "Managers may approve exceptions in writing. Part-time staff accrue leave pro rata. "
    "Sick leave is recorded separately and does not reduce paid leave."
)
PACKAGE_ROOT = Path(sft_distill.__file__).resolve().parents[1]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session with a short total timeout."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@pytest.fixture
async def server() -> AsyncIterator[Simulator]:
    """A simulator with no faults that keeps prompts."""
    async with Simulator(SimulatorConfig(seed=7, keep_prompts=True)) as sim:
        yield sim


async def chat(
    http: aiohttp.ClientSession,
    sim: Simulator | ThreadedSimulator,
    messages: list[dict[str, str]],
    model: str = "teacher",
    **extra: Any,
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    """POST a chat completion; returns (status, parsed JSON body, response)."""
    async with http.post(
        f"{sim.url}/chat/completions", json={"model": model, "messages": messages, **extra}
    ) as resp:
        return resp.status, await resp.json(content_type=None), resp


def content_of(body: dict[str, Any]) -> str:
    """The assistant content of a chat completion body."""
    content = body["choices"][0]["message"]["content"]
    assert isinstance(content, str)
    return content


def recover_json(text: str) -> Any:
    """Strip reasoning, fences and prose like a JSON extractor would, then repair."""
    text = re.sub(r"^.*?</think>", "", text, flags=re.DOTALL)
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    end = max(text.rfind("]"), text.rfind("}"))
    return json_repair.loads(text[min(starts) : end + 1])


# --- generation -------------------------------------------------------------------------------


@pytest.mark.parametrize("document", [ZH_DOC, EN_DOC], ids=["zh", "en"])
async def test_generation_reply_has_n_samples_taken_from_the_document(server, http, document):
    status, body, _ = await chat(http, server, generation_messages(document, 4))
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == "teacher"
    assert body["choices"][0]["finish_reason"] == "stop"
    samples = json.loads(content_of(body))["samples"]  # the gen-v2 reply shape
    assert len(samples) == 4
    for s in samples:
        keys = {"question_type", "difficulty", "instruction", "input", "evidence", "output"}
        assert set(s) == keys
        # drawn from the document: verbatim evidence, restated in the answer
        assert s["instruction"] and s["evidence"] and all(q in document for q in s["evidence"])
        assert s["evidence"][0][-8:] in s["output"] or s["evidence"][0][:8] in s["output"]
    assert len({s["output"] for s in samples}) >= 3
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert server.stats["by_kind"]["generation"] == 1


async def test_generation_language_follows_the_document(server, http):
    _, zh, _ = await chat(http, server, generation_messages(ZH_DOC, 3))
    _, en, _ = await chat(http, server, generation_messages(EN_DOC, 3))
    zh_samples, en_samples = (json.loads(content_of(b))["samples"] for b in (zh, en))
    assert all(re.search(r"[\u4e00-\u9fff]", s["instruction"]) for s in zh_samples)
    assert not any(re.search(r"[\u4e00-\u9fff]", s["instruction"]) for s in en_samples)


async def test_generation_is_deterministic_per_model_and_prompt(server, http):
    msgs = generation_messages(ZH_DOC, 3)
    _, first, _ = await chat(http, server, msgs)
    _, again, _ = await chat(http, server, msgs)
    _, other, _ = await chat(http, server, msgs, model="another-teacher")
    assert content_of(first) == content_of(again)
    assert content_of(first) != content_of(other)
    assert first["id"] != again["id"]
    assert content_of(first) == json.dumps(
        {"samples": generation_samples("teacher", ZH_DOC, 3)}, ensure_ascii=False
    )


async def test_empty_document_still_gives_n_samples(server, http):
    _, body, _ = await chat(http, server, generation_messages("", 5))
    samples = json.loads(content_of(body))["samples"]
    assert len(samples) == 5 and len({s["instruction"] for s in samples}) == 5


def test_some_replies_carry_a_near_duplicate_pair():
    def has_near_dup(samples: list[dict[str, str]]) -> bool:
        for i, a in enumerate(samples):
            for b in samples[i + 1 :]:
                ia, ib = a["instruction"], b["instruction"]
                diff = sum(x != y for x, y in zip(ia, ib, strict=False)) + abs(len(ia) - len(ib))
                if a["output"] == b["output"] and 0 < diff <= 2:
                    return True
        return False

    docs = [f"{ZH_DOC}第{k}条 附则自公布之日起施行。" for k in range(100)]
    hits = sum(has_near_dup(generation_samples("teacher", d, 4)) for d in docs)
    assert 3 <= hits <= 20


def test_more_samples_than_sentences_keeps_instructions_distinct():
    samples = generation_samples("teacher", "Only one sentence here.", 6)
    assert len(samples) == 6 and len({s["instruction"] for s in samples}) == 6
    # every answer restates the one sentence, which is every sample's evidence
    assert all(s["output"].endswith("Only one sentence here.") for s in samples)
    assert all(s["evidence"] == ["Only one sentence here."] for s in samples)


# --- evaluation -------------------------------------------------------------------------------


async def test_evaluation_scores_are_in_range_deterministic_and_vary_by_model(server, http):
    outputs = [
        "保险是投保人向保险人支付保险费的商业保险行为。",
        "适用于在中华人民共和国境内从事的保险活动。",
        "保险业务由依照本法设立的保险公司经营。",
        "应当遵循诚实信用原则。",
    ]
    replies: dict[str, list[dict[str, Any]]] = {"judge-a": [], "judge-b": []}
    for out in outputs:
        msgs = evaluation_messages(ZH_DOC, "保险法的适用范围是什么？", "", out)
        for model in replies:
            _, body, _ = await chat(http, server, msgs, model=model)
            _, again, _ = await chat(http, server, msgs, model=model)
            assert content_of(body) == content_of(again)
            reply = json.loads(content_of(body))
            # eval-v2: claims and analysis first, the scores last, every dimension scored.
            assert list(reply) == ["claims", "analysis", "reason", "scores"] and reply["reason"]
            assert set(reply["scores"]) == set(DIMENSIONS)
            assert all(0 <= reply["scores"][d] <= 10 for d in DIMENSIONS)
            replies[model].append(reply["scores"])
    assert replies["judge-a"] != replies["judge-b"]
    for a, b in zip(replies["judge-a"], replies["judge-b"], strict=True):
        mean_a = sum(a[d] for d in MEAN_DIMENSIONS) / len(MEAN_DIMENSIONS)
        mean_b = sum(b[d] for d in MEAN_DIMENSIONS) / len(MEAN_DIMENSIONS)
        assert abs(mean_a - mean_b) < 2.0
    assert server.stats["by_kind"]["evaluation"] == 16


def test_most_samples_pass_and_two_judges_mostly_agree():
    def mean(model: str, i: int) -> float:
        reply = evaluation_reply(
            model, f"问题 {i}：这一条怎么理解？", f"回答 {i}：按照资料第{i}条执行。"
        )
        return sum(reply["scores"][d] for d in MEAN_DIMENSIONS) / len(MEAN_DIMENSIONS)

    a = [mean("judge-a", i) >= 7 for i in range(400)]
    b = [mean("judge-b", i) >= 7 for i in range(400)]
    assert 0.70 <= sum(a) / 400 <= 0.90 and 0.70 <= sum(b) / 400 <= 0.90
    assert sum(x == y for x, y in zip(a, b, strict=True)) / 400 >= 0.85


def test_empty_or_tiny_output_scores_low():
    for out in ("", "是。", "  ok "):
        reply = evaluation_reply("judge-a", "What is covered?", out)["scores"]
        assert sum(reply[d] for d in MEAN_DIMENSIONS) / len(MEAN_DIMENSIONS) < 4


async def test_score_bias_from_config_is_applied_and_clamped(server, http):
    msgs = evaluation_messages(EN_DOC, "How much leave accrues?", "", "1.5 days per month.")
    _, plain, _ = await chat(http, server, msgs, model="judge-a")
    server.config.score_bias = -20.0
    _, low, _ = await chat(http, server, msgs, model="judge-a")
    server.config.score_bias = 20.0
    _, high, _ = await chat(http, server, msgs, model="judge-a")
    assert all(json.loads(content_of(low))["scores"][d] == 0 for d in DIMENSIONS)
    assert all(json.loads(content_of(high))["scores"][d] == 10 for d in DIMENSIONS)
    assert any(0 < json.loads(content_of(plain))["scores"][d] < 10 for d in DIMENSIONS)


# The simulated judge's claim check: answers to one question about ZH_DOC's article 2 and 3.
FAITHFUL = "本法所称保险，是指投保人根据合同约定，向保险人支付保险费的商业保险行为。"
CLAIM_CASES = [
    # (answer, the verdicts, accuracy at most)
    (FAITHFUL, ["supported"], 10),
    # An invented sentence appended to a faithful answer: not in the source.
    (FAITHFUL + "保险公司每年须向投保人返还保险费的百分之五作为分红。", None, 5),
    (FAITHFUL + "投保人可以随时要求保险人无条件提高赔付比例并公开全部客户资料。", None, 5),
    # A wrong number: the source says 第三条 applies inside China; "第九条" is not in it.
    ("根据第九条，在中华人民共和国境内从事保险活动，适用本法。", ["contradicted"], 2),
]


@pytest.mark.parametrize(("answer", "verdicts", "cap"), CLAIM_CASES)
async def test_simulated_judge_checks_claims_against_the_document(
    server, http, answer, verdicts, cap
):
    msgs = evaluation_messages(ZH_DOC, "《保险法》所称的保险是什么？", "", answer)
    _, body, _ = await chat(http, server, msgs, model="judge-a")
    _, again, _ = await chat(http, server, msgs, model="judge-a")
    assert content_of(body) == content_of(again)  # a pure function of the prompt
    reply = json.loads(content_of(body))
    got = [c["verdict"] for c in reply["claims"]]
    if verdicts is not None:
        assert got == verdicts
    else:  # the faithful part is supported, the invented sentence is not in the source
        assert got == ["supported", "not_in_source"]
    assert reply["scores"]["accuracy"] <= cap
    if cap < 10:
        assert reply["reason"] in (
            "回答中有资料没有的内容。",
            "回答中有与资料相矛盾的内容（数字或条文不符）。",
        )
    assert reply["claims"][0]["claim"] and reply["analysis"].startswith("逐条核对了")


def test_simulated_judge_numbers_read_chinese_numerals_and_the_question():
    doc = "前款规定的合同解除权，自保险人知道有解除事由之日起，超过三十日不行使而消灭。"
    right = "合同解除权超过30日不行使而消灭。"
    wrong = "合同解除权超过六十日不行使而消灭。"
    assert claim_check(right, doc) == [{"claim": right, "evidence": "", "verdict": "supported"}]
    assert [c["verdict"] for c in claim_check(wrong, doc)] == ["contradicted"]
    # A number the question gives (a case) is no contradiction.
    case = "甲公司于5月3日知道解除事由，超过三十日不行使则解除权消灭。"
    assert [c["verdict"] for c in claim_check(case, doc, "甲公司5月3日知道解除事由……")] == [
        "supported"
    ]
    # English number words are not claims about the source; digits are.
    assert [c["verdict"] for c in claim_check("Leave takes three steps to request.", EN_DOC)] == [
        "not_in_source"
    ]
    # A decimal point does not end a sentence: "1.5 days" is the document's own number.
    faithful_en = "Employees accrue 1.5 days of paid leave per month of service."
    assert claim_check(faithful_en, EN_DOC)[0]["verdict"] == "supported"
    assert [
        c["verdict"]
        for c in claim_check("Employees accrue 2.5 days of paid leave per month.", EN_DOC)
    ] == ["contradicted"]
    # No source (topics, distill): nothing to check against.
    assert [c["verdict"] for c in claim_check(wrong, "")] == ["supported"]


def test_simulated_judge_scores_standalone_low_for_a_referential_question():
    referential = evaluation_reply(
        "judge-a", "根据上述资料，保险是什么？", FAITHFUL, document=ZH_DOC
    )
    named = evaluation_reply("judge-a", "《保险法》所称的保险是什么？", FAITHFUL, document=ZH_DOC)
    assert referential["scores"]["standalone"] == 2
    assert named["scores"]["standalone"] >= 7
    assert referential["reason"] == "问题依赖学生看不到的资料，不能独立成立。"
    # The question may point at material its own input gives.
    given = evaluation_reply(
        "judge-a", "根据上述资料，保险是什么？", FAITHFUL, document=ZH_DOC, input_text=FAITHFUL
    )
    assert given["scores"]["standalone"] >= 7


# --- embeddings -------------------------------------------------------------------------------


async def test_embeddings_are_normalised_and_near_duplicates_are_close(server, http):
    texts = [
        "请解释保险合同的订立条件。",
        "请解释保险合同的订立条件？",
        "Managers may approve exceptions in writing.",
    ]
    async with http.post(f"{server.url}/embeddings", json={"model": "emb", "input": texts}) as r:
        assert r.status == 200
        body = await r.json()
    assert body["object"] == "list" and body["model"] == "emb"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    vecs = [d["embedding"] for d in body["data"]]
    assert all(len(v) == 256 for v in vecs)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-9) for v in vecs)

    def cos(u: list[float], v: list[float]) -> float:
        return sum(x * y for x, y in zip(u, v, strict=True))

    assert cos(vecs[0], vecs[1]) > 0.8 > cos(vecs[0], vecs[2])
    assert vecs[0] == embed_text(texts[0])
    async with http.post(f"{server.url}/embeddings", json={"model": "emb", "input": "one"}) as r:
        assert len((await r.json())["data"]) == 1
    async with http.post(f"{server.url}/embeddings", json={"model": "emb", "input": [1, 2]}) as r:
        assert r.status == 400 and (await r.json())["error"]["param"] == "input"
    assert server.stats["embedding_requests"] == 3 and server.stats["by_model"]["emb"] == 2


async def test_ratelimit_headers_are_opt_in(server, http):
    server.config.ratelimit_headers = True
    server.queue(429)
    _, _, resp = await chat(http, server, generation_messages(EN_DOC, 1))
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert resp.headers["x-ratelimit-reset-requests"] == "1s"


# --- scripting --------------------------------------------------------------------------------


async def test_queue_429_with_retry_after_then_scripted_content_then_normal(server, http):
    server.queue(429, Scripted(content='{"a": 1}'))
    msgs = generation_messages(EN_DOC, 2)
    status, body, resp = await chat(http, server, msgs)
    assert status == 429 and resp.headers["Retry-After"] == "1"
    assert "x-ratelimit-remaining-requests" not in resp.headers  # noise, not a spent quota
    assert body["error"]["type"] == "requests" and body["error"]["code"] == "rate_limit_exceeded"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    status, body, _ = await chat(http, server, msgs)
    assert status == 200 and content_of(body) == '{"a": 1}'
    status, body, _ = await chat(http, server, msgs)
    assert status == 200 and len(json.loads(content_of(body))["samples"]) == 2
    assert server.stats["by_status"] == {"429": 1, "200": 2}
    assert server.stats["scripted"] == 2


async def test_scripted_bodies_headers_statuses_and_delays(server, http):
    server.queue(
        Scripted(status=401),
        Scripted(status=503, headers={"x-should-retry": "false"}),
        Scripted(status=429, headers={}),
        Scripted(status=200, body="<html>502 Bad Gateway</html>"),
        Scripted(status=200, body={"object": "error", "message": "flat", "code": 400}),
        Scripted(content="[1, 2", finish_reason="length", delay_s=0.05),
        Scripted(status=502, body="upstream down", headers={"Content-Type": "text/x-custom"}),
    )
    msgs = [{"role": "user", "content": "hi"}]
    status, body, _ = await chat(http, server, msgs)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    status, body, resp = await chat(http, server, msgs)
    assert status == 503 and resp.headers["x-should-retry"] == "false"
    assert "Retry-After" not in resp.headers
    status, _, resp = await chat(http, server, msgs)
    assert status == 429 and "Retry-After" not in resp.headers
    async with http.post(
        f"{server.url}/chat/completions", json={"model": "m", "messages": msgs}
    ) as r:
        assert r.content_type == "text/html" and "502" in await r.text()
    status, body, _ = await chat(http, server, msgs)
    assert body == {"object": "error", "message": "flat", "code": 400}
    status, body, _ = await chat(http, server, msgs)
    assert body["choices"][0]["finish_reason"] == "length" and content_of(body) == "[1, 2"
    async with http.post(
        f"{server.url}/chat/completions", json={"model": "m", "messages": msgs}
    ) as r:
        assert r.status == 502 and r.content_type == "text/x-custom"
    assert not server.config.fail_rate and server.stats["scripted"] == 7


async def test_queue_rejects_unknown_items(server):
    with pytest.raises(ValueError, match="fault kind"):
        server.queue("explode")
    with pytest.raises(TypeError):
        server.queue(1.5)


# --- faults -----------------------------------------------------------------------------------


async def _faulted(kind: str, http: aiohttp.ClientSession) -> tuple[int, dict[str, Any] | str, Any]:
    cfg = SimulatorConfig(fail_rate=1.0, faults=(kind,), retry_after_s=2.0)
    async with Simulator(cfg) as sim:
        async with http.post(
            f"{sim.url}/chat/completions",
            json={"model": "m", "messages": generation_messages(ZH_DOC, 3)},
        ) as resp:
            text = await resp.text()
            headers = resp.headers
        assert sim.stats["faults"] == {kind: 1}
        try:
            return resp.status, json.loads(text), headers
        except ValueError:
            return resp.status, text, headers


@pytest.mark.parametrize(
    ("kind", "status", "check"),
    [
        ("500", 500, lambda b, h: b["error"]["type"] == "server_error"),
        ("503", 503, lambda b, h: "overloaded" in b["error"]["message"]),
        ("429", 429, lambda b, h: h["Retry-After"] == "2"),
        ("429_no_retry_after", 429, lambda b, h: "Retry-After" not in h),
        ("quota", 429, lambda b, h: b["error"]["code"] == "insufficient_quota"),
        ("bad_body", 200, lambda b, h: b == "<html>502 Bad Gateway</html>"),
        ("empty_choices", 200, lambda b, h: b["choices"] == []),
        (
            "length",
            200,
            lambda b, h: (
                b["choices"][0]["finish_reason"] == "length"
                and isinstance(b["choices"][0]["message"]["content"], str)
                and not b["choices"][0]["message"]["content"].endswith("]")
            ),
        ),
    ],
)
async def test_each_fault_kind_is_visible_to_the_client(http, kind, status, check):
    got_status, body, headers = await _faulted(kind, http)
    assert got_status == status
    assert check(body, headers)


async def test_reset_fault_drops_the_connection(server, http):
    server.config.fail_rate = 1.0
    server.config.faults = ("reset",)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await chat(http, server, generation_messages(EN_DOC, 1))
    assert server.stats["faults"] == {"reset": 1} and server.stats["in_flight"] == 0
    server.config.fail_rate = 0.0
    status, _, _ = await chat(http, server, generation_messages(EN_DOC, 1))
    assert status == 200


@pytest.mark.slow
async def test_timeout_fault_hangs_then_answers(server, http):
    server.config.fail_rate = 1.0
    server.config.faults = ("timeout",)
    server.config.timeout_s = 5.0
    short = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            f"{server.url}/chat/completions",
            json={"model": "m", "messages": generation_messages(EN_DOC, 1)},
            timeout=short,
        ) as resp:
            await resp.read()
    for _ in range(100):  # the dropped request's handler is cancelled, not left hanging
        if server.stats["in_flight"] == 0:
            break
        await asyncio.sleep(0.01)
    assert server.stats["in_flight"] == 0
    server.config.timeout_s = 0.15
    loop = asyncio.get_running_loop()
    start = loop.time()
    status, body, _ = await chat(http, server, generation_messages(EN_DOC, 1))
    assert status == 200 and len(json.loads(content_of(body))) == 1
    assert loop.time() - start >= 0.14


async def test_rate_limit_sequence_is_seeded_and_retry_can_succeed(http):
    async def statuses(seed: int) -> tuple[list[int], list[str | None]]:
        cfg = SimulatorConfig(rate_limit_rate=0.5, seed=seed, retry_after_s=None)
        out, retry_after = [], []
        async with Simulator(cfg) as sim:
            for _ in range(30):
                status, body, resp = await chat(http, sim, generation_messages(EN_DOC, 1))
                out.append(status)
                retry_after.append(resp.headers.get("Retry-After"))
                if status == 429:
                    assert body["error"]["code"] == "rate_limit_exceeded"
            assert sim.stats["faults"]["rate_limit"] == out.count(429)
        return out, retry_after

    first, retry_after = await statuses(3)
    assert first == (await statuses(3))[0]
    assert first != (await statuses(4))[0]
    assert 5 <= first.count(429) <= 25 and 200 in first
    assert any(a == 429 and b == 200 for a, b in itertools.pairwise(first))
    assert retry_after == [None] * 30


async def test_malformed_rate_gives_content_without_json(http):
    async with Simulator(SimulatorConfig(malformed_rate=1.0)) as sim:
        status, body, _ = await chat(http, sim, generation_messages(ZH_DOC, 2))
        assert sim.stats["faults"] == {"malformed": 1}
    content = content_of(body)
    assert status == 200 and "[" not in content and "{" not in content


async def test_messy_content_is_wrapped_but_recoverable(http):
    docs = [f"{EN_DOC} Rule {k} applies from day {k}." for k in range(24)]
    raw_fails = 0
    async with Simulator(SimulatorConfig(messy=True, reasoning=True)) as sim:
        for doc in docs:
            _, body, _ = await chat(http, sim, generation_messages(doc, 2))
            message = body["choices"][0]["message"]
            assert isinstance(message["reasoning_content"], str) and message["reasoning_content"]
            content = message["content"]
            try:
                json.loads(content)
            except ValueError:
                raw_fails += 1
            assert recover_json(content) == {"samples": generation_samples("teacher", doc, 2)}
    assert raw_fails >= 12


async def test_max_tokens_cuts_the_reply_like_a_real_server(server, http):
    _, body, _ = await chat(http, server, generation_messages(ZH_DOC, 4), max_tokens=20)
    assert body["choices"][0]["finish_reason"] == "length"
    assert len(content_of(body)) == 40


# --- request validation, stats, models --------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ("not json", None),
    ],
)
async def test_bad_requests_get_an_openai_400(server, http, payload, param):
    data = payload if isinstance(payload, str) else json.dumps(payload)
    async with http.post(f"{server.url}/chat/completions", data=data) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param
    assert server.stats["by_status"] == {"400": 1} and server.stats["by_kind"]["other"] == 1


async def test_stats_count_requests_and_concurrency(server, http):
    server.config.latency_ms = 60
    secret = "sk-should-never-be-stored"

    async def one(i: int) -> int:
        headers = {"Authorization": f"Bearer {secret}"} if i < 3 else {}
        payload = {"model": f"m{i % 2}", "messages": generation_messages(f"{EN_DOC} #{i}", 1)}
        async with http.post(f"{server.url}/chat/completions", json=payload, headers=headers) as r:
            await r.read()
            return r.status

    assert await asyncio.gather(*(one(i) for i in range(8))) == [200] * 8
    st = server.stats
    assert st["requests"] == st["chat_requests"] == 8
    assert st["peak_in_flight"] == 8 and st["in_flight"] == 0
    assert st["by_model"] == {"m0": 4, "m1": 4} and st["by_status"] == {"200": 8}
    assert st["auth_headers_seen"] == 3
    assert st["prompt_tokens"] > 0 and st["completion_tokens"] > 0
    assert len(server.prompts) == 8 and all("SAMPLE_COUNT: 1" in p for p in server.prompts)
    async with http.get(server.url.removesuffix("/v1") + "/stats?log=1") as r:
        remote = await r.json()
    assert secret not in json.dumps(remote)
    assert {k: v for k, v in remote.items() if k != "requests_log"} == st
    assert sorted(map(tuple, remote["requests_log"])) == sorted(server.requests_log)
    async with http.post(server.url.removesuffix("/v1") + "/stats/reset") as r:
        assert r.status == 200
    assert server.stats["requests"] == 0 and server.stats["by_model"] == {}
    assert server.prompts == []


async def test_models_endpoint_lists_seen_models(server, http):
    await chat(http, server, [{"role": "user", "content": "hi"}], model="judge-z")
    async with http.get(f"{server.url}/models") as r:
        body = await r.json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} >= {"simulator", "judge-z"}


async def test_close_twice_is_safe_and_config_is_validated():
    sim = Simulator()
    await sim.start()
    assert sim.url == f"http://127.0.0.1:{sim.port}/v1" and sim.port > 0
    await sim.close()
    await sim.close()
    with pytest.raises(ValueError, match="unknown fault"):
        SimulatorConfig(faults=("boom",))
    with pytest.raises(ValueError, match="loopback"):
        Simulator(host="10.1.2.3")


async def test_threaded_simulator_serves_outside_this_loop(http):
    with run_in_thread(SimulatorConfig(seed=1)) as th:
        assert th.url.startswith("http://127.0.0.1:")
        th.queue(418)
        async with http.post(
            f"{th.url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        ) as r:
            assert r.status == 418
        status, _, _ = await chat(http, th, generation_messages(ZH_DOC, 1))
        assert status == 200
        stats = th.stats()
        assert stats["by_status"] == {"418": 1, "200": 1}
        th.close()
    th.close()


# --- CLI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.com", "::"])
def test_cli_refuses_a_non_loopback_host(capsys, host):
    with pytest.raises(SystemExit) as info:
        parse_args(["--host", host, "--port", "8000"])
    assert info.value.code == 2
    assert "loopback" in capsys.readouterr().err


def test_cli_accepts_loopback_hosts():
    for host in ("127.0.0.1", "localhost", "::1"):
        assert parse_args(["--host", host, "--messy", "--fail-rate", "0.2"]).host == host


async def _run_module(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sft_distill.simulator",
        *args,
        cwd=PACKAGE_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def test_cli_help_works(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--fail-rate" in out and "--retry-after-s" in out


@pytest.mark.slow
async def test_cli_serves_until_interrupted(http):
    proc = await _run_module("--port", "0", "--seed", "3")
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        async with http.post(
            f"{url}/chat/completions",
            json={"model": "m", "messages": generation_messages(EN_DOC, 2)},
        ) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --- gen-v2 generation: standalone questions, the plan, evidence, articles --------------------

LAW_DOC = "\n".join(
    [
        "第十条 保险合同是投保人与保险人约定保险权利义务关系的协议。",
        "第十六条 订立保险合同，保险人就保险标的或者被保险人的有关情况提出询问的，"
        "投保人应当如实告知。"
        "前款规定的合同解除权，自保险人知道有解除事由之日起，超过三十日不行使而消灭。",
        "第十七条 订立保险合同，采用保险人提供的格式条款的，保险人应当向投保人说明合同的内容。",
        "第二十三条 保险人收到被保险人的赔偿请求后，应当及时作出核定；情形复杂的，应当在三十日内"
        "作出核定，但合同另有约定的除外。",
    ]
)
LAW_HEADER = "资料：《中华人民共和国保险法》(2015-04-24) › 第二章 保险合同"


def gen_reply(messages: list[dict[str, str]], model: str = "teacher") -> dict[str, Any]:
    from sft_distill.simulator.content import generation_reply

    content = generation_reply(model, messages[-1]["content"])
    assert content is not None
    return json.loads(content)


def test_questions_name_the_subject_and_cite_articles_with_verbatim_evidence():
    from sft_distill.sources.plan import question_mix
    from sft_distill.stages.gates.checks.referential import find_referential

    samples = gen_reply(generation_messages(LAW_DOC, 8, header=LAW_HEADER))["samples"]
    assert len(samples) == 8
    plan = question_mix(8, LAW_DOC)
    assert sorted(s["difficulty"] for s in samples) == sorted(d for _, d in plan.slots())
    kinds = [
        ("fact" if s["question_type"] == "definition" else s["question_type"]) for s in samples
    ]
    assert sorted(kinds) == sorted(c for c, _ in plan.slots())
    for s in samples:
        assert "《中华人民共和国保险法》" in s["instruction"]
        assert "资料" not in s["instruction"] and "上文" not in s["instruction"]
        assert find_referential(s["instruction"], s["output"]) is None, s["instruction"]
        assert 1 <= len(s["evidence"]) <= 3 and all(q in LAW_DOC for q in s["evidence"])
        cited = re.findall(r"第[一二三四五六七八九十百]+条", s["output"])
        assert cited and all(c in LAW_DOC for c in cited)
        assert "《中华人民共和国保险法》第" in s["output"]  # the answer cites the law's article
    en = gen_reply(generation_messages(EN_DOC, 3, header="Source: Staff Handbook (2024-01-01)"))
    assert all("the Staff Handbook" in s["instruction"] for s in en["samples"])


def test_the_range_to_cover_and_the_questions_already_asked_are_respected():
    from sft_distill.sources.plan import RequestPart

    part = RequestPart(
        n=3, index=1, total=2, first="第十七条", last="第二十三条", units=2, articles=True
    )
    samples = gen_reply(generation_messages(LAW_DOC, 3, header=LAW_HEADER, part=part))["samples"]
    cited = {c for s in samples for c in re.findall(r"第[一二三四五六七八九十百]+条", s["output"])}
    assert cited == {"第十七条", "第二十三条"}
    first = gen_reply(generation_messages(LAW_DOC, 4, header=LAW_HEADER))["samples"]
    asked = [s["instruction"] for s in first]
    again = gen_reply(generation_messages(LAW_DOC, 4, header=LAW_HEADER, previous=asked))["samples"]
    assert not {s["instruction"] for s in again} & set(asked)


def test_question_and_answer_prompts_of_two_stage_generation():
    from sft_distill.llm.prompts import answer_messages, question_messages

    questions = gen_reply(question_messages(LAW_DOC, 4, header=LAW_HEADER))["questions"]
    assert len(questions) == 4
    assert all(set(q) == {"question_type", "difficulty", "question"} for q in questions)
    samples = gen_reply(generation_messages(LAW_DOC, 4, header=LAW_HEADER))["samples"]
    assert [q["question"] for q in questions] == [s["instruction"] for s in samples]
    got = gen_reply(
        answer_messages(LAW_DOC, "《中华人民共和国保险法》第二十三条规定的核定期限是多久？")
    )
    assert got["answer"].startswith("根据") and "第二十三条" in got["answer"]
    assert got["evidence"] and all(q in LAW_DOC for q in got["evidence"])
    assert "三十日" in got["answer"]


async def test_the_server_answers_the_new_prompts(server, http):
    from sft_distill.llm.prompts import answer_messages, question_messages

    for msgs in (
        generation_messages(LAW_DOC, 2, header=LAW_HEADER),
        question_messages(LAW_DOC, 2, header=LAW_HEADER),
        answer_messages(LAW_DOC, "第十条是什么？"),
    ):
        status, body, _ = await chat(http, server, msgs)
        assert status == 200 and json.loads(content_of(body)) == gen_reply(msgs)
    assert server.stats["by_kind"]["generation"] == 3


# --- structured output: each server's forms, replies in the schema's shape ---------------------

# (server, form) -> the status it answers with; 200: the form is taken.
TAKES = {
    "openai": {"json_schema": 200, "json_object_schema": 200, "json_object": 200, "none": 200},
    "llamacpp": {"json_schema": 500, "json_object_schema": 200, "json_object": 200, "none": 200},
    "json_object": {"json_schema": 400, "json_object_schema": 422, "json_object": 200, "none": 200},
    "none": {"json_schema": 400, "json_object_schema": 400, "json_object": 400, "none": 200},
}
FORMS = {
    "json_schema": Dialect.JSON_SCHEMA,
    "json_object_schema": Dialect.JSON_OBJECT_SCHEMA,
    "json_object": Dialect.JSON_OBJECT,
    "none": Dialect.NONE,
}


async def post_raw(
    http: aiohttp.ClientSession, sim: Simulator, body: dict[str, Any]
) -> tuple[int, str]:
    async with http.post(f"{sim.url}/chat/completions", json=body) as resp:
        return resp.status, await resp.text()


def conforms(value: Any, schema: dict[str, Any]) -> bool:
    """Whether ``value`` follows a strict schema of llm.structured (types, required, closed)."""
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        return False
    if kind == "object":
        props = schema["properties"]
        return (
            isinstance(value, dict)
            and set(value) == set(props) == set(schema["required"])
            and all(conforms(value[k], s) for k, s in props.items())
        )
    if kind == "array":
        return isinstance(value, list) and all(conforms(v, schema["items"]) for v in value)
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return ok and schema.get("minimum", value) <= value <= schema.get("maximum", value)
    if kind == "string":
        return isinstance(value, str)
    return True


@pytest.mark.parametrize(("server", "form"), [(s, f) for s in TAKES for f in TAKES[s]])
async def test_each_server_takes_its_forms_and_refuses_the_others(http, server, form):
    async with Simulator(SimulatorConfig(structured_output=server)) as sim:
        body = {"model": "m", "messages": generation_messages(EN_DOC, 2)}
        rf = response_format_for(FORMS[form], "generation")
        if rf is not None:
            body["response_format"] = rf
        status, text = await post_raw(http, sim, body)
        stats = sim.stats
    assert status == TAKES[server][form], text
    if status != 200:
        # The client must recognise every refusal as one of the form (and step down).
        assert is_response_format_error(status, text)
        assert stats["response_format_rejected"] == 1
    assert stats["response_formats"] == {form: 1}


async def test_llamacpp_refuses_json_schema_with_its_own_500(http):
    async with Simulator(SimulatorConfig(structured_output="llamacpp")) as sim:
        body = {"model": "m", "messages": generation_messages(EN_DOC, 2)}
        body["response_format"] = response_format_for("json_schema", "generation")
        status, text = await post_raw(http, sim, body)
    assert status == 500
    assert "Input should be 'text' or 'json_object'" in json.loads(text)["error"]["message"]


@pytest.mark.parametrize("server", ["openai", "json_object"])
async def test_json_object_needs_the_word_json_in_the_prompt(http, server):
    async with Simulator(SimulatorConfig(structured_output=server)) as sim:
        messages = [{"role": "user", "content": "Name three colours."}]
        body = {"model": "m", "messages": messages, "response_format": {"type": "json_object"}}
        status, text = await post_raw(http, sim, body)
        body["messages"] = [{"role": "user", "content": "Name three colours, in JSON."}]
        again, _ = await post_raw(http, sim, body)
    assert status == 400 and "must contain the word 'json'" in text and again == 200


def kind_prompts() -> list[tuple[str, list[dict[str, str]]]]:
    """A prompt of each kind the simulator answers, with the reply kind it is parsed as."""
    return [
        ("generation", generation_messages(ZH_DOC, 3)),
        ("judge", evaluation_messages(EN_DOC, "How much leave?", "", "1.5 days a month.")),
        ("topics", topic_expand_messages(["Sport"], 3, language="en")),
        ("questions", topic_questions_messages(["Sport", "Rules"], 2, language="en")),
        ("answer", topic_answer_messages(["Sport"], "What is a foul?", language="en")),
        ("rephrasings", iset_rephrase_messages("What is a foul?", "", 2, language="en")),
    ]


@pytest.mark.parametrize("form", ["json_schema", "json_object_schema", "json_object"])
@pytest.mark.parametrize(("kind", "messages"), kind_prompts(), ids=[k for k, _ in kind_prompts()])
async def test_a_reply_in_a_json_form_follows_the_kind_schema(http, form, kind, messages):
    server = "llamacpp" if form != "json_schema" else "openai"
    async with Simulator(SimulatorConfig(structured_output=server, messy=True)) as sim:
        body = {"model": "m", "messages": messages}
        body["response_format"] = response_format_for(FORMS[form], kind)
        status, text = await post_raw(http, sim, body)
    assert status == 200
    content = json.loads(text)["choices"][0]["message"]["content"]
    value = json.loads(content)  # no fences, no prose, even when messy
    assert conforms(value, schema_for(kind)), content
    assert unwrap(kind, value)  # and the reply model takes it


async def test_without_a_response_format_replies_are_as_before(http):
    from sft_distill.simulator.content import generation_reply

    messages = generation_messages(EN_DOC, 2)
    async with Simulator(SimulatorConfig()) as sim:
        body = {"model": "m", "messages": messages}
        _, text = await post_raw(http, sim, body)
    # The content function's own reply, not reshaped to any schema.
    content = json.loads(text)["choices"][0]["message"]["content"]
    assert content == generation_reply("m", messages[-1]["content"])


# --- the prefix cache and cached prompt tokens in usage ---------------------------------------


def test_prefix_cache_hits_from_min_tokens_in_128_token_steps():
    cache = PrefixCache(min_tokens=1024, ttl_s=60)
    shared = "x" * (2 * 1500)  # 1,500 tokens at 2 characters a token
    assert cache.cached_tokens(shared + "A" * 400, now=0) == 0  # nothing seen yet
    assert cache.cached_tokens(shared + "B" * 400, now=1) == 1408  # 1,500 rounded down to 128s
    assert cache.cached_tokens("x" * 1800 + "C" * 2000, now=2) == 0  # 900 shared: below 1,024
    assert cache.cached_tokens(shared + "D", now=100) == 0  # past its time to live


def test_prefix_cache_in_deepseek_units_hits_only_a_whole_unit():
    cache = PrefixCache(min_tokens=128, ttl_s=60, units=True)
    a = "a" * 2048  # 1,024 tokens
    assert cache.cached_tokens(a + "B" * 512, now=0) == 0
    assert cache.cached_tokens(a + "C" * 512, now=1) == 0  # A is a common prefix only now
    assert cache.cached_tokens(a + "D" * 512, now=2) == 1024  # the unit A hits
    assert cache.cached_tokens(a + "D" * 512, now=3) == 1280  # the whole request was a unit


@pytest.mark.parametrize("dialect", ["openai", "deepseek", "dashscope"])
async def test_usage_reports_cached_tokens_in_each_dialect(http, dialect):
    cfg = SimulatorConfig(usage_dialect=dialect, prefix_cache_min_tokens=256)
    async with Simulator(cfg) as sim:
        messages = generation_messages(EN_DOC * 12, 2)
        usages = []
        for _ in range(2):
            _, text = await post_raw(http, sim, {"model": "m", "messages": messages})
            usages.append(json.loads(text)["usage"])
        _, other = await post_raw(http, sim, {"model": "m2", "messages": messages})
        total = sim.stats["cached_prompt_tokens"]
    first, second = (usage_from_body({"usage": u}) for u in usages)
    assert first.cached_prompt == 0 and first.cache_reported
    assert second.cached_prompt == total > 0 and total % 128 == 0
    assert usage_from_body(json.loads(other)).cached_prompt == 0  # each model its own cache
    assert second.cached_prompt <= second.prompt == usages[1]["prompt_tokens"]
    if dialect == "deepseek":
        u = usages[1]
        assert u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"] == u["prompt_tokens"]
        assert "prompt_tokens_details" not in u
    else:
        assert usages[1]["prompt_tokens_details"]["cached_tokens"] == total


def test_cli_flags_for_structured_output_and_the_prefix_cache(capsys):
    args = parse_args(
        [
            "--structured-output",
            "llamacpp",
            "--usage-dialect",
            "deepseek",
            "--prefix-cache-min-tokens",
            "256",
            "--prefix-cache-ttl-s",
            "5",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.structured_output, cfg.usage_dialect) == ("llamacpp", "deepseek")
    assert (cfg.prefix_cache_min_tokens, cfg.prefix_cache_ttl_s) == (256, 5.0)
    assert config_from_args(parse_args([])).structured_output == "openai"
    with pytest.raises(SystemExit) as info:
        parse_args(["--structured-output", "xml"])
    assert info.value.code == 2
    with pytest.raises(ValueError, match="usage_dialect"):
        SimulatorConfig(usage_dialect="anthropic")
