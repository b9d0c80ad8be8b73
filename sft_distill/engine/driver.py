"""The driver of ``--engine ray``: shards out to Ray workers, then one merge into the run.

``judge_on_ray`` takes the place of the local generate-and-judge step in
``DatasetDistillationPipeline._run_claimed``: it starts (or joins) Ray, creates one
``EndpointBudget`` actor per endpoint, runs every unfinished shard as a Ray task (``workers`` at
a time) and feeds each shard's judged samples, as soon as the shard is done, to the run's
own ``Collector`` (``merge``): the raw file, the index, the report and the deduplicator.
Near-duplicates are therefore resolved across all shards by the same code, and the run ends
with the same finalize as a local one; ``shards_whole_run`` gives that finalize the usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from array import array
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from ..config.models import EndpointConfig
from ..errors import ConfigError, DistillError
from ..llm.cache import ResponseCache
from ..llm.run_usage import WholeRun, whole_run
from ..models import Usage
from ..selection.collect import Collector
from . import require_ray
from .budget import EndpointBudget
from .merge import ShardMerge
from .shards import (
    is_done,
    shard_count,
    shard_dir,
)
from .worker import ShardSpec, run_shard

if TYPE_CHECKING:
    from ..pipeline import DatasetDistillationPipeline, _Run

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 2
# How long an interrupted run waits for its shards' workers to stop.
CANCEL_WAIT_S = 10.0
# Ray starts its workers at nice 15; here they do the run's work, and on a machine shared with
# anything else (the endpoints' own servers, say) they would lose the cores to it.
LOCAL_RAY_SYSTEM_CONFIG = {"worker_niceness": 0}


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
    ray = check_engine(run.source)
    batched = [name for name, ep in endpoints.items() if pipeline.config.batched(ep)]
    if batched:
        # Each shard would submit its own batches, outside the global budgets: not built yet.
        raise ConfigError(
            f"--engine ray does not send Batch API requests yet ({', '.join(batched)} would): "
            "drop --batch (or the endpoints' batch setting) or run without --engine ray"
        )
    shard = run.source.shard  # type: ignore[attr-defined]
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
    merge = ShardMerge(run, collector, ran_now=set(pending))
    lock = asyncio.Lock()

    async def merged(k: int) -> None:
        # Off the event loop (a shard may hold many samples), one shard at a time.
        async with lock:
            await asyncio.to_thread(merge.add, k)

    for k in range(count):  # finished by an earlier invocation
        if k not in merge.ran_now:
            await merged(k)
    # Each shard is merged as soon as it is done, while the others still run.
    errors = await _run_shards(ray, specs, budgets, workers, pipeline.shard_retries, merged)
    if errors:
        k, why = errors[0]
        raise ShardFailedError(
            f"shard {k} of {count} ({shard_dir(run.out, k)}) did not finish: {why}; "
            f"{count - len(errors)} shards are done - rerun the same command to resume"
        )
    limits = {name: await b.stats.remote() for name, b in budgets.items()}
    return merge.finish(workers=workers, address=pipeline.address, limits=limits)


def check_engine(source: Any) -> Any:
    """The ``ray`` module, once the source is known to split into shards.

    Raises:
        ConfigError: the mode has no shards, or Ray is not installed.
    """
    if getattr(source, "shard", None) is None:
        raise ConfigError(
            f"--engine ray: the {source.kind} mode cannot be split into shards; use --engine local"
        )
    return require_ray()


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
                _system_config=LOCAL_RAY_SYSTEM_CONFIG,
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
    on_done: Callable[[int], Awaitable[None]],
) -> list[tuple[int, str]]:
    """Run the shards, ``workers`` at a time, ``on_done`` each as it finishes; returns
    (shard, why) of each that failed."""
    task = ray.remote(num_cpus=1, max_retries=retries)(run_shard)
    gate = asyncio.Semaphore(workers)
    errors: list[tuple[int, str]] = []

    async def one(spec: ShardSpec) -> None:
        async with gate:
            ref = task.remote(spec)
            try:
                await ref
            except asyncio.CancelledError:
                # The run was interrupted: stop the shard too (its cache keeps what it has),
                # and wait until its worker is gone, so a rerun finds its directory unlocked.
                ray.cancel(ref, force=True)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(ref.future()), CANCEL_WAIT_S)
                raise
            except Exception as exc:  # a dead worker, or an error inside the shard
                errors.append((spec.index, _why(exc)))
                # Slots the dead worker held would be lost to the rest of the run.
                for budget in budgets.values():
                    await budget.forget.remote(f"{spec.index}:")
                return
        await on_done(spec.index)

    await asyncio.gather(*(one(s) for s in specs))
    return sorted(errors)


def _why(exc: BaseException) -> str:
    """One line saying why a shard failed (a DistillError's own message when there is one)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, DistillError):
        return str(cause)
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")


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
