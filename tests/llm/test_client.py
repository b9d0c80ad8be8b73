"""LLMClient against the simulator over loopback HTTP: retries, errors, cache, usage."""

from __future__ import annotations

import asyncio
import json

import pytest

from sft_distill.config.defaults import DIMENSIONS
from sft_distill.errors import (
    EndpointStoppedError,
    LLMError,
    ResponseFormatError,
    RetryableLLMError,
)
from sft_distill.llm.cache import LEGACY_PAYLOADS, ResponseCache, request_key
from sft_distill.llm.client import LLMClient
from sft_distill.llm.json_extract import extract_json
from sft_distill.llm.prompts import evaluation_messages, generation_messages, topic_answer_messages
from sft_distill.llm.structured import Dialect, response_format_for, schema_for
from sft_distill.llm.transport import error_details, one_line, parse_retry_after
from sft_distill.simulator.faults import Scripted
from sft_distill.simulator.server import Simulator, SimulatorConfig
from sft_distill.sources.topics import parse_answer
from sft_distill.stages.generate import parse_samples
from sft_distill.stages.judge import parse_scores
from tests.helpers import SleepRecorder, endpoint

MESSAGES = [{"role": "user", "content": "Say hello as JSON."}]


def as_json(result):
    return extract_json(result.content)


def ok(content: str = '{"hello": "world"}', **kw) -> Scripted:
    return Scripted(status=200, content=content, **kw)


async def test_plain_reply_is_parsed_and_usage_counted(sim):
    async with LLMClient("generator", endpoint(sim)) as client:
        msgs = generation_messages("保险合同是投保人与保险人约定保险权利义务关系的协议。", 2)
        value, result = await client.chat(msgs, as_json)
    assert isinstance(value, dict) and len(value["samples"]) == 2  # the gen-v2 reply shape
    assert result.attempts == 1 and not result.cached
    assert client.usage.calls == 1
    assert client.usage.prompt_tokens > 0 and client.usage.completion_tokens > 0
    assert sim.stats["auth_headers_seen"] == 1


async def test_429_with_retry_after_is_retried_after_that_delay(sim):
    sleep = SleepRecorder()
    sim.queue(
        Scripted(
            status=429,
            headers={"Retry-After": "3"},
            body={
                "error": {
                    "message": "Rate limit reached",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                    "param": None,
                }
            },
        ),
        ok(),
    )
    async with LLMClient("primary", endpoint(sim), sleep=sleep) as client:
        value, result = await client.chat(MESSAGES, as_json)
    assert value == {"hello": "world"}
    assert result.attempts == 2
    assert sleep.delays == [3.0]
    assert client.usage.retries == 1
    assert sim.stats["by_status"] == {"429": 1, "200": 1}


async def test_retry_after_ms_header_wins(sim):
    sleep = SleepRecorder()
    sim.queue(Scripted(status=429, headers={"retry-after-ms": "250", "Retry-After": "9"}), ok())
    async with LLMClient("primary", endpoint(sim), sleep=sleep) as client:
        await client.chat(MESSAGES, as_json)
    assert sleep.delays == [0.25]


async def test_500_then_ok_backs_off_exponentially(sim):
    sleep = SleepRecorder()
    sim.queue(500, 503, ok())
    async with LLMClient("primary", endpoint(sim), sleep=sleep) as client:
        _, result = await client.chat(MESSAGES, as_json)
    assert result.attempts == 3
    assert len(sleep.delays) == 2
    # 0.5 s doubling, each less up to 25%: first wait in [0.375, 0.5], second in [0.75, 1.0]
    assert 0.375 <= sleep.delays[0] <= 0.5 and 0.75 <= sleep.delays[1] <= 1.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried_and_name_endpoint_and_model(sim, status):
    sleep = SleepRecorder()
    sim.queue(status)
    ep = endpoint(sim, model="judge-x", api_key="sk-very-secret-123")
    async with LLMClient("secondary", ep, sleep=sleep) as client:
        with pytest.raises(LLMError) as info:
            await client.chat(MESSAGES, as_json)
    err = info.value
    assert not isinstance(err, RetryableLLMError)
    assert err.status == status and err.attempts == 1
    assert "secondary" in str(err) and "judge-x" in str(err) and f"HTTP {status}" in str(err)
    assert "sk-very-secret-123" not in str(err)
    assert sleep.delays == []
    assert sim.stats["chat_requests"] == 1


async def test_key_echoed_by_server_is_redacted(sim):
    key = "sk-echo-me-456"
    sim.queue(
        Scripted(
            status=401,
            body={
                "error": {
                    "message": f"Incorrect API key provided: {key}",
                    "type": "invalid_request_error",
                }
            },
        )
    )
    async with LLMClient("generator", endpoint(sim, api_key=key)) as client:
        with pytest.raises(LLMError) as info:
            await client.chat(MESSAGES, as_json)
    assert key not in str(info.value) and "***" in str(info.value)
    assert "check the API key" in str(info.value)


