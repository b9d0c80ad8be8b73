"""The driver of ``--engine ray``: shards out to Ray workers, then one merge into the run.

``judge_on_ray`` takes the place of the local generate-and-judge step in
``DatasetDistillationPipeline._run_claimed``: it starts (or joins) Ray, creates one
``EndpointBudget`` actor per endpoint, runs every unfinished shard as a Ray task (``workers`` at
a time) and then feeds every shard's judged samples, in shard order, to the run's own
``Collector``: the raw file, the index, the report and the deduplicator. Near-duplicates are
therefore resolved across all shards by the same code, and the run ends with the same finalize
as a local one; ``shards_whole_run`` gives that finalize the shards' usage.
"""

from __future__ import annotations

import asyncio
import logging
import os
from array import array
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from ..config.models import EndpointConfig
from ..errors import ConfigError, DistillError
from ..llm.cache import ResponseCache
from ..llm.run_usage import WholeRun, whole_run
from ..models import Failure, Usage
from ..outputs.failures import FAILURES_FILE
from ..selection.collect import Collector
from ..sources.jsonl import iter_jsonl, iter_scored
from . import require_ray
from .budget import EndpointBudget
from .shards import (
    SAMPLES_FILE,
    add_counts,
    is_done,
    merge_usage,
    read_summary,
    shard_count,
    shard_dir,
)
from .worker import ShardSpec, run_shard

if TYPE_CHECKING:
    from ..pipeline import DatasetDistillationPipeline, _Run

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 2


class ShardFailedError(DistillError):
    """A shard's worker died (after Ray's retries): finished shards are kept for the rerun."""


async def judge_on_ray(
    pipeline: DatasetDistillationPipeline,
    stack: AsyncExitStack,
    run: _Run,
    cache: ResponseCache,
    endpoints: Mapping[str, EndpointConfig],
    collector: Collector,
) -> Callable[[], dict[str, Any]]:
    """Run the unfinished shards on Ray, then stream every shard's samples into ``collector``.

    Returns what gives this invocation's usage per endpoint (of the shards run now).

    Raises:
        ConfigError: Ray is not installed, cannot be reached, or the mode has no shards.
        ShardFailedError: a worker died and Ray's retries did not finish its shard.
    """
    shard = getattr(run.source, "shard", None)
    if shard is None:
        raise ConfigError(
            f"--engine ray: the {run.source.kind} mode cannot be split into shards; "
            "use --engine local"
        )
    ray = require_ray()
    workers = pipeline.workers or DEFAULT_WORKERS
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    _start_ray(ray, stack, pipeline.address, workers)
    count = shard_count(run.out, pipeline.shards, workers, fresh=pipeline.fresh)
    run.gates = await pipeline._run_gates(run, cache)  # their names, for metadata
    budgets = _budgets(ray, stack, endpoints)
    resolved = _with_keys(endpoints)
    simulator_url = next(iter(resolved.values())).api_base if run.simulator else None
    pending = [k for k in range(count) if not is_done(run.out, k)]
    specs = [
        ShardSpec(
            index=k,
            count=count,
            directory=shard_dir(run.out, k),
            config=pipeline.config,
            source=shard(k, count),
            endpoints=resolved,
            simulator_url=simulator_url,
            budgets=budgets,
            strict=pipeline.strict,
            overwrite=pipeline.overwrite,
            repair=pipeline.repair,
            gates=pipeline.extra_gates,
        )
        for k in pending
    ]
    log.info("ray: %d of %d shards to run on %d workers", len(specs), count, workers)
    errors = await _run_shards(ray, specs, budgets, workers, pipeline.shard_retries)
    if errors:
        k, why = errors[0]
        raise ShardFailedError(
            f"shard {k} of {count} ({shard_dir(run.out, k)}) did not finish: {why}; "
            f"{count - len(errors)} shards are done - rerun the same command to resume"
        )
    limits = {name: await b.stats.remote() for name, b in budgets.items()}
    return _merge(run, collector, count, set(pending), workers, pipeline.address, limits)


