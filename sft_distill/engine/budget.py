"""Global endpoint limits: one budget per endpoint, shared by every worker through leases.

``EndpointBudget`` (run as a Ray actor, one per endpoint) holds the endpoint's concurrency
limit with its AIMD state and its requests- and tokens-per-minute budgets. A worker's clients
use a ``LeasedLimiter``: it asks the budget for as many slots as it has requests waiting, in
one call, and sends back the slots it freed, each reply's outcome (a 429 or not) and the tokens
used in batches (every ``FLUSH_S``), never one actor call per HTTP call. A slot freed while
requests wait is used again at once while the worker holds no more than its share (the limit
over the workers using the endpoint, so the others get their turn) and the endpoint is not
above its limit (so a lowered limit drains). A 429 seen by one worker lowers the limit every
worker leases from, so the endpoint slows down for all of them.

The budget is a plain class (tested without Ray); ``driver`` wraps it with ``ray.remote``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from ..llm.limits import AdaptiveLimiter, TokenBucket

# How long a lease call waits for a free slot before answering "none yet" (the worker asks again).
LEASE_WAIT_S = 1.0
# How long a worker gathers freed slots and outcomes before sending them back in one call.
FLUSH_S = 0.05


@dataclass
class Report:
    """What a worker sends back with each call: slots freed, reply outcomes, tokens used."""

    worker: str
    returned: int = 0
    outcomes: list[bool] = field(default_factory=list)  # True: the reply was a 429
    tokens: int = 0
    pause_s: float = 0.0  # the server said its request quota is spent for this long

    def empty(self) -> bool:
        return not (self.returned or self.outcomes or self.tokens or self.pause_s)


@dataclass(frozen=True)
class Grant:
    """A lease call's answer: slots granted, and the global limit and slots in use now."""

    slots: int
    limit: float
    decreases: int
    in_flight: int = 0
    share: int = 1  # slots each worker may keep using: the limit over the workers using it


