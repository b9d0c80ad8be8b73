"""bounded_map and bounded_flat_map: streaming, bounded, errors surface, cleanup on exit."""

from __future__ import annotations

import asyncio

import pytest

from sft_distill.stages.stream import bounded_flat_map, bounded_map


async def aiter_list(items, *, delay: float = 0.0, log: list | None = None):
    for x in items:
        if log is not None:
            log.append(("read", x))
        if delay:
            await asyncio.sleep(delay)
        yield x


async def test_all_results_arrive_with_bounded_concurrency():
    running = peak = 0

    async def work(x):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (x % 3))
        running -= 1
        return x * 2

    out = [r async for r in bounded_map(aiter_list(range(50)), work, limit=5)]
    assert sorted(out) == [x * 2 for x in range(50)]
    assert peak == 5


async def test_results_stream_before_source_is_exhausted():
    log: list = []

    async def work(x):
        return x

    agen = bounded_map(aiter_list(range(1000), log=log), work, limit=4)
    first = await agen.__anext__()
    await agen.aclose()
    assert first == 0
    reads = [e for e in log if e[0] == "read"]
    assert len(reads) < 20  # backpressure: intake stops while the consumer does not take results


async def test_exception_in_fn_reaches_consumer_and_cancels_others():
    cancelled = []

    async def work(x):
        if x == 3:
            raise ValueError("boom")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    with pytest.raises(ValueError, match="boom"):
        async for _ in bounded_map(aiter_list(range(6)), work, limit=6):
            pass
    assert cancelled  # the sleepers were cancelled, not left running


async def test_exception_in_source_reaches_consumer():
    async def bad_source():
        yield 1
        raise RuntimeError("source broke")

    async def work(x):
        return x

    with pytest.raises(RuntimeError, match="source broke"):
        async for _ in bounded_map(bad_source(), work, limit=2):
            pass


async def test_empty_source():
    async def work(x):
        return x

    assert [r async for r in bounded_map(aiter_list([]), work, limit=3)] == []


async def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        async for _ in bounded_map(aiter_list([1]), asyncio.sleep, limit=0):
            pass


# --- bounded_flat_map: each item's steps in order, items at once -------------------------------


async def test_flat_map_keeps_each_items_order_and_runs_items_concurrently():
    running = peak = 0
    steps: dict[int, list[int]] = {}

    async def steps_of(x):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            for k in range(3):
                await asyncio.sleep(0.005 * ((x + k) % 3))
                yield (x, k)
        finally:
            running -= 1

    async for x, k in bounded_flat_map(aiter_list(range(12)), steps_of, limit=4):
        steps.setdefault(x, []).append(k)
    assert steps == {x: [0, 1, 2] for x in range(12)}
    assert peak == 4


async def test_flat_map_is_bounded_by_the_consumer():
    produced: list[int] = []

    async def steps_of(x):
        for k in range(100):
            produced.append(k)
            yield k

    agen = bounded_flat_map(aiter_list(range(3)), steps_of, limit=3)
    assert await agen.__anext__() == 0
    await asyncio.sleep(0.01)
    assert len(produced) <= 6  # each item waits until its previous result is taken
    await agen.aclose()


async def test_flat_map_raises_an_items_error_and_cancels_the_rest():
    cancelled = []

    async def steps_of(x):
        if x == 2:
            raise ValueError("boom")
        yield x
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        yield x

    with pytest.raises(ValueError, match="boom"):
        async for _ in bounded_flat_map(aiter_list(range(4)), steps_of, limit=4):
            pass
    with pytest.raises(ValueError, match="limit"):
        async for _ in bounded_flat_map(aiter_list(range(1)), steps_of, limit=0):
            pass
