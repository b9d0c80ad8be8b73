"""Bounded, streaming concurrency for pipeline stages: results as they complete, memory bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


async def bounded_map(
    source: AsyncIterable[T],
    fn: Callable[[T], Awaitable[R]],
    *,
    limit: int,
) -> AsyncIterator[R]:
    """Apply ``fn`` to items of ``source`` concurrently, yielding results as they complete.

    At most ``limit`` items are taken from ``source`` and not yet handed to the consumer, so
    memory stays bounded and a slow consumer slows intake (backpressure). Completions travel
    through a queue, so each one costs O(1) however many are in flight (``asyncio.wait`` over a
    large set would cost O(n) per completion). An exception from ``fn`` or ``source`` is raised
    to the consumer; on exit every task still running is cancelled and awaited.
    """
    if limit < 1:
        raise ValueError("limit must be >= 1")
    # Only the pump ever waits for a slot: a counter and one future are all it takes
    # (asyncio.Semaphore.locked() scans its waiters on every acquire).
    free = limit
    room: asyncio.Future[None] | None = None
    results: asyncio.Queue[Any] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()
    started = 0

    async def run(item: T) -> None:
        try:
            results.put_nowait((True, await fn(item)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which re-raises it
            results.put_nowait((False, exc))

    async def pump() -> None:
        nonlocal started, free, room
        try:
            async for item in source:
                while free == 0:
                    room = asyncio.get_running_loop().create_future()
                    await room
                free -= 1
                started += 1
                task = asyncio.create_task(run(item))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            results.put_nowait((False, exc))
        finally:
            results.put_nowait(_DONE)

    pump_task = asyncio.create_task(pump())
    pumping = True
    received = 0
    try:
        while pumping or received < started:
            msg = await results.get()
            if msg is _DONE:
                pumping = False
                continue
            ok, value = msg
            if not ok:
                raise value
            received += 1
            free += 1
            if room is not None and not room.done():
                room.set_result(None)
            yield value
    finally:
        pump_task.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(pump_task, *tasks, return_exceptions=True)


async def bounded_flat_map(
    source: AsyncIterable[T],
    fn: Callable[[T], AsyncIterator[R]],
    *,
    limit: int,
) -> AsyncIterator[R]:
    """Run ``fn(item)`` (an async generator) for up to ``limit`` items at once; yield its results.

    Each item's results come in its own order, items' results interleaved as they arrive, so
    work inside an item stays sequential while items run concurrently. A producer waits until
    the consumer has taken its previous result (at most ``limit`` results wait), and an item's
    slot is freed when its generator ends. An exception from ``fn`` or ``source`` is raised to
    the consumer; on exit every task still running is cancelled and awaited.
    """
    if limit < 1:
        raise ValueError("limit must be >= 1")
    loop = asyncio.get_running_loop()
    free = limit
    room: asyncio.Future[None] | None = None
    results: asyncio.Queue[Any] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()
    started = 0
    _END = object()  # an item's generator is done

    async def run(item: T) -> None:
        try:
            async for value in fn(item):
                taken: asyncio.Future[None] = loop.create_future()
                results.put_nowait((True, value, taken))
                await taken
            results.put_nowait((True, _END, None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which re-raises it
            results.put_nowait((False, exc, None))

    async def pump() -> None:
        nonlocal started, free, room
        try:
            async for item in source:
                while free == 0:
                    room = loop.create_future()
                    await room
                free -= 1
                started += 1
                task = asyncio.create_task(run(item))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            results.put_nowait((False, exc, None))
        finally:
            results.put_nowait(_DONE)

    pump_task = asyncio.create_task(pump())
    pumping = True
    finished = 0
    try:
        while pumping or finished < started:
            msg = await results.get()
            if msg is _DONE:
                pumping = False
                continue
            ok, value, taken = msg
            if not ok:
                raise value
            if value is _END:
                finished += 1
                free += 1
                if room is not None and not room.done():
                    room.set_result(None)
                continue
            yield value
            taken.set_result(None)
    finally:
        pump_task.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(pump_task, *tasks, return_exceptions=True)