class EndpointBudget:
    """One endpoint's concurrency (AIMD), requests and tokens per minute, for every worker."""

    def __init__(
        self,
        max_concurrent: int,
        *,
        adaptive: bool = True,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
    ) -> None:
        self.limiter = AdaptiveLimiter(max_concurrent, adaptive=adaptive)
        self.rpm = TokenBucket(requests_per_minute) if requests_per_minute else None
        self.tpm = TokenBucket(tokens_per_minute) if tokens_per_minute else None
        self.held: dict[str, int] = {}  # worker -> slots it holds now
        self.waiting: set[str] = set()  # workers waiting in ``lease`` now
        # shard prefix ("3:") -> the one worker alive for it ("" none): the calls of any other
        # (a dead attempt's, still queued here) get nothing and free nothing twice.
        self.alive: dict[str, str] = {}
        self.lease_calls = 0
        self.settle_calls = 0
        self.granted = 0
        self.overloaded = 0

    async def lease(self, want: int, report: Report) -> Grant:
        """Up to ``want`` slots (at least one, unless none frees up within ``LEASE_WAIT_S``)."""
        self.lease_calls += 1
        self._settle(report)
        if want <= 0:
            return self._grant(0)
        self.waiting.add(report.worker)
        try:
            await asyncio.wait_for(self.limiter.acquire(), timeout=LEASE_WAIT_S)
        except asyncio.TimeoutError:
            return self._grant(0)
        finally:
            self.waiting.discard(report.worker)
        if self._stale(report.worker):
            self.limiter.release()
            return self._grant(0)
        got = 1
        while got < want and self.limiter.try_acquire():
            got += 1
        # The per-minute budgets pace the grants; slots already taken count as in flight.
        if self.rpm is not None:
            await self.rpm.take(got)
        if self.tpm is not None:
            await self.tpm.take(0)  # wait until the tokens already used are paid back
        self.held[report.worker] = self.held.get(report.worker, 0) + got
        self.granted += got
        return self._grant(got)

    def settle(self, report: Report) -> Grant:
        """Take back freed slots and feed the outcomes into the limit (no slot granted)."""
        self.settle_calls += 1
        self._settle(report)
        return self._grant(0)

    def forget(self, prefix: str, keep: str = "") -> int:
        """Free every slot held by workers whose name starts with ``prefix`` but ``keep`` (dead
        attempts of a shard); from now on only ``keep`` may lease for that shard."""
        self.alive[prefix] = keep
        lost = 0
        for worker in [w for w in self.held if w.startswith(prefix) and w != keep]:
            n = self.held.pop(worker)
            for _ in range(n):
                self.limiter.release()
            lost += n
        return lost

    def stats(self) -> dict[str, Any]:
        """The figures ``metadata.json`` records under ``engine.limits``."""
        return {
            "max_concurrent": self.limiter.max_limit,
            "limit": round(self.limiter.limit, 2),
            "limit_decreases": self.limiter.decreases,
            "peak_in_flight": self.limiter.peak_in_flight,
            "in_flight": self.limiter.in_flight,
            "granted": self.granted,
            "overloaded_replies": self.overloaded,
            "lease_calls": self.lease_calls,
            "settle_calls": self.settle_calls,
        }

    def _stale(self, worker: str) -> bool:
        """A call of a shard's attempt that was forgotten (its worker died)."""
        prefix = worker.split(":", 1)[0] + ":"
        alive = self.alive.get(prefix)
        return alive is not None and alive != worker

    def _settle(self, report: Report) -> None:
        returned = min(report.returned, self.held.get(report.worker, 0))
        if returned:
            self.held[report.worker] -= returned
            for _ in range(returned):
                self.limiter.release()
        for overloaded in report.outcomes:
            self.overloaded += overloaded
            self.limiter.record(overloaded=overloaded)
        if report.tokens and self.tpm is not None:
            self.tpm.adjust(report.tokens)
        if report.pause_s > 0:
            self.limiter.pause_until(time.monotonic() + report.pause_s)

    def _grant(self, slots: int) -> Grant:
        active = len({w for w, n in self.held.items() if n > 0} | self.waiting)
        share = max(1, int(self.limiter.limit) // max(1, active))
        return Grant(
            slots, self.limiter.limit, self.limiter.decreases, self.limiter.in_flight, share
        )


class LeasedLimiter(AdaptiveLimiter):
    """A client's limiter whose slots are leased from the endpoint's global ``EndpointBudget``.

    Args:
        budget: the budget's Ray actor handle (anything whose methods have ``.remote``).
        worker: this worker's name, unique in the run (the budget counts its slots by it).
        max_limit: the endpoint's max_concurrent (the global limit starts there).
    """

    def __init__(self, budget: Any, *, worker: str, max_limit: int) -> None:
        super().__init__(max_limit, adaptive=False)
        self._budget = budget
        self._worker = worker
        self._free = 0  # leased, not yet used
        self._report = Report(worker)
        self._fetcher: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.lease_calls = 0
        self.lowest_limit = float(max_limit)  # the lowest global limit this worker was told
        # From the budget's last answer: this worker's share, and whether the endpoint was
        # within its limit (slots are used again only then).
        self._share = max_limit
        self._may_reuse = True

    async def acquire(self, *, first: bool = False) -> None:
        """Wait for a leased slot; ``first`` goes ahead of the queue (a retry)."""
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(fut)
        else:
            self._waiters.append(fut)
        self._fetch_soon()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def try_acquire(self) -> bool:
        if self._waiters or not self._free:
            return False
        self._free -= 1
        self._take()
        return True

    def release(self) -> None:
        self.in_flight -= 1
        if self._waiters and self._may_reuse and self.in_flight + self._free < self._share:
            # Straight to the next request: no round trip to the budget.
            self._free += 1
            self._hand_out()
            return
        self._report.returned += 1
        self._flush_soon()

    def record(self, *, overloaded: bool) -> None:
        self._report.outcomes.append(overloaded)
        self._flush_soon()

    def spent(self, tokens: int) -> None:
        self._report.tokens += tokens

    def pause_until(self, when: float) -> None:
        pause = when - time.monotonic()
        self._report.pause_s = max(self._report.pause_s, pause)
        self._flush_soon()

    async def aclose(self) -> None:
        """Give every slot back and send what is left to report (the shard is done)."""
        # A lease still on its way may yet be granted: wait for it (at most LEASE_WAIT_S), or
        # its slots would stay counted at the budget for the rest of the run.
        for task in (self._fetcher, self._flusher):
            if task is None or task.done():
                continue
            if self._waiters:  # nobody is left to use them: stop asking
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._send(give_free=True)

    def _take_report(self, *, give_free: bool) -> Report:
        report, self._report = self._report, Report(self._worker)
        if give_free and not self._waiters:
            report.returned += self._free
            self._free = 0
        return report

    def _fetch_soon(self) -> None:
        if self._fetcher is None or self._fetcher.done():
            self._fetcher = asyncio.get_running_loop().create_task(self._fetch())

    async def _fetch(self) -> None:
        while self._waiters:
            want = len(self._waiters) - self._free
            if want > 0:
                report = self._take_report(give_free=False)
                grant: Grant = await self._budget.lease.remote(want, report)
                self.lease_calls += 1
                self._seen(grant)
                self._free += grant.slots
            self._hand_out()
        if self._free:
            self._flush_soon()  # waiters gave up meanwhile: the slots go back

    def _hand_out(self) -> None:
        while self._waiters and self._free:
            fut = self._waiters.popleft()
            if fut.done():
                continue
            self._free -= 1
            self._take()
            fut.set_result(None)

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        # Until nothing is left: slots freed while a report was on its way go in the next one
        # (another worker may be waiting for them).
        while True:
            await asyncio.sleep(FLUSH_S)
            report = self._take_report(give_free=True)
            if report.empty():
                return
            self._seen(await self._budget.settle.remote(report))

    async def _send(self, *, give_free: bool) -> None:
        report = self._take_report(give_free=give_free)
        if not report.empty():
            self._seen(await self._budget.settle.remote(report))

    def _seen(self, grant: Grant) -> None:
        """Mirror the global limit (for ``usage_report``) and this worker's share of it."""
        self.limit = grant.limit
        self.lowest_limit = min(self.lowest_limit, grant.limit)
        self.decreases = grant.decreases
        self._share = grant.share
        self._may_reuse = grant.in_flight <= int(grant.limit)
