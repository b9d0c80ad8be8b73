"""Prompts longer than an endpoint's context: how servers say it, the hint, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_distill.cli import main
from sft_distill.errors import ContextOverflowError, LLMError
from sft_distill.llm.client import LLMClient
from sft_distill.simulator.faults import Scripted
from sft_distill.simulator.server import SimulatorConfig, run_in_thread
from tests.helpers import SleepRecorder, cli_config, endpoint, read_jsonl, read_metadata

MESSAGES = [{"role": "user", "content": "Say hello as JSON."}]

# Real 400 bodies for a prompt that does not fit (../shared/wire.md, section 3, and the sources
# cited there), and one that is a 400 about something else.
OVERFLOW_BODIES = {
    "openai": {
        "error": {
            "message": "This model's maximum context length is 128000 tokens. However, your "
            "messages resulted in 173172 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    },
    "deepseek": {
        "error": {
            "message": "This model's maximum context length is 131072 tokens. However, you "
            "requested 131134 tokens (122942 in the messages, 8192 in the completion). Please "
            "reduce the length of the messages or completion.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request_error",
        }
    },
    "vllm_flat": {
        "object": "error",
        "message": "This model's maximum context length is 131072 tokens. However, you requested "
        "156632 tokens (152536 in the messages, 4096 in the completion). Please reduce the "
        "length of the messages or completion.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    },
    "vllm_0_16": {
        "error": {
            "message": "You passed 1015 input tokens and requested 10 output tokens. However, the "
            "model's context length is only 1024 tokens, resulting in a maximum input length of "
            "1014 tokens. Please reduce the length of the input prompt. (parameter=input_tokens, "
            "value=1015)",
            "type": "BadRequestError",
            "param": "input_tokens",
            "code": 400,
        }
    },
    "llama_cpp": {
        "error": {
            "code": 400,
            "message": "request (13392 tokens) exceeds the available context size (8192 tokens), "
            "try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 13392,
            "n_ctx": 8192,
        }
    },
    "dashscope": {
        "error": {
            "message": "<400> InternalError.Algo.InvalidParameter: Range of input length should "
            "be [1, 30720]",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_parameter_error",
        }
    },
}


@pytest.mark.parametrize("server", sorted(OVERFLOW_BODIES))
async def test_context_overflow_is_reported_with_a_hint_and_not_retried(sim, server):
    sleep = SleepRecorder()
    sim.queue(Scripted(status=400, body=OVERFLOW_BODIES[server]))
    async with LLMClient("generator", endpoint(sim), sleep=sleep) as client:
        with pytest.raises(ContextOverflowError) as err:
            await client.chat(MESSAGES, json.loads)
    message = str(err.value)
    assert "chunk_chars" in message and "context" in message
    assert err.value.cause == "context_overflow" and err.value.attempts == 1
    assert sleep.delays == [] and sim.stats["chat_requests"] == 1


async def test_other_400s_are_not_taken_for_an_overflow(sim):
    body = {
        "object": "error",
        "message": "max_tokens must be at least 1, got -186.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    sim.queue(Scripted(status=400, body=body))
    async with LLMClient("generator", endpoint(sim)) as client:
        with pytest.raises(LLMError) as err:
            await client.chat(MESSAGES, json.loads)
    assert not isinstance(err.value, ContextOverflowError) and err.value.cause is None
    assert "chunk_chars" not in str(err.value)


async def test_simulator_rejects_a_prompt_over_its_context_like_vllm(sim):
    sim.config = SimulatorConfig(context_tokens=100)
    long = [{"role": "user", "content": "x" * 150}]  # 75 tokens + max_tokens 50 > 100
    async with LLMClient("generator", endpoint(sim, max_tokens=50)) as client:
        with pytest.raises(ContextOverflowError, match="context length is only 100 tokens"):
            await client.chat(long, lambda r: r.content)
        short = [{"role": "user", "content": "x" * 80}]
        text, _ = await client.chat(short, lambda r: r.content)
    assert text


def write_slices(path: Path) -> Path:
    """One slice far longer than the test server's context, and one short one."""
    clause = "保险合同是投保人与保险人约定保险权利义务关系的协议，投保人应当如实告知。"
    rows = [
        {"id": "long", "content": clause * 300},  # 10,800 characters: ~5,400 simulator tokens
        {"id": "short", "content": clause * 5},
    ]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_summary_says_what_to_change_and_does_not_promise_a_rerun(tmp_path, capsys):
    slices = write_slices(tmp_path / "slices.jsonl")
    cfg = cli_config("", chunk_chars=20000, min_votes=1)
    with run_in_thread(SimulatorConfig(context_tokens=8000)) as sim:
        for ep in (cfg["generator"], *cfg["evaluators"].values()):
            ep["api_base"] = sim.url
        (tmp_path / "c.json").write_text(json.dumps(cfg), "utf-8")
        status = main(
            ["-i", str(slices), "-o", str(tmp_path / "out"), "-c", str(tmp_path / "c.json"), "-q"]
        )
    out = capsys.readouterr().out
    assert status == 3, out
    assert "longer than the endpoint's context" in out and "lower chunk_chars" in out
    assert "rerun the same command to retry them" not in out
    failures = read_jsonl(tmp_path / "out" / "failures.jsonl")
    assert [(f["kind"], f["slice_id"], f["cause"]) for f in failures] == [
        ("generation", "long", "context_overflow")
    ]
    assert "lower chunk_chars" in failures[0]["reason"] and failures[0]["attempts"] == 1
    meta = read_metadata(tmp_path / "out")
    assert meta["failure_causes"] == {"context_overflow": 1}
    assert meta["counts"]["train"] + meta["counts"]["val"] > 0  # the short slice went through


