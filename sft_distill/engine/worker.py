"""One shard on one Ray worker: the normal stages on the shard's units, no dedup, no finalize.

``run_shard`` is what a Ray task runs. It builds a ``ShardPipeline`` (the pipeline itself, with
its steps up to the judged stream unchanged) over ``OUTPUT/shards/<k>/``: the directory's lock,
its own ``cache.sqlite3`` (a rerun pays nothing twice), its ``failures.jsonl``. The judged
samples go to ``samples.jsonl``, the counters and usage to ``shard.json``, and the ``done``
marker follows when no unit failed (a failed unit is retried by the next run, as locally).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.models import DistillConfig, EndpointConfig
from ..llm.cache import ResponseCache
from ..llm.run_usage import finish_invocation, whole_run
from ..outputs.run_dir import PARTIAL_RAW_FILE
from ..pipeline import DatasetDistillationPipeline, _Run
from ..selection.dedup.jaccard import JaccardDeduplicator
from ..sources.base import SampleSource
from ..stages.gates.base import Gate
from .budget import LeasedLimiter
from .shards import PID_FILE, SAMPLES_FILE, SIGNATURES_FILE, counts_dict, write_summary

# Latencies kept per endpoint in shard.json (the report's percentiles of the whole run).
LATENCY_SAMPLE = 2000


@dataclass
class ShardSpec:
    """Everything a worker needs to run shard ``index``; sent to the worker by Ray."""

    index: int
    count: int
    directory: Path
    config: DistillConfig
    source: SampleSource  # already restricted to this shard
    endpoints: dict[str, EndpointConfig]  # keys resolved, simulator URL applied
    simulator_url: str | None
    budgets: dict[str, Any]  # endpoint name -> its EndpointBudget actor
    strict: bool = False
    overwrite: bool = False
    repair: bool = False
    gates: Sequence[Gate] = ()


class ShardPipeline(DatasetDistillationPipeline):
    """The pipeline on one shard: generate, gate and judge; record; leave the rest to the driver."""

    def __init__(self, spec: ShardSpec) -> None:
        # Near-duplicates are resolved across every shard by the driver, not here; with
        # Jaccard dedup the shard sketches its samples as they come (the costly part) and
        # saves the index for the driver.
        jaccard = spec.config.enable_dedup and spec.config.effective_dedup_method == "jaccard"
        config = spec.config.model_copy(update={"enable_dedup": jaccard})
        super().__init__(
            config,
            show_progress=False,
            strict=spec.strict,
            overwrite=spec.overwrite,
            repair=spec.repair,
            gates=spec.gates,
        )
        self.spec = spec
        self.worker = worker_name(spec.index)
        self.limiters: dict[str, LeasedLimiter] = {}

    def _endpoints(self, simulator_url: str | None) -> dict[str, EndpointConfig]:
        return dict(self.spec.endpoints)

    def _limiter(self, name: str) -> LeasedLimiter | None:
        budget = self.spec.budgets.get(name)
        if budget is None:
            return None
        limiter = LeasedLimiter(
            budget, worker=self.worker, max_limit=self.spec.endpoints[name].max_concurrent
        )
        self.limiters[name] = limiter
        return limiter

    async def _run_claimed(
        self, run: _Run, cache: ResponseCache, endpoints: Mapping[str, EndpointConfig]
    ) -> Any:
        """Generate, gate and judge this shard; write its samples, summary and marker."""
        samples, signatures = run.out / SAMPLES_FILE, run.out / SIGNATURES_FILE
        for path in (samples, signatures):  # an earlier attempt's; rebuilt from the cache
            path.unlink(missing_ok=True)
        try:
            async with AsyncExitStack() as stack:
                collector = self._open_outputs(stack, run, cache)
                usage = await self._generate_and_judge(stack, run, cache, endpoints, collector)
                if isinstance(collector.dedup, JaccardDeduplicator):
                    await asyncio.to_thread(collector.dedup.save, signatures)
        finally:
            for limiter in self.limiters.values():
                await limiter.aclose()
        this = usage()
        whole = whole_run(cache, cache.invocation, this)
        (run.out / PARTIAL_RAW_FILE).replace(samples)
        summary = _summary(run, whole.usage, whole.latencies, self.limiters)
        finish_invocation(cache, cache.invocation, time.perf_counter() - run.t_start)
        write_summary(run.out, summary, done=run.failures.count == 0)
        return summary


def _summary(
    run: _Run,
    usage: dict[str, Any],
    latencies: Mapping[str, Any],
    limiters: Mapping[str, LeasedLimiter],
) -> dict[str, Any]:
    """What the driver needs of a finished shard (``shard.json``)."""
    stopped = run.failures.stopped
    return {
        "source_stats": counts_dict(run.source_stats),
        "judge_counts": counts_dict(run.judge_counts),
        "failures": run.failures.count,
        "stopped": None if stopped is None else {"endpoint": stopped.endpoint},
        "bad_examples": run.bad_examples,
        "slice_groups": run.slice_groups,
        "metadata_fields": sorted(run.metadata_fields),
        "usage": usage,
        "latencies": {name: list(v)[:LATENCY_SAMPLE] for name, v in latencies.items()},
        "lease_calls": {name: lim.lease_calls for name, lim in limiters.items()},
        "lowest_limit": {name: round(lim.lowest_limit, 2) for name, lim in limiters.items()},
        "gates": [g.name for g in run.gates],
        "source_counts": dict(getattr(run.source, "counts", None) or {}),
        "wall_s": round(time.perf_counter() - run.t_start, 3),
    }


def worker_name(index: int) -> str:
    """This process's name for shard ``index`` at the budgets: an attempt of its own."""
    return f"{index}:{os.getpid()}"


def run_shard(spec: ShardSpec) -> dict[str, Any]:
    """Run one shard to its end (in a Ray worker process); returns its ``shard.json``."""
    spec.directory.mkdir(parents=True, exist_ok=True)
    # Where the worker runs: what a test (or an operator) kills to stop this shard midway.
    (spec.directory / PID_FILE).write_text(f"{os.getpid()}\n", encoding="utf-8")
    _forget_earlier_attempts(spec)
    pipeline = ShardPipeline(spec)
    result: dict[str, Any] = asyncio.run(
        pipeline._run(spec.source, spec.directory, simulator_url=spec.simulator_url)
    )
    return result


def _forget_earlier_attempts(spec: ShardSpec) -> None:
    """Free the slots an earlier attempt of this shard held: Ray retries a shard only once
    its worker is dead, and a dead worker gives nothing back."""
    if not spec.budgets:
        return
    import ray

    me = worker_name(spec.index)
    ray.get([budget.forget.remote(f"{spec.index}:", me) for budget in spec.budgets.values()])