def _start_ray(ray: Any, stack: AsyncExitStack, address: str | None, workers: int) -> None:
    """Join ``address``, or start a local Ray instance (shut down with the run)."""
    if ray.is_initialized():
        return  # the caller's own instance (a notebook, a test session): left running
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(
                num_cpus=max(workers, os.cpu_count() or 1),
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"--address {address}" if address else "a local Ray instance"
        raise ConfigError(f"{where}: cannot start Ray: {exc}") from None
    stack.callback(ray.shutdown)


def _budgets(
    ray: Any, stack: AsyncExitStack, endpoints: Mapping[str, EndpointConfig]
) -> dict[str, Any]:
    """One ``EndpointBudget`` actor per endpoint (freed with the run)."""
    actor = ray.remote(num_cpus=0, max_concurrency=1000)(EndpointBudget)
    budgets = {}
    for name, ep in endpoints.items():
        budgets[name] = actor.remote(
            ep.max_concurrent,
            adaptive=ep.adaptive_concurrency,
            requests_per_minute=ep.max_requests_per_minute,
            tokens_per_minute=ep.max_tokens_per_minute,
        )
    for handle in budgets.values():
        stack.callback(ray.kill, handle)
    return budgets


def _with_keys(endpoints: Mapping[str, EndpointConfig]) -> dict[str, EndpointConfig]:
    """Endpoints with keys read from the driver's environment (workers may not have it)."""
    out = {}
    for name, ep in endpoints.items():
        key = os.environ.get(ep.api_key_env) if ep.api_key is None and ep.api_key_env else None
        out[name] = ep.model_copy(update={"api_key": SecretStr(key)}) if key else ep
    return out


async def _run_shards(
    ray: Any,
    specs: list[ShardSpec],
    budgets: Mapping[str, Any],
    workers: int,
    retries: int,
) -> list[tuple[int, str]]:
    """Run the shards, ``workers`` at a time; returns (shard, why) of each that failed."""
    task = ray.remote(num_cpus=1, max_retries=retries)(run_shard)
    gate = asyncio.Semaphore(workers)
    errors: list[tuple[int, str]] = []

    async def one(spec: ShardSpec) -> None:
        async with gate:
            try:
                await task.remote(spec)
            except Exception as exc:  # a dead worker, or an error inside the shard
                errors.append((spec.index, _why(exc)))
                # Slots the dead worker held would be lost to the rest of the run.
                for budget in budgets.values():
                    await budget.forget.remote(f"{spec.index}:")

    await asyncio.gather(*(one(s) for s in specs))
    return sorted(errors)


def _why(exc: BaseException) -> str:
    """One line saying why a shard failed (a DistillError's own message when there is one)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, DistillError):
        return str(cause)
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")


def _merge(
    run: _Run,
    collector: Collector,
    count: int,
    ran_now: set[int],
    workers: int,
    address: str | None,
    limits: dict[str, Any],
) -> Callable[[], dict[str, Any]]:
    """Every shard's samples to ``collector`` in shard order; its counters into ``run``."""
    per_shard: dict[str, Any] = {}
    whole: list[dict[str, Any]] = []
    now: list[dict[str, Any]] = []
    latencies: dict[str, list[float]] = {}
    for k in range(count):
        directory = shard_dir(run.out, k)
        summary = read_summary(directory)
        for _, sample in iter_scored(directory / SAMPLES_FILE):
            run.scores.add(sample)
            collector.add(sample)
        add_counts(run.source_stats, summary["source_stats"])
        add_counts(run.judge_counts, summary["judge_counts"])
        run.bad_examples.extend(summary["bad_examples"][: 100 - len(run.bad_examples)])
        run.slice_groups.update(summary["slice_groups"])
        run.metadata_fields.update(summary["metadata_fields"])
        if k in ran_now and summary["failures"]:
            _copy_failures(run, directory / FAILURES_FILE)
        usage = summary["usage"]
        whole.append({n: {**u, "this_invocation": None} for n, u in usage.items()})
        if k in ran_now:
            now.append({n: u["this_invocation"] for n, u in usage.items()})
        for name, values in summary["latencies"].items():
            latencies.setdefault(name, []).extend(values)
        per_shard[str(k)] = {
            "ran_this_invocation": k in ran_now,
            "done": is_done(run.out, k),
            "slices": summary["source_stats"]["slices"],
            "samples_generated": summary["source_stats"]["samples_generated"],
            "samples_evaluated": summary["judge_counts"]["samples_evaluated"],
            "failures": summary["failures"],
            "calls": {n: u["calls"] for n, u in usage.items()},
            "lease_calls": summary.get("lease_calls", {}),
            "lowest_limit": summary.get("lowest_limit", {}),
            "wall_s": summary["wall_s"],
        }
    run.engine = {
        "name": "ray",
        "address": address or "local",
        "workers": workers,
        "shards": count,
        "per_shard": per_shard,
        "limits": limits,
    }
    run.shard_usage = (merge_usage(whole), latencies)
    this = merge_usage(now)
    for name, figures in this.items():  # concurrency is the global budget's, not a sum
        if name in limits:
            figures["peak_in_flight"] = limits[name]["peak_in_flight"]
            figures["concurrency_limit"] = limits[name]["limit"]
            figures["limit_decreases"] = limits[name]["limit_decreases"]
    return lambda: this


def _copy_failures(run: _Run, path: Path) -> None:
    """A shard's failures into the run's ``failures.jsonl`` (already scrubbed there)."""
    if not path.is_file():
        return
    for _, record in iter_jsonl(path):
        run.failures.add(Failure.model_validate(record))


def shards_whole_run(run: _Run, cache: ResponseCache, usage: dict[str, Any]) -> WholeRun:
    """The run's usage over all invocations of every shard; ``usage`` is this invocation's."""
    base = whole_run(cache, cache.invocation, {})  # the driver's invocations and wall time
    merged, latencies = run.shard_usage or ({}, {})
    for name, figures in merged.items():
        mine = usage.get(name)
        figures["this_invocation"] = mine or Usage(model=figures.get("model", "?")).model_dump()
    base.usage = merged
    base.latencies = {name: array("d", values) for name, values in latencies.items()}
    return base
