"""Global endpoint budgets: leases in batches, one limit for every worker, 429s slow all."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sft_distill.engine.budget import EndpointBudget, Grant, LeasedLimiter, Report
from sft_distill.pipeline import DatasetDistillationPipeline
from sft_distill.simulator.server import Simulator, SimulatorConfig
from tests.helpers import make_input, read_metadata, sim_config


class _Method:
    """``handle.method.remote(...)`` on an object in this process, as on a Ray actor."""

    def __init__(self, fn: Any, delay: float) -> None:
        self.fn = fn
        self.delay = delay

    def remote(self, *args: Any) -> Any:
        async def call() -> Any:
            await asyncio.sleep(self.delay)  # an actor call is never synchronous
            result = self.fn(*args)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.ensure_future(call())


class _Handle:
    def __init__(self, obj: Any, delay: float = 0.0) -> None:
        self.obj = obj
        self.delay = delay

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self.obj, name), self.delay)


@pytest.mark.parametrize("limit", [3, 16])
@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_workers_share_one_limit_and_lease_in_batches(limit: int) -> None:
    budget = EndpointBudget(limit)
    handle = _Handle(budget)
    workers = [LeasedLimiter(handle, worker=f"{k}:1", max_limit=limit) for k in range(2)]
    in_flight = peak = 0

    async def call(limiter: LeasedLimiter) -> None:
        nonlocal in_flight, peak
        await limiter.acquire()
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        limiter.release()
        limiter.record(overloaded=False)

    requests = 20 * limit
    await asyncio.gather(*(call(w) for w in workers for _ in range(requests // 2)))
    for w in workers:
        await w.aclose()
    assert peak == limit  # never above the global limit, though each worker alone allows it
    assert budget.limiter.in_flight == 0 and budget.held == {"0:1": 0, "1:1": 0}
    # Slots are leased several at a time, reused while requests wait and given back in
    # batches: far fewer calls to the budget than requests.
    calls = budget.lease_calls + budget.settle_calls
    # (A small limit shared by two busy workers keeps moving slots between them.)
    bound = requests / (1.5 if limit < 8 else 8)
    assert calls < bound, (budget.lease_calls, budget.settle_calls)


async def test_429s_on_one_worker_lower_the_limit_of_the_other() -> None:
    budget = EndpointBudget(8, adaptive=True)
    handle = _Handle(budget)
    hot, quiet = (LeasedLimiter(handle, worker=f"{k}:1", max_limit=8) for k in range(2))
    for _ in range(30):
        await hot.acquire()
        hot.release()
        hot.record(overloaded=True)
    await hot.aclose()
    assert budget.limiter.limit < 8
    await quiet.acquire()  # a worker that saw no 429 leases under the lowered limit
    assert quiet.limit == budget.limiter.limit < 8
    quiet.release()
    await quiet.aclose()


async def test_slots_freed_while_a_report_is_on_its_way_reach_the_other_worker() -> None:
    budget = EndpointBudget(2)
    handle = _Handle(budget, delay=0.05)  # each call to the budget takes 50 ms
    a, b = (LeasedLimiter(handle, worker=f"{k}:1", max_limit=2) for k in range(2))
    await a.acquire()
    await a.acquire()
    waiting = asyncio.ensure_future(asyncio.gather(b.acquire(), b.acquire()))
    await asyncio.sleep(0.01)
    a.release()  # reported 20 ms later, arriving 50 ms after that
    await asyncio.sleep(0.04)
    a.release()  # freed while that report is on its way: it must follow, unasked
    await asyncio.wait_for(waiting, timeout=3)
    assert b.in_flight == 2


async def test_dead_worker_slots_are_freed() -> None:
    budget = EndpointBudget(2)
    dead = LeasedLimiter(_Handle(budget), worker="0:99", max_limit=2)
    await dead.acquire()
    await dead.acquire()
    assert budget.limiter.in_flight == 2
    assert budget.forget("0:") == 2  # the driver, when shard 0's worker died
    assert budget.limiter.in_flight == 0
    assert await budget.lease(1, Report("0:99")) == Grant(0, 2.0, 0, 0, 2)  # it is dead
    assert (await budget.lease(1, Report("1:7"))).slots == 1  # the others lease as before


async def test_global_limiter_backs_off_for_every_worker_on_429s(
    ray_local: Any, tmp_path: Path
) -> None:
    inp = make_input(tmp_path / "in.jsonl", 24)
    ep = {"api_key": "sk-test-0000", "api_key_env": None, "max_concurrent": 8}
    ep |= {"max_retries": 8, "retry_backoff_s": 0.01}
    cfg = {"latency_ms": 5.0, "rate_limit_rate": 0.3, "retry_after_s": 0.05}
    async with Simulator(SimulatorConfig(**cfg)) as sim:
        config = sim_config(
            sim,
            gates=[],
            judge_batch_size=1,  # one judge call per sample: enough calls to meet many 429s
            generator={"api_base": sim.url, "model": "teacher-sim", **ep},
            evaluators={
                "primary": {"api_base": sim.url, "model": "judge-a", **ep},
                "secondary": {"api_base": sim.url, "model": "judge-b", **ep},
            },
        )
        pipeline = DatasetDistillationPipeline(config, show_progress=False, engine="ray", workers=2)
        result = await pipeline.run(inp, output_dir=tmp_path / "out")
        assert sim.stats["by_status"].get("429", 0) > 20
    assert result.complete
    limits = read_metadata(tmp_path / "out")["engine"]["limits"]
    for name, figures in limits.items():
        assert figures["overloaded_replies"] > 0, name
        assert figures["peak_in_flight"] <= 8
    # The judges (most of the calls) backed off; 429s from both workers fed one limit.
    assert all(limits[name]["limit_decreases"] >= 1 for name in ("primary", "secondary"))
    # Every worker was told a lowered global limit, and leased under it (an endpoint whose
    # limit fell after a worker's last call there is not seen by that worker).
    per_shard = read_metadata(tmp_path / "out")["engine"]["per_shard"]
    for k in ("0", "1"):
        assert min(per_shard[k]["lowest_limit"].values()) < 8, per_shard[k]["lowest_limit"]
