"""The simulator's Batch API: files, batches, lines answered as the chat endpoint answers them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from sft_distill.simulator.server import Simulator, SimulatorConfig

KEY = "sk-batch-test-0000"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _line(cid: str, text: str) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}


async def _upload(session: aiohttp.ClientSession, url: str, lines: list[dict[str, Any]]) -> str:
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    form.add_field("file", data, filename="in.jsonl", content_type="application/jsonl")
    async with session.post(f"{url}/files", data=form) as r:
        assert r.status == 200
        return str((await r.json())["id"])


async def _create(session: aiohttp.ClientSession, url: str, fid: str) -> dict[str, Any]:
    body = {"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    async with session.post(f"{url}/batches", json=body) as r:
        assert r.status == 200
        return dict(await r.json())


async def _wait(session: aiohttp.ClientSession, url: str, bid: str) -> dict[str, Any]:
    for _ in range(500):
        async with session.get(f"{url}/batches/{bid}") as r:
            info = dict(await r.json())
        if info["status"] in ("completed", "failed", "expired", "cancelled"):
            return info
        await asyncio.sleep(0.01)
    raise AssertionError("batch never finished")


async def _lines(session: aiohttp.ClientSession, url: str, fid: str | None) -> list[dict]:
    if fid is None:
        return []
    async with session.get(f"{url}/files/{fid}/content") as r:
        return [json.loads(x) for x in (await r.text()).splitlines() if x.strip()]


async def test_a_batch_answers_each_line_as_the_chat_endpoint_does(sim: Simulator) -> None:
    sim.config.batch_delay_s = 0.3
    texts = ["Say hello.", "What is two plus two?"]
    async with aiohttp.ClientSession(headers=AUTH) as s:
        fid = await _upload(s, sim.url, [_line(f"c{i}", t) for i, t in enumerate(texts)])
        created = await _create(s, sim.url, fid)
        assert created["status"] == "validating"
        await asyncio.sleep(0.05)
        async with s.get(f"{sim.url}/batches/{created['id']}") as r:
            running = await r.json()
        assert running["status"] == "in_progress"  # the delay keeps it running
        assert running["request_counts"] == {"total": 2, "completed": 0, "failed": 0}
        info = await _wait(s, sim.url, created["id"])
        assert info["status"] == "completed"
        assert info["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
        out = {x["custom_id"]: x for x in await _lines(s, sim.url, info["output_file_id"])}
        assert info["error_file_id"] is None
        for i, text in enumerate(texts):
            online_body = _line("x", text)["body"]
            async with s.post(f"{sim.url}/chat/completions", json=online_body) as r:
                online = await r.json()
            resp = out[f"c{i}"]["response"]
            assert resp["status_code"] == 200 and out[f"c{i}"]["error"] is None
            got = resp["body"]["choices"][0]["message"]["content"]
            assert got == online["choices"][0]["message"]["content"]
            assert resp["body"]["usage"]["prompt_tokens"] == online["usage"]["prompt_tokens"]
        for fid_ in (fid, info["output_file_id"]):
            async with s.delete(f"{sim.url}/files/{fid_}") as r:
                assert (await r.json())["deleted"] is True
        async with s.get(f"{sim.url}/files/{fid}") as r:
            assert r.status == 404
        async with s.get(f"{sim.url}/files") as r:
            assert (await r.json())["data"] == []
    st = sim.stats
    assert (st["files_uploaded"], st["files_deleted"], st["batches_created"]) == (1, 2, 1)
    assert st["batch_lines"] == 2 and st["files_with_auth_key"] == 0


async def test_failed_and_expired_lines_go_to_the_error_file() -> None:
    cfg = SimulatorConfig(batch_fail_lines=1, batch_expire=1)
    async with Simulator(cfg) as sim, aiohttp.ClientSession() as s:
        lines = [_line(f"c{i}", f"Question {i}?") for i in range(4)]
        info = await _wait(
            s, sim.url, (await _create(s, sim.url, await _upload(s, sim.url, lines)))["id"]
        )
        assert info["status"] == "expired"
        errors = {x["custom_id"]: x for x in await _lines(s, sim.url, info["error_file_id"])}
        out = {x["custom_id"] for x in await _lines(s, sim.url, info["output_file_id"])}
        assert errors["c0"]["error"]["code"] == "server_error"  # the first line answered
        assert errors["c2"]["error"]["code"] == errors["c3"]["error"]["code"] == "batch_expired"
        assert out == {"c1"}
        assert info["request_counts"] == {"total": 4, "completed": 1, "failed": 3}
        # Only the first batch expires, only one line fails: the next one completes in full.
        info = await _wait(
            s, sim.url, (await _create(s, sim.url, await _upload(s, sim.url, lines)))["id"]
        )
        assert info["status"] == "completed" and info["request_counts"]["completed"] == 4


async def test_bad_batch_requests_are_refused(sim: Simulator) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{sim.url}/batches", json={"input_file_id": "file-nope"}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "input_file_id"
        async with s.post(f"{sim.url}/files", json={"purpose": "batch"}) as r:
            assert r.status == 400
        async with s.get(f"{sim.url}/batches/batch_nope") as r:
            assert r.status == 404
        async with s.delete(f"{sim.url}/files/file-nope") as r:
            assert r.status == 404
