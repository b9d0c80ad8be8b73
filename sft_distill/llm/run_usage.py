"""A run's usage over all its invocations (first run, resumes, reruns), from the cache's call log.

Each invocation of a run gets a number, kept in the response cache's ``meta`` table with its
start time and, once it finishes, its wall time. Every HTTP exchange is logged in the cache
with that number as it happens (``ResponseCache.record_call``), so calls, tokens, latencies and
busy time add up over the whole run even across a ``kill -9``. A different run taking over the
directory (``--overwrite``) starts a new count; ``--fresh`` deletes the cache and the log.
"""

from __future__ import annotations

import json
import time
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..models import Usage
from .cache import ResponseCache

__all__ = [
    "WholeRun",
    "busy_seconds",
    "finish_invocation",
    "restore_meta",
    "start_invocation",
    "whole_run",
]

_LAST = "invocations"  # number of the latest invocation in this directory
_FIRST = "run_first_invocation"  # first invocation of the run the directory holds now


# What each model's entry in ``usage.*.models`` counts.
_TOKEN_FIELDS = (
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "cached_prompt_tokens",
    "reasoning_tokens",
)
# The part of them that went through a Batch API (priced with the model's batch_discount).
_BATCH_FIELDS = (
    "batch_calls",
    "batch_prompt_tokens",
    "batch_completion_tokens",
    "batch_cached_prompt_tokens",
)


def _key(n: int) -> str:
    return f"invocation/{n}"


def start_invocation(cache: ResponseCache, *, new_run: bool) -> tuple[int, dict[str, str | None]]:
    """Number this invocation; returns it and the meta rows as they were (for ``restore_meta``).

    ``new_run``: the directory held no run, or another one this run replaces.
    """
    n = int(cache.get_meta(_LAST) or 0) + 1
    saved = {name: cache.get_meta(name) for name in (_LAST, _FIRST, _key(n))}
    cache.set_meta(_LAST, str(n))
    if new_run or cache.get_meta(_FIRST) is None:
        cache.set_meta(_FIRST, str(n))
    cache.set_meta(_key(n), json.dumps({"started": time.time(), "wall_s": None}))
    cache.invocation = n
    return n, saved


def finish_invocation(cache: ResponseCache, n: int, wall_s: float) -> None:
    """Record how long invocation ``n`` took (a killed one is timed from its logged calls)."""
    entry = json.loads(cache.get_meta(_key(n)) or "{}")
    entry["wall_s"] = round(wall_s, 3)
    cache.set_meta(_key(n), json.dumps(entry))


def restore_meta(cache: ResponseCache, saved: Mapping[str, str | None]) -> None:
    """Put meta rows back as they were (None: the row did not exist)."""
    for name, value in saved.items():
        if value is None:
            cache.delete_meta(name)
        else:
            cache.set_meta(name, value)


def busy_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals: the time at least one was running."""
    total = 0.0
    end = -float("inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


@dataclass
class _Endpoint:
    """Running totals of one endpoint's logged calls."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    spans: list[tuple[float, float]] = field(default_factory=list)
    this_spans: list[tuple[float, float]] = field(default_factory=list)
    models: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(
        self,
        model: str,
        prompt: int,
        completion: int,
        started: float,
        latency: float,
        cached: int = 0,
        reasoning: int = 0,
        batch: int = 0,
    ) -> None:
        self.calls += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cached_prompt_tokens += cached
        self.reasoning_tokens += reasoning
        self.latencies.append(latency)
        self.spans.append((started, started + latency))
        m = self.models.setdefault(model, dict.fromkeys(_TOKEN_FIELDS, 0))
        m["calls"] += 1
        m["prompt_tokens"] += prompt
        m["completion_tokens"] += completion
        m["cached_prompt_tokens"] += cached
        m["reasoning_tokens"] += reasoning
        if batch:
            for name in _BATCH_FIELDS:
                m.setdefault(name, 0)
            m["batch_calls"] += 1
            m["batch_prompt_tokens"] += prompt
            m["batch_completion_tokens"] += completion
            m["batch_cached_prompt_tokens"] += cached


@dataclass
class WholeRun:
    """Usage per endpoint (whole run, with ``this_invocation``), latencies, earlier wall time."""

    invocation: int
    invocations: int
    usage: dict[str, dict[str, Any]]
    latencies: dict[str, array[float]]
    earlier_wall_s: float

    def summary(self, wall_s: float) -> dict[str, Any]:
        """``metadata["whole_run"]``, given this invocation's wall time."""
        return {
            "invocations": self.invocations,
            "wall_s": round(self.earlier_wall_s + wall_s, 3),
        }


def whole_run(
    cache: ResponseCache, invocation: int, usage: Mapping[str, Mapping[str, Any]]
) -> WholeRun:
    """The run's figures so far: every logged call of this run, ``usage`` for this invocation.

    ``usage`` maps endpoint name to this invocation's figures (``LLMClient.usage_report()``).
    """
    first = int(cache.get_meta(_FIRST) or invocation)
    endpoints: dict[str, _Endpoint] = {}
    last_end: dict[int, float] = {}
    for inv, name, model, *numbers in cache.calls_since(first):
        started, latency = numbers[2], numbers[3]
        ep = endpoints.setdefault(name, _Endpoint())
        ep.add(model, *numbers)
        end = started + latency
        if inv == invocation:
            ep.this_spans.append((started, end))
        last_end[inv] = max(last_end.get(inv, end), end)
    earlier = 0.0
    for k in range(first, invocation):
        entry = json.loads(cache.get_meta(_key(k)) or "{}")
        if entry.get("wall_s") is not None:
            earlier += float(entry["wall_s"])
        elif k in last_end and entry.get("started") is not None:  # killed: up to its last call
            earlier += max(0.0, last_end[k] - float(entry["started"]))
    out: dict[str, dict[str, Any]] = {}
    for name in [*usage, *(n for n in endpoints if n not in usage)]:
        ep = endpoints.get(name, _Endpoint())
        mine = usage.get(name) or Usage(model=next(iter(ep.models), "?")).model_dump()
        out[name] = {
            "model": mine["model"],
            "calls": ep.calls,
            "prompt_tokens": ep.prompt_tokens,
            "completion_tokens": ep.completion_tokens,
            "cached_prompt_tokens": ep.cached_prompt_tokens,
            "reasoning_tokens": ep.reasoning_tokens,
            "latency_s_total": round(sum(ep.latencies), 6),
            "busy_s": round(busy_seconds(ep.spans), 6),
            "models": ep.models,
            "this_invocation": {
                **mine,
                "busy_s": round(busy_seconds(ep.this_spans), 6),
            },
        }
    return WholeRun(
        invocation=invocation,
        invocations=invocation - first + 1,
        usage=out,
        latencies={name: endpoints.get(name, _Endpoint()).latencies for name in out},
        earlier_wall_s=earlier,
    )