async def test_insufficient_quota_429_is_not_retried(sim):
    sim.queue(
        Scripted(
            status=429,
            body={
                "error": {
                    "message": "You exceeded your current quota, please check your plan.",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            },
        )
    )
    async with LLMClient("generator", endpoint(sim), sleep=SleepRecorder()) as client:
        with pytest.raises(LLMError) as info:
            await client.chat(MESSAGES, as_json)
    assert not isinstance(info.value, RetryableLLMError)
    assert sim.stats["chat_requests"] == 1


async def test_x_should_retry_false_stops_retries(sim):
    sim.queue(Scripted(status=503, headers={"x-should-retry": "false"}))
    async with LLMClient("generator", endpoint(sim), sleep=SleepRecorder()) as client:
        with pytest.raises(LLMError):
            await client.chat(MESSAGES, as_json)
    assert sim.stats["chat_requests"] == 1


async def test_truncated_reply_is_retried_never_kept(sim):
    sim.queue(ok('[{"instruction": "a", "output": "b"}, {"instr', finish_reason="length"), ok())
    async with LLMClient("generator", endpoint(sim), sleep=SleepRecorder()) as client:
        value, result = await client.chat(MESSAGES, as_json)
    assert value == {"hello": "world"} and result.attempts == 2


async def test_unparsable_reply_is_reasked_within_budget_then_fails(sim):
    sim.queue(*[ok("I cannot answer in JSON.") for _ in range(3)])
    ep = endpoint(sim, max_retries=2)
    async with LLMClient("generator", ep, sleep=SleepRecorder()) as client:
        with pytest.raises(RetryableLLMError) as info:
            await client.chat(MESSAGES, as_json)
    assert info.value.attempts == 3
    assert "unusable reply" in str(info.value)
    assert client.usage.failed_calls == 1
    assert sim.stats["chat_requests"] == 3


@pytest.mark.parametrize(
    "body",
    [
        {"id": "x", "object": "chat.completion", "choices": []},
        "<html>502 Bad Gateway</html>",
    ],
)
async def test_empty_choices_and_non_json_body_are_retried(sim, body):
    sim.queue(Scripted(status=200, body=body), ok())
    async with LLMClient("generator", endpoint(sim), sleep=SleepRecorder()) as client:
        value, result = await client.chat(MESSAGES, as_json)
    assert value == {"hello": "world"} and result.attempts == 2


async def test_content_null_on_stop_falls_back_to_reasoning(sim):
    body = {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": None, "reasoning": '{"a": 1}'},
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
    sim.queue(Scripted(status=200, body=body))
    async with LLMClient("generator", endpoint(sim)) as client:
        value, result = await client.chat(MESSAGES, as_json)
    assert value == {"a": 1} and result.reasoning == '{"a": 1}'


async def test_reasoning_content_is_kept(sim):
    body = {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": '{"a": 2}',
                    "reasoning_content": "想一想",
                },
            }
        ],
    }
    sim.queue(Scripted(status=200, body=body))
    async with LLMClient("generator", endpoint(sim)) as client:
        _, result = await client.chat(MESSAGES, as_json)
    assert result.reasoning == "想一想"


async def test_connection_reset_is_retried(sim):
    sim.config.fail_rate = 1.0
    sim.config.faults = ("reset",)
    async with LLMClient(
        "generator", endpoint(sim, max_retries=1), sleep=SleepRecorder()
    ) as client:
        with pytest.raises(RetryableLLMError) as info:
            await client.chat(MESSAGES, as_json)
    assert "connection error" in str(info.value) and info.value.attempts == 2


@pytest.mark.slow
async def test_timeout_is_retryable(sim):
    sim.queue(Scripted(status=200, content='{"a": 1}', delay_s=2.0), ok())
    ep = endpoint(sim, timeout=0.3)
    async with LLMClient("generator", ep, sleep=SleepRecorder()) as client:
        value, result = await client.chat(MESSAGES, as_json)
    assert value == {"hello": "world"} and result.attempts == 2


async def test_semaphore_bounds_requests_in_flight(sim):
    sim.config.latency_ms = 30
    async with LLMClient("generator", endpoint(sim, max_concurrent=3)) as client:
        msgs = [[{"role": "user", "content": f"n={i} as JSON {{}}"}] for i in range(12)]
        await asyncio.gather(*(client.chat(m, lambda r: r.content) for m in msgs))
    assert sim.stats["peak_in_flight"] == 3
    assert client.usage.calls == 12


