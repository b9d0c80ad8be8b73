"""``llm.batch``: a client's requests through the simulator's Batch API, and the states a killed
run leaves in the cache (killed before its upload was recorded, between upload and create, past
``batch_timeout_s``) taken up again without a second submission."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sft_distill.config.models import DistillConfig
from sft_distill.errors import LLMError
from sft_distill.llm.batch import BatchRunner, BatchSettings
from sft_distill.llm.cache import ResponseCache, request_key
from sft_distill.llm.client import LLMClient
from sft_distill.simulator.server import Simulator
from tests.helpers import endpoint, sim_config

FAST = BatchSettings(poll_s=0.02, collect_s=0.05)
MESSAGES = [{"role": "user", "content": "What does the simulator say?"}]
UNKEYED = {"max_tokens", "max_completion_tokens"}


def _client(sim: Simulator, cache: ResponseCache, runner: BatchRunner) -> LLMClient:
    return LLMClient("gen", endpoint(sim, structured_output="none"), cache=cache, batch=runner)


def _key_and_line(client: LLMClient) -> tuple[str, str, bytes]:
    """The cache key of MESSAGES, a custom_id and the batch file a run would upload for it."""
    payload = client._payload(MESSAGES, None)  # the payload the client sends
    key = request_key(client.namespace, payload, skip=UNKEYED)
    cid = f"0-{key[:12]}"
    line = {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": payload}
    return key, cid, (json.dumps(line) + "\n").encode()


async def _upload(sim: Simulator, data: bytes, filename: str) -> str:
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", data, filename=filename, content_type="application/jsonl")
    async with aiohttp.ClientSession() as s, s.post(f"{sim.url}/files", data=form) as r:
        return str((await r.json())["id"])


async def _create(sim: Simulator, fid: str) -> str:
    body = {"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    async with aiohttp.ClientSession() as s, s.post(f"{sim.url}/batches", json=body) as r:
        return str((await r.json())["id"])


async def _files(sim: Simulator) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(f"{sim.url}/files") as r:
        return list((await r.json())["data"])


async def _ask(sim: Simulator, cache: ResponseCache, settings: BatchSettings = FAST) -> str:
    """MESSAGES asked by a fresh client through a fresh runner (a rerun); the reply."""
    runner = BatchRunner(cache, settings)
    async with _client(sim, cache, runner) as client:
        await runner.start([client])
        try:
            value, result = await client.chat(MESSAGES, lambda r: r.content)
        finally:
            await runner.aclose(clean=True)
    assert not result.cached
    return value


async def test_requests_go_out_as_one_batch_and_the_reply_is_cached(sim: Simulator, tmp_path):
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        reply = await _ask(sim, cache)
        assert "simulator" in reply
        assert sim.stats["batches_created"] == 1 and sim.stats["chat_requests"] == 1
        assert await _files(sim) == []  # input and output deleted
        assert cache.batch_jobs("gen@" + sim.url) == []  # forgotten after a clean end
        assert len(cache) == 1  # the reply, in the response cache
        rows = list(cache.calls_since(0))
        assert [r[-1] for r in rows] == [1]  # logged as batched


async def test_files_over_max_bytes_are_split_and_progress_is_logged(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sft_distill.llm.batch")
    settings = BatchSettings(poll_s=0.02, collect_s=0.05, max_bytes=300)  # one request a file
    questions = [[{"role": "user", "content": f"Question {i}?"}] for i in range(3)]
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        runner = BatchRunner(cache, settings)
        async with _client(sim, cache, runner) as client:
            await runner.start([client])
            replies = await asyncio.gather(
                *(client.chat(q, lambda r: r.content) for q in questions)
            )
            await runner.aclose(clean=True)
    assert len(replies) == 3
    assert sim.stats["batches_created"] == 3 and sim.stats["batch_lines_submitted"] == 3
    text = caplog.text
    assert "submitted (1 request)" in text and "completed: 1 of 1 done, 0 failed" in text


async def test_a_run_killed_between_upload_and_create_record_adopts_the_batch(
    sim: Simulator, tmp_path: Path
) -> None:
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        client = _client(sim, cache, BatchRunner(cache, FAST))
        key, cid, data = _key_and_line(client)
        job = cache.add_batch_job(client.namespace, "u1", [(cid, key)])
        fid = await _upload(sim, data, "sft-distill-u1.jsonl")
        cache.update_batch_job(job, state="uploaded", input_file_id=fid)
        await _create(sim, fid)  # created, but killed before its id was recorded
        sim.reset_stats()
        assert "simulator" in await _ask(sim, cache)
        assert sim.stats["batches_created"] == 0  # the provider's batch was taken up
        assert await _files(sim) == []


async def test_an_upload_without_its_batch_is_deleted_and_asked_anew(sim: Simulator, tmp_path):
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        client = _client(sim, cache, BatchRunner(cache, FAST))
        key, cid, data = _key_and_line(client)
        # Killed after the upload was recorded, before the batch was created ...
        job = cache.add_batch_job(client.namespace, "u1", [(cid, key)])
        fid = await _upload(sim, data, "sft-distill-u1.jsonl")
        cache.update_batch_job(job, state="uploaded", input_file_id=fid)
        # ... and killed during an upload whose file id was never recorded.
        cache.add_batch_job(client.namespace, "u2", [(cid, key)])
        await _upload(sim, data, "sft-distill-u2.jsonl")
        assert "simulator" in await _ask(sim, cache)
        assert sim.stats["batches_created"] == 1  # one batch for the one request
        assert await _files(sim) == []  # both orphans deleted


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_a_batch_past_its_timeout_fails_its_requests_and_a_rerun_polls_it(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.config.batch_delay_s = 30.0
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        with pytest.raises(LLMError, match="batch_timeout_s"):
            await _ask(sim, cache, BatchSettings(poll_s=0.02, collect_s=0.05, timeout_s=0.3))
        assert [j["state"] for j in cache.batch_jobs("gen@" + sim.url)] == ["submitted"]
        sim.config.batch_delay_s = 0.0  # the provider gets to it
        assert "simulator" in await _ask(sim, cache)
        assert sim.stats["batches_created"] == 1


def test_an_endpoint_batch_setting_wins_over_the_run() -> None:
    class _Sim:
        url = "http://127.0.0.1:9/v1"

    cfg: DistillConfig = sim_config(_Sim(), batch=True)  # type: ignore[arg-type]
    assert cfg.batched(cfg.generator)
    off = cfg.generator.model_copy(update={"batch": False})
    assert not cfg.batched(off)
    on = cfg.generator.model_copy(update={"batch": True})
    assert sim_config(_Sim()).batched(on) and not sim_config(_Sim()).batched(cfg.generator)  # type: ignore[arg-type]
