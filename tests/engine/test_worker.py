"""A shard whose worker dies midway: the rerun redoes only that shard, from its cache."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sft_distill.engine.driver import ShardFailedError
from sft_distill.pipeline import DatasetDistillationPipeline
from sft_distill.simulator.server import Simulator, SimulatorConfig
from tests.helpers import make_input, outputs, read_metadata, sim_config

pytestmark = pytest.mark.slow


def _cached(shard: Path) -> int:
    """Replies in a shard's cache so far (0 before it exists)."""
    if not (shard / "cache.sqlite3").is_file():
        return 0
    try:
        with sqlite3.connect(shard / "cache.sqlite3", timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not made yet
        return 0


async def test_worker_killed_mid_shard_then_rerun_gives_the_same_outputs(
    ray_local: Any, tmp_path: Path
) -> None:
    inp = make_input(tmp_path / "in.jsonl", 24)
    out = tmp_path / "ray"
    async with Simulator(SimulatorConfig(latency_ms=60.0, keep_prompts=True)) as sim:
        limit = 2
        ep = {"api_base": sim.url, "api_key": "sk-t", "api_key_env": None, "max_concurrent": limit}
        config = sim_config(
            sim,
            generator={**ep, "model": "t"},
            evaluators={"primary": {**ep, "model": "a"}, "secondary": {**ep, "model": "b"}},
        )
        await DatasetDistillationPipeline(config, show_progress=False).run(
            inp, output_dir=tmp_path / "local"
        )
        sim.reset_stats()

        def pipeline() -> DatasetDistillationPipeline:
            p = DatasetDistillationPipeline(config, show_progress=False, engine="ray", workers=2)
            p.shard_retries = 0  # the driver sees the death (Ray would otherwise retry)
            return p

        job = asyncio.create_task(pipeline().run(inp, output_dir=out))
        shard0 = out / "shards" / "0"
        for _ in range(600):
            if _cached(shard0) >= 3 and (shard0 / "worker.pid").is_file():
                break
            await asyncio.sleep(0.05)
        assert not (shard0 / "done").exists()
        os.kill(int((shard0 / "worker.pid").read_text()), signal.SIGKILL)
        with pytest.raises(ShardFailedError, match="shard 0 of 2"):
            await job
        assert not (shard0 / "done").exists() and (out / "shards/1/done").exists()
        cached_before = _cached(shard0)
        first = Counter(sim.bodies)

        await pipeline().run(inp, output_dir=out)
        everything = Counter(sim.bodies)
    assert outputs(out) == outputs(tmp_path / "local")
    per_shard = read_metadata(out)["engine"]["per_shard"]
    assert per_shard["0"]["ran_this_invocation"] and not per_shard["1"]["ran_this_invocation"]
    # Only calls in flight when the worker died went out again: none whose reply was cached.
    again = [body for body, n in everything.items() if n > 1]
    assert all(first[body] == 1 for body in again)
    assert len(again) <= 3 * limit, len(again)  # at most what the 3 endpoints had in flight
    assert cached_before >= 3


async def test_driver_interrupted_midway_then_rerun_redoes_only_unfinished_shards(
    ray_local: Any, tmp_path: Path
) -> None:
    inp = make_input(tmp_path / "in.jsonl", 24)
    out = tmp_path / "ray"
    async with Simulator(SimulatorConfig(latency_ms=60.0, keep_prompts=True)) as sim:
        limit = 2
        ep = {"api_base": sim.url, "api_key": "sk-t", "api_key_env": None, "max_concurrent": limit}
        config = sim_config(
            sim,
            generator={**ep, "model": "t"},
            evaluators={"primary": {**ep, "model": "a"}, "secondary": {**ep, "model": "b"}},
        )
        await DatasetDistillationPipeline(config, show_progress=False).run(
            inp, output_dir=tmp_path / "local"
        )
        sim.reset_stats()

        def pipeline() -> DatasetDistillationPipeline:
            return DatasetDistillationPipeline(config, show_progress=False, engine="ray")

        # One shard at a time: the first finishes, the second is stopped midway.
        first = pipeline()
        first.workers, first.shards = 1, 2
        job = asyncio.create_task(first.run(inp, output_dir=out))
        for _ in range(1200):
            if (out / "shards/0/done").exists() and _cached(out / "shards" / "1") >= 3:
                break
            await asyncio.sleep(0.05)
        job.cancel()  # as a signal to the driver does
        with pytest.raises(asyncio.CancelledError):
            await job
        await asyncio.sleep(1.0)
        sent = sim.stats["chat_requests"]
        await asyncio.sleep(0.5)
        assert sim.stats["chat_requests"] == sent  # the shard's worker was stopped too
        assert not (out / "shards/1/done").exists()
        before = Counter(sim.bodies)

        await pipeline().run(inp, output_dir=out)
        everything = Counter(sim.bodies)
    assert outputs(out) == outputs(tmp_path / "local")
    per_shard = read_metadata(out)["engine"]["per_shard"]
    assert not per_shard["0"]["ran_this_invocation"] and per_shard["1"]["ran_this_invocation"]
    again = [body for body, n in everything.items() if n > 1]
    assert all(before[body] == 1 for body in again)
    assert len(again) <= 3 * limit, len(again)


async def test_worker_killed_mid_shard_is_retried_by_ray_and_its_slots_freed(
    ray_local: Any, tmp_path: Path
) -> None:
    inp = make_input(tmp_path / "in.jsonl", 24)
    out = tmp_path / "ray"
    async with Simulator(SimulatorConfig(latency_ms=60.0)) as sim:
        ep = {"api_base": sim.url, "api_key": "sk-t", "api_key_env": None, "max_concurrent": 2}
        config = sim_config(
            sim,
            generator={**ep, "model": "t"},
            evaluators={"primary": {**ep, "model": "a"}, "secondary": {**ep, "model": "b"}},
        )
        await DatasetDistillationPipeline(config, show_progress=False).run(
            inp, output_dir=tmp_path / "local"
        )
        pipeline = DatasetDistillationPipeline(config, show_progress=False, engine="ray")
        job = asyncio.create_task(pipeline.run(inp, output_dir=out))
        shard0 = out / "shards" / "0"
        for _ in range(600):
            if _cached(shard0) >= 3 and (shard0 / "worker.pid").is_file():
                break
            await asyncio.sleep(0.05)
        os.kill(int((shard0 / "worker.pid").read_text()), signal.SIGKILL)
        result = await job  # Ray ran the shard again, from its cache
    assert result.complete
    assert outputs(out) == outputs(tmp_path / "local")
    # The dead worker's slots were given back: nothing is held at the end.
    limits = read_metadata(out)["engine"]["limits"]
    assert all(figures["in_flight"] == 0 for figures in limits.values()), limits