async def test_cache_replays_without_a_request(sim, tmp_path):
    msgs = generation_messages("第一条 为了规范保险活动，保护保险活动当事人的合法权益。", 1)
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        async with LLMClient("generator", endpoint(sim), cache=cache) as client:
            first, r1 = await client.chat(msgs, as_json)
            second, r2 = await client.chat(msgs, as_json)
        assert first == second and not r1.cached and r2.cached
        assert sim.stats["chat_requests"] == 1 and client.usage.cached == 1
    # a new process (new cache object) sees it too; the key is not stored anywhere in the file
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        async with LLMClient("generator", endpoint(sim), cache=cache) as client:
            _, r3 = await client.chat(msgs, as_json)
        assert r3.cached and sim.stats["chat_requests"] == 1
    assert b"sk-test-0000" not in (tmp_path / "c.sqlite3").read_bytes()


async def test_aclose_twice_is_safe(sim):
    client = LLMClient("generator", endpoint(sim))
    await client.open()
    await client.aclose()
    await client.aclose()


@pytest.mark.parametrize(
    ("body", "message", "code"),
    [
        (
            {
                "error": {
                    "message": "bad",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
            "bad",
            "invalid_request_error",
        ),
        (
            {
                "object": "error",
                "message": "max_tokens must be at least 1",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            },
            "max_tokens must be at least 1",
            "BadRequestError",
        ),
        (
            {
                "error": {
                    "message": "ctx",
                    "type": "BadRequestError",
                    "param": "input_tokens",
                    "code": 400,
                }
            },
            "ctx",
            "BadRequestError",
        ),
        (
            {"error": 'model "x" not found, try pulling it first'},
            'model "x" not found, try pulling it first',
            None,
        ),
        (
            "<html><body>502 Bad Gateway</body></html>",
            "<html><body>502 Bad Gateway</body></html>",
            None,
        ),
        (
            {"error": {"code": "rate_limit_exceeded", "message": "slow down", "type": "tokens"}},
            "slow down",
            "rate_limit_exceeded",
        ),
    ],
)
def test_error_details_reads_every_wire_shape(body, message, code):
    assert error_details(body) == (message, code)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date():
    import email.utils
    import time

    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after({"retry-after": when}) <= 31


def test_payload_carries_generation_parameters_and_extra_body(sim):
    ep = endpoint(sim, temperature=0.2, max_tokens=100, extra_body={"enable_thinking": False})
    payload = LLMClient("g", ep)._payload(MESSAGES, None)
    assert payload["temperature"] == 0.2 and payload["max_tokens"] == 100
    assert payload["enable_thinking"] is False
    assert "sk-test" not in json.dumps(payload)


# --- found in review ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"choices": [{"message": "hello", "finish_reason": "stop"}]},
        {"choices": [{"message": {"content": '{"a": 1}'}}], "usage": [1]},
    ],
)
async def test_odd_200_shapes_are_retried_not_raised_raw(sim, body):
    sim.queue(Scripted(status=200, body=body), ok())
    async with LLMClient("generator", endpoint(sim), sleep=SleepRecorder()) as client:
        value, _ = await client.chat(MESSAGES, as_json)
    assert value in ({"hello": "world"}, {"a": 1})