# --- --estimate: does a chunk fit the endpoint's context? ----------------------------------------


def estimate_cli(tmp_path: Path, cfg: dict, *extra: str) -> int:
    """``sft-distill --estimate`` over the long and short slices; the exit status."""
    slices = write_slices(tmp_path / "slices.jsonl")
    (tmp_path / "c.json").write_text(json.dumps(cfg), "utf-8")
    return main(["-i", str(slices), "-c", str(tmp_path / "c.json"), "--estimate", *extra])


def sim_endpoints(url: str, **extra: object) -> dict:
    return cli_config(url, chunk_chars=20000, min_votes=1, **extra)


def test_cli_estimate_warns_of_a_chunk_the_served_context_cannot_take(tmp_path, capsys):
    with run_in_thread(SimulatorConfig(context_tokens=8000)) as sim:
        status = estimate_cli(tmp_path, sim_endpoints(sim.url))
        stats = sim.stats()
        out = capsys.readouterr().out
        assert status == 0, out
        # Asked once per server and model: three models here.
        assert stats["info_requests"] == 3 and stats["chat_requests"] == 0
        assert "context 8,000 tokens (max_model_len from GET /v1/models)" in out
        assert "slice 'long' chunk 0" in out
        assert "WARNING: ~1 of 2 requests to generator will not fit its context" in out
        assert "lower chunk_chars (now 20000)" in out
        # ... and the run then fails that request for that reason.
        status = main(
            [
                "-i",
                str(tmp_path / "slices.jsonl"),
                "-c",
                str(tmp_path / "c.json"),
                "-o",
                str(tmp_path / "out"),
                "-q",
            ]
        )
    assert status == 3
    failure = json.loads((tmp_path / "out" / "failures.jsonl").read_text("utf-8"))
    assert (failure["slice_id"], failure["cause"]) == ("long", "context_overflow")


def test_no_probe_asks_nothing_and_a_configured_context_is_still_checked(tmp_path, capsys):
    with run_in_thread(SimulatorConfig(context_tokens=8000)) as sim:
        cfg = sim_endpoints(sim.url)
        cfg["generator"]["context_tokens"] = 6000
        status = estimate_cli(tmp_path, cfg, "--no-probe")
        assert sim.stats()["info_requests"] == 0
    out = capsys.readouterr().out
    assert status == 0
    assert "context 6,000 tokens (context_tokens in the config)" in out
    assert "will not fit its context" in out
    assert "primary, secondary: context unknown, not asked" in out


def test_llamacpp_context_comes_from_props_not_the_trained_length(tmp_path, capsys):
    from sft_distill.llm.server_context import probe_context

    with run_in_thread(SimulatorConfig(context_tokens=8000, context_report="llamacpp")) as sim:
        limit = probe_context(endpoint(sim, model="t"))
        assert (limit.tokens, limit.source) == (8000, "n_ctx from GET /props")
        status = estimate_cli(tmp_path, sim_endpoints(sim.url))
    assert status == 0
    assert "will not fit its context" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("sim_cfg", "note"),
    [
        (SimulatorConfig(context_tokens=8000, context_report="none"), "does not report"),
        (None, "could not ask http://127.0.0.1:9/v1/models"),  # nothing listens on port 9
    ],
)
def test_estimate_without_a_known_context_says_why_and_still_succeeds(
    tmp_path, capsys, sim_cfg, note
):
    if sim_cfg is None:
        status = estimate_cli(tmp_path, sim_endpoints("http://127.0.0.1:9/v1"))
    else:
        with run_in_thread(sim_cfg) as sim:
            status = estimate_cli(tmp_path, sim_endpoints(sim.url))
    out = capsys.readouterr().out
    assert status == 0, out
    assert "generator, primary, secondary: context unknown" in out and note in out
    assert "WARNING" not in out
