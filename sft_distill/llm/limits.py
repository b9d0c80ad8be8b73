"""How fast one endpoint is asked: an adaptive concurrency limit (AIMD) and token buckets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable


class AdaptiveLimiter:
    """A concurrency limit that backs off under sustained 429s and grows back (AIMD).

    A few random 429s are noise, and halving on each would throttle a healthy endpoint, so the
    limit shrinks (x0.7, at most once per ``cooldown_s``) only when more than ``overload_share``
    of the recent replies were 429s. It grows by one per ``limit`` successes, up to the maximum.
    ``pause_until`` holds back new requests when the server says its quota is spent
    (``x-ratelimit-remaining-requests: 0``). Only this endpoint slows down, never the whole run.
    """

    def __init__(
        self,
        max_limit: int,
        *,
        adaptive: bool = True,
        min_limit: int = 1,
        overload_share: float = 0.1,
        cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_limit = max_limit
        self.min_limit = min(min_limit, max_limit)
        self.limit = float(max_limit)
        self.adaptive = adaptive
        self.in_flight = 0
        self.peak_in_flight = 0
        self.decreases = 0
        self._overload_share = overload_share
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._last_decrease = -1e9
        self._window: deque[bool] = deque(maxlen=max(50, 2 * max_limit))
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._paused_until = 0.0
        self._wake_handle: asyncio.TimerHandle | None = None

    async def acquire(self, *, first: bool = False) -> None:
        """Wait for a free slot; ``first`` goes ahead of the queue (a retry that already waited)."""
        if not self._waiters and self._has_room():
            self._take()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(fut)
        else:
            self._waiters.append(fut)
        self._schedule_unpause()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was granted as we were cancelled: give it back
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def try_acquire(self) -> bool:
        """Take a free slot at once if there is one (and nobody queues before us)."""
        if self._waiters or not self._has_room():
            return False
        self._take()
        return True

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def spent(self, tokens: int) -> None:
        """Tokens one reply used: a shared budget counts them; this one has no token budget."""

    async def __aenter__(self) -> AdaptiveLimiter:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def record(self, *, overloaded: bool) -> None:
        """Feed one reply's outcome (429 or not) into the limit."""
        if not self.adaptive:
            return
        self._window.append(overloaded)
        if overloaded:
            now = self._clock()
            share = sum(self._window) / len(self._window)
            enough = len(self._window) >= min(20, self._window.maxlen or 20)
            if (
                enough
                and share > self._overload_share
                and now - self._last_decrease >= self._cooldown_s
            ):
                self.limit = max(float(self.min_limit), self.limit * 0.7)
                self._last_decrease = now
                self.decreases += 1
        elif self.limit < self.max_limit:
            self.limit = min(float(self.max_limit), self.limit + 1.0 / self.limit)
            self._wake()

    def pause_until(self, when: float) -> None:
        """Start no new request before ``when`` (clock time)."""
        self._paused_until = max(self._paused_until, when)

    def _has_room(self) -> bool:
        return self.in_flight < int(self.limit) and self._clock() >= self._paused_until

    def _take(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight

    def _wake(self) -> None:
        while self._waiters and self._has_room():
            fut = self._waiters.popleft()
            if not fut.done():
                self._take()
                fut.set_result(None)
        self._schedule_unpause()

    def _schedule_unpause(self) -> None:
        delay = self._paused_until - self._clock()
        if self._waiters and delay > 0 and self._wake_handle is None:
            loop = asyncio.get_running_loop()

            def fire() -> None:
                self._wake_handle = None
                self._wake()

            self._wake_handle = loop.call_later(delay, fire)


class TokenBucket:
    """Requests or tokens per minute: a bucket holding ten seconds' worth, refilled continuously.

    ``take`` may drive the level negative (a request larger than the bucket, or a correction
    after the real token count is known); later takers then wait until it is paid back.
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)
        # Start nearly empty: a full bucket at start would let limit + capacity through in the
        # first minute, which sliding-window servers answer with 429s.
        self.level = min(self.capacity, 1.0)
        self._clock = clock
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` fits (or the bucket is full), then take it."""
        async with self._lock:
            self._refill()
            need = min(amount, self.capacity)
            if self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def adjust(self, amount: float) -> None:
        """Charge (or refund, when negative) the difference once the true cost is known."""
        self._refill()
        self.level = min(self.capacity, self.level - amount)