async def test_non_numeric_usage_counts_are_read_as_zero(sim):
    body = {
        "choices": [{"message": {"content": '{"a": 1}'}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": "n/a", "completion_tokens": "7 tokens"},
    }
    sim.queue(Scripted(status=200, body=body))
    async with LLMClient("generator", endpoint(sim)) as client:
        value, result = await client.chat(MESSAGES, as_json)
    assert value == {"a": 1} and result.prompt_tokens == 0 and result.completion_tokens == 0


async def test_identical_requests_in_flight_share_one_call(sim, tmp_path):
    sim.config.latency_ms = 50
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        async with LLMClient("generator", endpoint(sim), cache=cache) as client:
            msgs = generation_messages(
                "第五条 保险活动当事人行使权利、履行义务应当遵循诚实信用原则。", 2
            )
            results = await asyncio.gather(*(client.chat(msgs, as_json) for _ in range(5)))
    assert sim.stats["chat_requests"] == 1
    assert all(v == results[0][0] for v, _ in results)


async def test_two_judges_with_the_same_model_do_not_share_cached_votes(sim, tmp_path):
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        msgs = generation_messages("第六条 保险业务由依照本法设立的保险公司经营。", 1)
        for name in ("primary", "secondary"):
            async with LLMClient(name, endpoint(sim, model="same"), cache=cache) as client:
                await client.chat(msgs, as_json)
    assert sim.stats["chat_requests"] == 2


async def test_lone_surrogate_in_a_reply_is_cached_without_stopping_the_cache(sim, tmp_path):
    sim.queue(Scripted(status=200, content='{"a": "bad \\ud83d here"}'), ok('{"b": 2}'))
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        async with LLMClient("generator", endpoint(sim), cache=cache) as client:
            first, _ = await client.chat(MESSAGES, as_json)
            second, _ = await client.chat([{"role": "user", "content": "other"}], as_json)
        cache.flush()
        assert len(cache) == 2
    assert first["a"].startswith("bad") and second == {"b": 2}


@pytest.mark.parametrize(("retry_after", "retried"), [("600", False), ("120", True)])
async def test_retry_after_longer_than_120_s_is_not_waited_inside_the_run(
    sim, retry_after, retried
):
    sleep = SleepRecorder()
    sim.queue(Scripted(status=429, headers={"Retry-After": retry_after}), ok())
    async with LLMClient("generator", endpoint(sim), sleep=sleep) as client:
        if retried:
            await client.chat(MESSAGES, as_json)
            assert sleep.delays == [120.0]
        else:
            with pytest.raises(LLMError, match="server asks to wait 600 s"):
                await client.chat(MESSAGES, as_json)
            assert sleep.delays == []


async def test_retry_after_zero_falls_back_to_backoff(sim):
    sleep = SleepRecorder()
    sim.queue(Scripted(status=429, headers={"Retry-After": "0"}), ok())
    async with LLMClient("generator", endpoint(sim, retry_backoff_s=0.5), sleep=sleep) as client:
        await client.chat(MESSAGES, as_json)
    assert len(sleep.delays) == 1 and 0.375 <= sleep.delays[0] <= 0.5


async def test_backoff_doubles_with_jitter_and_never_exceeds_its_maximum(sim):
    sleep = SleepRecorder()
    sim.queue(*[500] * 6, ok())
    ep = endpoint(sim, max_retries=6, retry_backoff_s=1.0, retry_backoff_max_s=8.0)
    async with LLMClient("generator", ep, sleep=sleep) as client:
        await client.chat(MESSAGES, as_json)
    assert len(sleep.delays) == 6
    for delay, base in zip(sleep.delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert 0.75 * base <= delay <= base
    assert len(set(sleep.delays)) == 6  # jittered, so clients that failed together spread out


async def test_truncated_reply_is_retried_only_once(sim):
    cut = ok('[{"instruction": "a", "output": "b"}, {"instr', finish_reason="length")
    sim.queue(cut, cut, cut, ok())
    async with LLMClient("generator", endpoint(sim, max_retries=5), sleep=SleepRecorder()) as c:
        with pytest.raises(RetryableLLMError, match="raise max_tokens"):
            await c.chat(MESSAGES, as_json)
    assert sim.stats["chat_requests"] == 2


async def test_a_closed_client_sends_nothing(sim):
    client = LLMClient("generator", endpoint(sim))
    await client.open()
    await client.aclose()
    with pytest.raises(LLMError, match="client is closed"):
        await client.chat(MESSAGES, as_json)
    assert sim.stats["chat_requests"] == 0


def test_credentials_in_the_url_never_show(sim):
    ep = endpoint(sim).model_copy(update={"api_base": "https://user:tok123@example.invalid/v1"})
    client = LLMClient("generator", ep)
    assert "tok123" not in client._where and "example.invalid/v1" in client._where


def test_latency_sample_stays_bounded_and_representative(sim):
    from sft_distill import llm_client

    client = LLMClient("g", endpoint(sim))
    n = llm_client.LATENCY_SAMPLE_SIZE * 5
    for i in range(n):
        client._record_latency(i / n)
    assert len(client.latencies) == llm_client.LATENCY_SAMPLE_SIZE
    median = sorted(client.latencies)[len(client.latencies) // 2]
    assert 0.45 < median < 0.55  # uniform over all calls, not just the first ones


# --- re-asking an unusable reply (issue 10 #12) ------------------------------------------


async def test_unusable_reply_is_reasked_with_the_error_never_resent_identically(tmp_path):
    bad = "Sure! Here are the scores you asked for."
    async with Simulator(SimulatorConfig(keep_prompts=True)) as sim:
        sim.queue(ok(bad), ok('{"a": 1}'))
        sleep = SleepRecorder()
        ep = endpoint(sim, temperature=0.0)
        with ResponseCache(tmp_path / "c.sqlite3") as cache:
            async with LLMClient("primary", ep, cache=cache, sleep=sleep) as client:
                value, result = await client.chat(MESSAGES, as_json)
            assert value == {"a": 1} and result.attempts == 2
            first, second = sim.bodies
            assert first != second  # never the same bytes again at temperature 0
            sent = json.loads(second)
            assert sent["temperature"] == 0 and sent["messages"][: len(MESSAGES)] == MESSAGES
            assert sent["messages"][-2] == {"role": "assistant", "content": bad}
            ask = sent["messages"][-1]
            assert ask["role"] == "user" and "no JSON in reply" in ask["content"]
            assert "valid JSON only" in ask["content"]
            assert sim.stats["reasks"] == 1
            assert client.usage.reasks == 1 and client.usage.retries == 0
            assert sleep.delays == []  # the endpoint is fine: re-asked at once, no backoff
            # The original request keys the cache: a resume finds the reply the re-ask got.
            async with LLMClient("primary", ep, cache=cache) as again:
                replay, cached = await again.chat(MESSAGES, as_json)
            assert replay == {"a": 1} and cached.cached and sim.stats["chat_requests"] == 2


async def test_a_second_reask_replaces_the_first_and_speaks_the_prompts_language(sim):
    sim.config.keep_prompts = True
    sim.queue(ok("第一次"), ok("第二次"), ok('{"a": 1}'))
    msgs = [{"role": "user", "content": "请用 JSON 回答：保险合同是什么？"}]
    async with LLMClient("primary", endpoint(sim), sleep=SleepRecorder()) as client:
        value, _ = await client.chat(msgs, as_json)
    assert value == {"a": 1} and client.usage.reasks == 2
    third = json.loads(sim.bodies[2])["messages"]
    assert len(third) == 3 and third[1]["content"] == "第二次"  # the latest reply only
    assert third[2]["content"].startswith("你上一条回复无法使用")


async def test_a_reask_that_meets_a_server_error_is_sent_again_as_a_reask(sim):
    sim.config.keep_prompts = True
    sim.queue(ok("no json here"), 500, ok('{"a": 1}'))
    async with LLMClient("primary", endpoint(sim), sleep=SleepRecorder()) as client:
        value, result = await client.chat(MESSAGES, as_json)
    assert value == {"a": 1} and result.attempts == 3
    assert sim.bodies[1] == sim.bodies[2]  # the re-ask, resent after the 500
    assert client.usage.reasks == 1 and client.usage.retries == 1


async def test_plain_text_replies_are_not_asked_for_json(sim):
    sim.config.keep_prompts = True
    sim.queue(ok("   "), ok("An answer."))

    def answer(result):
        if not result.content.strip():
            raise ValueError("empty answer")
        return result.content

    async with LLMClient("generator", endpoint(sim), sleep=SleepRecorder()) as client:
        value, _ = await client.chat(MESSAGES, answer)
    assert value == "An answer."
    ask = json.loads(sim.bodies[1])["messages"][-1]["content"]
    assert "empty answer" in ask and "JSON" not in ask


# --- an endpoint that fails every call is stopped (issue 10 #11) -------------------------


async def test_identical_failures_in_a_row_stop_the_endpoint_and_a_success_resets_the_count(sim):
    stops = []
    sim.queue(404, 404, ok(), 404, 404, 404)
    ep = endpoint(sim, max_consecutive_failures=3)
    async with LLMClient("secondary", ep, on_stop=stops.append) as client:
        for _ in range(2):
            with pytest.raises(LLMError):
                await client.chat(MESSAGES, as_json)
        await client.chat(MESSAGES, as_json)  # resets the count
        for _ in range(3):
            with pytest.raises(LLMError) as info:
                await client.chat(MESSAGES, as_json)
        assert not isinstance(info.value, EndpointStoppedError)  # the third is a real failure
        assert len(stops) == 1 and client.stopped is stops[0]
        assert "3 calls in a row" in str(stops[0]) and "HTTP 404" in str(stops[0])
        assert sim.url in str(stops[0])
        with pytest.raises(EndpointStoppedError) as refused:
            await client.chat([{"role": "user", "content": "another"}], as_json)
    assert refused.value.attempts == 0 and refused.value.repeated
    assert sim.stats["chat_requests"] == 6  # nothing sent once stopped
    assert len(stops) == 1


async def test_different_errors_in_a_row_do_not_stop_the_endpoint(sim):
    other = Scripted(status=404, body={"error": {"message": "no such route", "type": "x"}})
    sim.queue(404, other, 404, other)
    async with LLMClient("g", endpoint(sim, max_consecutive_failures=2)) as client:
        for _ in range(4):
            with pytest.raises(LLMError):
                await client.chat(MESSAGES, as_json)
    assert client.stopped is None


async def test_errors_about_the_request_itself_never_stop_the_endpoint(sim):
    filtered = {  # DashScope's content inspection, the same body for every filtered request
        "error": {
            "code": "data_inspection_failed",
            "param": None,
            "message": "Input data may contain inappropriate content.",
            "type": "data_inspection_failed",
        }
    }
    sim.queue(*[Scripted(status=400, body=filtered) for _ in range(4)])
    async with LLMClient("g", endpoint(sim, max_consecutive_failures=2)) as client:
        for _ in range(4):
            with pytest.raises(LLMError, match="inappropriate content"):
                await client.chat(MESSAGES, as_json)
        assert client.stopped is None
        await client.chat(MESSAGES, lambda r: r.content)  # still sent


async def test_stopping_cuts_short_the_backoff_of_calls_still_retrying(sim):
    sim.queue(500, 404, 404)
    ep = endpoint(sim, max_consecutive_failures=2, retry_backoff_s=30, retry_backoff_max_s=30)
    async with LLMClient("g", ep) as client:
        waiting = asyncio.create_task(client.chat([{"role": "user", "content": "a"}], as_json))
        for _ in range(500):  # until its first attempt got the 500 and it waits to retry
            if sim.stats["chat_requests"]:
                break
            await asyncio.sleep(0.01)
        t0 = asyncio.get_running_loop().time()
        for text in ("b", "c"):
            with pytest.raises(LLMError):
                await client.chat([{"role": "user", "content": text}], as_json)
        with pytest.raises(RetryableLLMError) as info:
            await waiting
    assert asyncio.get_running_loop().time() - t0 < 5  # not the 22-30 s backoff
    assert info.value.status == 500 and info.value.attempts == 1
    assert sim.stats["chat_requests"] == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'Traceback (most recent call last):\n  File "a.py", line 1, in f\n    g()\n'
            "ValueError: bad\n  more detail",
            "ValueError: bad more detail [server traceback omitted]",
        ),
        (
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body></html>",
            "502 Bad Gateway",
        ),
        ("<html><body>502 Bad Gateway</body></html>", "502 Bad Gateway"),
        (
            "<400> InternalError.Algo.DataInspectionFailed: Input text data may contain "
            "inappropriate content.",
            "<400> InternalError.Algo.DataInspectionFailed: Input text data may contain "
            "inappropriate content.",
        ),
        ("line one\n  line two", "line one line two"),
        ("", "empty body"),
    ],
)
def test_server_text_is_made_one_line(text, expected):
    assert one_line(text) == expected


# --- structured output: the response_format ladder, validation, thinking, cached tokens ------

GEN_MESSAGES = generation_messages("Employees accrue 1.5 days of paid leave per month.", 2)
# The form each kind of server settles on, and how many forms it refused on the way.
SETTLES = [
    ("openai", Dialect.JSON_SCHEMA, 0),
    ("llamacpp", Dialect.JSON_OBJECT_SCHEMA, 1),
    ("json_object", Dialect.JSON_OBJECT, 2),
    ("none", Dialect.NONE, 3),
]


def sent(sim: Simulator) -> list[dict]:
    """The request bodies the simulator received (it must keep them)."""
    return [json.loads(b) for b in sim.bodies]


def dialect_meta(cache: ResponseCache, sim: Simulator, model: str = "sim-model") -> str | None:
    return cache.get_meta(f"structured_output/{sim.url} {model}")


@pytest.mark.parametrize(("server", "form", "refused"), SETTLES)
async def test_auto_steps_down_to_the_form_the_server_takes_and_remembers_it(
    tmp_path, server, form, refused
):
    cfg = SimulatorConfig(structured_output=server, keep_prompts=True)
    async with Simulator(cfg) as sim:
        ep = endpoint(sim, max_consecutive_failures=1)
        with ResponseCache(tmp_path / "c.sqlite3") as cache:
            async with LLMClient("generator", ep, cache=cache) as client:
                samples, result = await client.chat(GEN_MESSAGES, parse_samples, kind="generation")
            assert dialect_meta(cache, sim) == form.value
        bodies = sent(sim)
    assert len(samples) == 2
    # Each refusal stepped down at once: not retried, not a failure, not towards the stop.
    assert sim.stats["response_format_rejected"] == refused
    assert sim.stats["chat_requests"] == refused + 1
    assert client.stopped is None and client.usage.failed_calls == 0
    assert client.usage.retries == 0 and client.usage.response_format_rejections == refused
    assert client.usage.structured_output == form.value
    assert bodies[-1].get("response_format") == response_format_for(form, "generation")
    if form is not Dialect.NONE:
        # Constrained decoding: the reply is the schema's object, array wrapped, nothing around.
        reply = json.loads(result.content)
        assert list(reply) == ["samples"] and len(reply["samples"]) == 2
        assert all(list(s) == list(schema_for("generation")["properties"]["samples"]["items"]
                                   ["properties"]) for s in reply["samples"])  # fmt: skip


async def test_the_probe_is_one_request_at_a_time_so_one_refusal_per_endpoint(tmp_path):
    async with Simulator(SimulatorConfig(structured_output="llamacpp", latency_ms=20)) as sim:
        with ResponseCache(tmp_path / "c.sqlite3") as cache:
            async with LLMClient("generator", endpoint(sim), cache=cache) as client:
                docs = [f"Rule {i}: leave is requested two weeks ahead." for i in range(8)]
                await asyncio.gather(
                    *(
                        client.chat(generation_messages(d, 1), parse_samples, kind="generation")
                        for d in docs
                    )
                )
    assert sim.stats["response_format_rejected"] == 1
    assert sim.stats["response_formats"] == {"json_schema": 1, "json_object_schema": 8}


async def test_a_probe_that_meets_an_error_lets_the_others_go_before_its_retries(sim):
    # The probe's first answer is a 503, which says nothing about the form: the requests that
    # waited for it go ahead at once, rather than behind its backoff (a dead endpoint must stop
    # as fast as before).
    release = asyncio.Event()

    async def held(delay: float) -> None:
        await release.wait()

    sim.queue(503)
    async with LLMClient("generator", endpoint(sim), sleep=held) as client:
        docs = [f"Rule {i}: leave is requested two weeks ahead." for i in range(3)]
        probe, *others = [
            asyncio.create_task(
                client.chat(generation_messages(d, 1), parse_samples, kind="generation")
            )
            for d in docs
        ]
        done, _ = await asyncio.wait(others, timeout=5)
        assert len(done) == 2 and not probe.done()
        release.set()
        await probe
    assert client.usage.structured_output == "json_schema" and client.usage.retries == 1


async def test_a_resume_uses_the_remembered_form_without_probing_again(tmp_path):
    async with Simulator(SimulatorConfig(structured_output="llamacpp", keep_prompts=True)) as sim:
        with ResponseCache(tmp_path / "c.sqlite3") as cache:
            async with LLMClient("generator", endpoint(sim), cache=cache) as client:
                await client.chat(GEN_MESSAGES, parse_samples, kind="generation")
        assert sim.stats["response_format_rejected"] == 1
        sim.reset_stats()
        with ResponseCache(tmp_path / "c.sqlite3") as cache:
            async with LLMClient("generator", endpoint(sim), cache=cache) as client:
                # the same request: found in the cache under the key of the remembered form
                await client.chat(GEN_MESSAGES, parse_samples, kind="generation")
                assert sim.stats["chat_requests"] == 0 and client.usage.cached == 1
                more = generation_messages("Sick leave is recorded separately.", 1)
                await client.chat(more, parse_samples, kind="generation")
        assert sim.stats["response_format_rejected"] == 0
        assert sim.stats["response_formats"] == {"json_object_schema": 1}


async def test_a_pinned_form_is_never_stepped_down_and_counts_towards_the_stop(tmp_path):
    async with Simulator(SimulatorConfig(structured_output="llamacpp")) as sim:
        ep = endpoint(sim, structured_output="json_schema", max_consecutive_failures=2)
        with ResponseCache(tmp_path / "c.sqlite3") as cache:
            async with LLMClient("generator", ep, cache=cache, sleep=SleepRecorder()) as client:
                for _ in range(2):
                    with pytest.raises(ResponseFormatError) as info:
                        await client.chat(GEN_MESSAGES, parse_samples, kind="generation")
                assert dialect_meta(cache, sim) is None
        assert "HTTP 500" in str(info.value) and "structured_output: auto" in str(info.value)
        assert sim.stats["chat_requests"] == 2  # a refusal is not retried
        assert sim.stats["response_formats"] == {"json_schema": 2}
        assert client.stopped is not None  # the same refusal twice stops the endpoint


async def test_pinned_json_object_sends_that_form(tmp_path):
    async with Simulator(SimulatorConfig(keep_prompts=True)) as sim:
        ep = endpoint(sim, structured_output="json_object")
        async with LLMClient("primary", ep) as client:
            msgs = evaluation_messages("Leave expires in December.", "When?", "", "In December.")
            (scores, _), _ = await client.chat(msgs, parse_scores, kind="judge")
        body = sent(sim)[0]
    assert body["response_format"] == {"type": "json_object"}
    assert client.usage.structured_output == "json_object"
    # "JSON" and the example of the judge's reply are appended to the system message.
    system = body["messages"][0]["content"]
    assert system.startswith(msgs[0]["content"]) and '"analysis"' in system and "JSON" in system
    assert body["messages"][1] == msgs[1]
    assert set(scores) == set(DIMENSIONS)


async def test_a_reply_the_model_rejects_is_reasked_with_the_pydantic_error(tmp_path):
    async with Simulator(SimulatorConfig(keep_prompts=True)) as sim:
        sim.queue(ok('{"samples": "none yet"}'))
        async with LLMClient("generator", endpoint(sim)) as client:
            # The caller's parse would take anything: the check is the reply model's.
            value, result = await client.chat(GEN_MESSAGES, lambda r: r.content, kind="generation")
        first, second = sent(sim)
    assert client.usage.reasks == 1 and result.attempts == 2
    assert json.loads(value)["samples"]
    reask = second["messages"][-1]["content"]
    assert "samples: Input should be a valid list" in reask
    assert second["messages"][-2] == {"role": "assistant", "content": '{"samples": "none yet"}'}
    assert second["response_format"] == first["response_format"]


async def test_an_answer_in_its_json_object_reaches_parse_as_plain_text(sim):
    async with LLMClient("generator", endpoint(sim)) as client:
        msgs = topic_answer_messages(["Python", "Typing"], "What is a Protocol?", language="en")
        (_, answer), result = await client.chat(msgs, parse_answer, kind="answer")
    assert json.loads(result.content) == {"answer": answer}  # as sent, and as cached
    assert answer and not answer.startswith("{") and "Protocol" in answer


def old_body(ep, messages) -> bytes:
    """A request body exactly as the client built it before structured output existed."""
    payload = {"model": ep.model, "messages": messages}
    if ep.temperature is not None:
        payload["temperature"] = ep.temperature
    if ep.max_tokens is not None:
        payload["max_tokens"] = ep.max_tokens
    payload.update(ep.extra_body)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def test_structured_output_none_sends_the_same_bytes_and_keys_as_before(tmp_path):
    async with Simulator(SimulatorConfig(keep_prompts=True)) as sim:
        ep = endpoint(
            sim, structured_output="none", temperature=0.3, max_tokens=900, extra_body={"top_p": 1}
        )
        with ResponseCache(tmp_path / "c.sqlite3") as cache:
            async with LLMClient("generator", ep, cache=cache) as client:
                await client.chat(GEN_MESSAGES, parse_samples, kind="generation")
                # no kind: as before, whatever the setting
                await client.chat(MESSAGES, lambda r: r.content)
            old = json.loads(old_body(ep, GEN_MESSAGES))
            key = request_key(f"generator@{sim.url}", old, skip={"max_tokens"})
            assert cache.get(key) is not None
    assert sim.bodies == [old_body(ep, GEN_MESSAGES), old_body(ep, MESSAGES)]
    assert client.usage.structured_output == "none"


async def test_auto_on_a_cache_from_before_structured_output_asks_as_it_did(tmp_path):
    async with Simulator(SimulatorConfig(keep_prompts=True)) as sim:
        ep = endpoint(sim)
        with ResponseCache(tmp_path / "c.sqlite3") as cache:
            cache.set_meta(LEGACY_PAYLOADS, "1")  # what an upgrade of an old cache leaves
            async with LLMClient("generator", ep, cache=cache) as client:
                await client.chat(GEN_MESSAGES, parse_samples, kind="generation")
            assert dialect_meta(cache, sim) == "none"
    assert sim.bodies == [old_body(ep, GEN_MESSAGES)]


async def test_thinking_switches_are_sent_and_extra_body_keeps_its_keys():
    async with Simulator(SimulatorConfig(keep_prompts=True)) as sim:
        eps = [
            endpoint(sim, thinking="off", extra_body={"chat_template_kwargs": {"a": 1}}),
            endpoint(sim, thinking="on", thinking_style="enable_thinking"),
            endpoint(sim, reasoning_effort="low", thinking_style="reasoning_effort"),
            endpoint(sim, thinking="off", thinking_style="reasoning_effort"),
            endpoint(sim),
        ]
        for ep in eps:
            async with LLMClient("primary", ep) as client:
                await client.chat(MESSAGES, lambda r: r.content)
        bodies = sent(sim)
    assert bodies[0]["chat_template_kwargs"] == {"enable_thinking": False, "a": 1}
    assert bodies[1]["enable_thinking"] is True
    assert bodies[2]["reasoning_effort"] == "low"
    assert bodies[3]["reasoning_effort"] == "none"
    assert set(bodies[4]) == {"model", "messages"}


async def test_an_error_naming_response_format_without_one_sent_is_retried_as_usual(sim):
    sim.queue(Scripted(status=500, body={"error": {"message": "bad response_format"}}), ok())
    async with LLMClient("primary", endpoint(sim), sleep=SleepRecorder()) as client:
        value, result = await client.chat(MESSAGES, as_json)
    assert value == {"hello": "world"} and result.attempts == 2


@pytest.mark.parametrize("dialect", ["openai", "deepseek", "dashscope"])
async def test_cached_prompt_tokens_are_counted_in_every_usage_dialect(tmp_path, dialect):
    cfg = SimulatorConfig(usage_dialect=dialect, prefix_cache_min_tokens=128, reasoning=True)
    doc = "Employees accrue 1.5 days of paid leave per month of service. " * 40
    async with Simulator(cfg) as sim:
        with ResponseCache(tmp_path / "c.sqlite3") as cache:
            async with LLMClient("primary", endpoint(sim), cache=cache) as client:
                for output in ("One.", "Two.", "Three."):  # one document, three samples
                    msgs = evaluation_messages(doc, "How much leave?", "", output)
                    await client.chat(msgs, parse_scores, kind="judge")
            logged = list(cache.calls_since(0))
    cached = sim.stats["cached_prompt_tokens"]
    assert cached > 0 and cached % 128 == 0
    assert client.usage.cached_prompt_tokens == cached
    assert client.usage.reasoning_tokens > 0
    assert sum(row[7] for row in logged) == cached
    assert sum(row[8] for row in logged) == client.usage.reasoning_tokens
