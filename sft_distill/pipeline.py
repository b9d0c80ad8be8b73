"""``DatasetDistillationPipeline``: read -> generate -> gates -> judge -> select -> write, streamed.

``_run_claimed`` is the list of steps; each step is a method below it, and the work of each is
in its folder: ``sources`` (read, generate), ``stages`` (gates, judge), ``selection`` (collect,
dedup, finalize) and ``outputs`` (files, report, metadata).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from tqdm.auto import tqdm

from .config.merging import build_config
from .config.models import DistillConfig, EndpointConfig, display_url
from .errors import ConfigError, EndpointStoppedError, InputError
from .llm.batch import BatchRunner, BatchSettings
from .llm.cache import ResponseCache
from .llm.client import LLMClient
from .llm.run_usage import WholeRun, finish_invocation, whole_run
from .models import Sample, ScoredSample, Slice, StageCounts
from .outputs.datasets import OutputOptions
from .outputs.failures import FAILURES_FILE, FailureLog
from .outputs.manifest import MANIFEST_FILE
from .outputs.metadata import METADATA_FILE, ScoreStats, run_metadata
from .outputs.report import RAW_FILE, ReportBuilder
from .outputs.run_dir import PARTIAL_RAW_FILE, TRAIN_FILE, VAL_FILE, owned_output_dir
from .outputs.writers import JsonlWriter, prepare_output_dir
from .selection.collect import Collector
from .selection.decontaminate import DecontaminationGate, Decontaminator
from .selection.dedup import make_deduplicator
from .selection.finalize import KeptSet, record_kept_set, write_kept_set
from .selection.splitting import group_value
from .sources.base import SampleSource, SourceContext, SourceCounts, report_bad_line
from .sources.reader import BadLine
from .sources.slices import SliceSource
from .stages.gates.base import Gate
from .stages.gates.pii import PiiGate
from .stages.gates.registry import build_gates, pii_first
from .stages.judge import JudgeCounts, evaluate_samples
from .text import plural

log = logging.getLogger(__name__)

# The fake key sent to the simulator; it must never be mistaken for a real one.
SIMULATOR_KEY = "sk-simulator-not-a-real-key"
RESULT_FILES = (TRAIN_FILE, VAL_FILE, RAW_FILE, METADATA_FILE, FAILURES_FILE, MANIFEST_FILE)


@dataclass
class RunResult:
    """What a run produced: where, the funnel counts and the metadata written."""

    output_dir: Path
    counts: StageCounts
    metadata: dict[str, Any]
    failures: int = 0
    paths: dict[str, Path] = field(default_factory=dict)
    quality_problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when no unit of work failed for good."""
        return self.failures == 0


@dataclass
class _Run:
    """One invocation's state: where it writes, what each stage counted, when each step ended."""

    out: Path
    source: SampleSource
    described: dict[str, Any]
    total_units: int | None
    simulator: bool
    opts: OutputOptions
    t_start: float
    source_stats: SourceCounts = field(default_factory=SourceCounts)
    judge_counts: JudgeCounts = field(default_factory=JudgeCounts)
    scores: ScoreStats = field(default_factory=ScoreStats)
    bad_examples: list[str] = field(default_factory=list)
    # slice id -> its balance_by value; the metadata fields seen (named when none matches)
    slice_groups: dict[str, str | None] = field(default_factory=dict)
    metadata_fields: set[str] = field(default_factory=set)
    times: dict[str, float] = field(default_factory=dict)
    failures: FailureLog = field(init=False)  # opened with failures.jsonl
    gates: list[Gate] = field(default_factory=list)  # this run's, decontamination included
    decontaminator: Decontaminator | None = None
    consumer: asyncio.Task[None] | None = None  # the streaming step, which a stop ends
    engine: dict[str, Any] | None = None  # --engine ray: workers, shards, global limits
    shard_usage: Any = None  # --engine ray: the shards' usage, merged (engine.driver)

    def mark(self, step: str) -> None:
        self.times[step] = time.perf_counter()

    def timings(self) -> dict[str, float]:
        """Seconds per step of this invocation, for ``metadata.json``."""
        t = {"start": self.t_start, **self.times}
        return {
            "generate_and_evaluate": round(t["generated"] - t["start"], 3),
            "dedup": round(t["deduped"] - t["generated"], 3),
            "close_clients": round(t["closed"] - t["deduped"], 3),
            "write_outputs": round(t["written"] - t["closed"], 3),
            "total": round(t["written"] - t["start"], 3),
        }


class DatasetDistillationPipeline:
    """The whole knowledge-slice -> SFT pipeline.

    Args:
        config: a ``DistillConfig``, or a dict merged over the defaults, or None for defaults.
        embed_fn: ``texts -> np.ndarray`` (sync or async) to deduplicate by embedding cosine.
        show_progress: draw tqdm bars on stderr.
        strict: fail on the first bad input line instead of skipping it.
        fresh: discard the output directory's cache and outputs and start over.
        overwrite: let this run replace another run's outputs in the output directory, reusing
            its cached replies where the requests are the same.
        repair: rebuild a damaged response cache from its readable replies before the run.
        gates: extra quality gates (objects with ``name`` and async ``check(sample)``).
        engine: ``"local"`` (this process) or ``"ray"``: shards of the input run on Ray workers
            with global endpoint limits, then one merge and the same finalize (``engine``).
        workers: Ray workers running shards at once (default 2).
        address: the Ray cluster to join (``auto``, ``ray://host:10001``); default a local one.
        shards: how many shards the input is cut into (default: the count recorded in the
            output directory, else ``workers``).
    """

    def __init__(
        self,
        config: DistillConfig | Mapping[str, Any] | None = None,
        *,
        embed_fn: Callable[..., Any] | None = None,
        show_progress: bool = True,
        strict: bool = False,
        fresh: bool = False,
        overwrite: bool = False,
        gates: Sequence[Gate] | None = None,
        repair: bool = False,
        engine: str = "local",
        workers: int | None = None,
        address: str | None = None,
        shards: int | None = None,
    ) -> None:
        if engine not in ("local", "ray"):
            raise ConfigError(f"engine must be 'local' or 'ray', got {engine!r}")
        self.engine = engine
        self.workers = workers
        self.address = address
        self.shards = shards
        self.shard_retries = 2  # Ray retries of a shard whose worker died
        self.extra_gates = list(gates or [])
        if isinstance(config, DistillConfig):
            if embed_fn is not None:
                config = config.model_copy(update={"embed_fn": embed_fn})
            self.config = config
        else:
            self.config = build_config(config or {}, embed_fn=embed_fn)
        self.show_progress = show_progress
        self.strict = strict
        self.fresh = fresh
        self.overwrite = overwrite
        self.repair = repair
        # Gates given here run after those configured under "gates" in the config; a pii gate
        # given here replaces the configured one, and runs first.
        configured = build_gates(self.config)
        if any(isinstance(g, PiiGate) for g in gates or ()):
            configured = [g for g in configured if not isinstance(g, PiiGate)]
        self.gates: list[Gate] = pii_first([*configured, *(gates or [])])
        self.pii: PiiGate | None = next((g for g in self.gates if isinstance(g, PiiGate)), None)
        self._decontaminator: Decontaminator | None = None

    def run_sync(self, input_path: str | os.PathLike[str], **kwargs: Any) -> RunResult:
        """Blocking ``run`` for scripts; also works when an event loop is already running."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(input_path, **kwargs))
        # Inside Jupyter's loop: run on a private loop in a worker thread. An interrupt cancels
        # that run (instead of waiting for it to finish while it keeps calling the APIs).
        state: dict[str, Any] = {}

        def worker() -> RunResult:
            loop = asyncio.new_event_loop()
            state["loop"] = loop
            state["task"] = loop.create_task(self.run(input_path, **kwargs))
            try:
                return loop.run_until_complete(state["task"])
            finally:
                loop.close()

        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(worker)
            try:
                return future.result()
            except KeyboardInterrupt:
                if "task" in state:
                    state["loop"].call_soon_threadsafe(state["task"].cancel)
                raise

    async def run(
        self,
        input_path: str | os.PathLike[str] | None = None,
        *,
        source: SampleSource | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        dry_run: bool = False,
    ) -> RunResult:
        """Run the pipeline over a JSONL file of slices (or any ``source``) and write the dataset.

        With ``dry_run`` the built-in simulator is started on a free loopback port and every
        endpoint is pointed at it (no API key, no network).

        Raises:
            InputError: the input cannot be read or holds no usable slice.
            OutputError: the output directory cannot be written.
            ConfigError: a bad setting.
        """
        if source is None:
            if input_path is None:
                raise TypeError("run() needs input_path or source")
            source = SliceSource(input_path)
        if dry_run:
            from .simulator.defects import dry_run_defect_rate
            from .simulator.server import Simulator, SimulatorConfig

            sim_cfg = SimulatorConfig(latency_ms=2.0, messy=True, defect_rate=dry_run_defect_rate())
            async with Simulator(sim_cfg) as sim:
                return await self._run(source, output_dir, simulator_url=sim.url)
        return await self._run(source, output_dir, simulator_url=None)

    def _endpoints(self, simulator_url: str | None) -> dict[str, EndpointConfig]:
        eps = self.config.endpoints()
        if simulator_url is None:
            for name, ep in eps.items():
                if ep.api_key is None and ep.api_key_env and not os.environ.get(ep.api_key_env):
                    # Every call would get a 401; say so once, before anything is sent.
                    raise ConfigError(
                        f"{name}: environment variable {ep.api_key_env} (api_key_env) is not "
                        "set; export it, set api_key, or use --dry-run"
                    )
            return eps
        fake = {"api_base": simulator_url, "api_key": SecretStr(SIMULATOR_KEY), "api_key_env": None}
        return {name: ep.model_copy(update=fake) for name, ep in eps.items()}

    async def _run(
        self,
        source: SampleSource,
        output_dir: str | os.PathLike[str] | None,
        *,
        simulator_url: str | None,
    ) -> RunResult:
        t_start = time.perf_counter()
        endpoints = self._endpoints(simulator_url)
        if self.engine == "ray":  # before the output directory is touched
            from .engine.driver import check_engine

            check_engine(source)
        total_units = source.total()  # also raises InputError for a missing or unreadable input
        # Eval sets are read and indexed before the output directory is touched: a bad one
        # leaves nothing behind.
        decontaminator = await self._decontamination()
        out = prepare_output_dir(Path(output_dir or self.config.output_dir))
        described = source.describe()
        run = _Run(
            out,
            source,
            described,
            total_units,
            simulator=simulator_url is not None,
            opts=OutputOptions.from_config(self.config),
            t_start=t_start,
            decontaminator=decontaminator,
        )
        identity = {**described, "simulator": run.simulator}
        with owned_output_dir(
            out, identity, fresh=self.fresh, overwrite=self.overwrite, repair=self.repair
        ) as cache:
            return await self._run_claimed(run, cache, endpoints)

    async def _run_claimed(
        self, run: _Run, cache: ResponseCache, endpoints: Mapping[str, EndpointConfig]
    ) -> RunResult:
        """The run proper, once the output directory is locked and claimed: the steps in order."""
        async with AsyncExitStack() as stack:
            collector = self._open_outputs(stack, run, cache)
            if self.engine == "ray":
                from .engine.driver import judge_on_ray

                usage = await judge_on_ray(self, stack, run, cache, endpoints, collector)
            else:
                usage = await self._generate_and_judge(stack, run, cache, endpoints, collector)
            run.mark("generated")
            duplicates = await collector.duplicates()
            run.mark("deduped")
        self._refuse_empty(run)
        run.mark("closed")
        # Off the event loop, so a signal during the final writes is still handled at once.
        metadata, problems, counts, kept = await asyncio.to_thread(
            self._finalize, run, cache, collector, duplicates, usage(), endpoints
        )
        finish_invocation(cache, cache.invocation, time.perf_counter() - run.t_start)
        log.info(
            "done: %d slices, %d samples, %d passed, %d after dedup, %d kept (%d train / %d val),"
            " %d failures",
            counts.slices,
            counts.samples_generated,
            counts.passed_thresholds,
            kept,
            counts.train + counts.val,
            counts.train,
            counts.val,
            run.failures.count,
        )
        return RunResult(
            output_dir=run.out,
            counts=counts,
            metadata=metadata,
            failures=run.failures.count,
            paths={name: run.out / name for name in RESULT_FILES},
            quality_problems=problems,
        )

    async def _generate_and_judge(
        self,
        stack: AsyncExitStack,
        run: _Run,
        cache: ResponseCache,
        endpoints: Mapping[str, EndpointConfig],
        collector: Collector,
    ) -> Callable[[], dict[str, Any]]:
        """Source, gates and judges in this process, every judged sample to ``collector``.

        Returns what gives each endpoint's usage of this invocation once the clients are closed.
        """
        run.gates = await self._run_gates(run, cache)
        teacher, judges = await self._open_clients(stack, run, cache, endpoints)
        samples = run.source.samples(self._source_context(stack, run, teacher))
        judged = await stack.enter_async_context(aclosing(self._judge(samples, judges, run)))
        await self._stream(judged, collector, run)
        clients = {"generator": teacher, **judges}
        return lambda: {n: c.usage_report() for n, c in clients.items()}

    async def _decontamination(self) -> Decontaminator | None:
        """The eval sets of ``decontaminate``, read and indexed once per pipeline (in a thread)."""
        if not self.config.decontaminate:
            return None
        if self._decontaminator is None:
            self._decontaminator = await asyncio.to_thread(
                lambda: Decontaminator.from_config(self.config).build()
            )
        return self._decontaminator

    async def _run_gates(self, run: _Run, cache: ResponseCache) -> list[Gate]:
        """The gates of this run: pii first, then decontamination (cheap, and it saves every
        judge's call on a contaminated sample), then the configured ones."""
        decontaminator = run.decontaminator
        if decontaminator is None:
            return list(self.gates)
        await decontaminator.prepare(cache)  # the eval questions' embeddings, cached
        first = 0
        while first < len(self.gates) and isinstance(self.gates[first], PiiGate):
            first += 1
        return [*self.gates[:first], DecontaminationGate(decontaminator), *self.gates[first:]]

    def _open_outputs(self, stack: AsyncExitStack, run: _Run, cache: ResponseCache) -> Collector:
        """``failures.jsonl``, the streamed raw file and the deduplicator, closed with the run."""
        cfg = self.config
        # Texts for exact verification spill to a temporary file in the output directory;
        # embeddings are cached beside the replies, so a rerun does not embed again.
        dedup = make_deduplicator(cfg, cache=cache, spill_dir=run.out) if cfg.enable_dedup else None
        if dedup is not None:
            stack.callback(dedup.close)
        run.failures = FailureLog(
            stack.enter_context(JsonlWriter(run.out / FAILURES_FILE)), scrub=self._text_scrubber()
        )
        # Rebuilt from the response cache by a rerun, and read only after it is closed.
        raw = stack.enter_context(JsonlWriter(run.out / PARTIAL_RAW_FILE, flush_lines=False))
        # The report's figures are gathered as samples stream by: no second pass at the end.
        report = ReportBuilder.from_metadata({"config": cfg.public_dict()})
        return Collector(raw, report, dedup)

    async def _open_clients(
        self,
        stack: AsyncExitStack,
        run: _Run,
        cache: ResponseCache,
        endpoints: Mapping[str, EndpointConfig],
    ) -> tuple[LLMClient, dict[str, LLMClient]]:
        """The teacher's client and each judge's, closed with the run (and the Batch API runner
        of the endpoints that batch, which stops polling first)."""
        namespace = "simulator" if run.simulator else None
        runner = self._batch_runner(cache, endpoints)
        clients = {}
        for name, ep in endpoints.items():
            client = LLMClient(
                name,
                ep,
                cache=cache,
                cache_namespace=namespace,
                on_stop=self._on_stop(run),
                batch=runner if runner is not None and self.config.batched(ep) else None,
                limiter=self._limiter(name),
            )
            clients[name] = await stack.enter_async_context(client)
        if runner is not None:

            async def close_runner(exc_type: Any, *_: Any) -> bool:
                await runner.aclose(clean=exc_type is None)
                return False

            stack.push_async_exit(close_runner)
            await runner.start(list(clients.values()))
        teacher = clients.pop("generator")
        return teacher, clients

    def _batch_runner(
        self, cache: ResponseCache, endpoints: Mapping[str, EndpointConfig]
    ) -> BatchRunner | None:
        """The run's Batch API runner, when an endpoint batches."""
        cfg = self.config
        if not any(cfg.batched(ep) for ep in endpoints.values()):
            return None
        settings = BatchSettings(
            poll_s=cfg.batch_poll_s,
            collect_s=cfg.batch_collect_s,
            max_requests=cfg.batch_max_requests,
            timeout_s=cfg.batch_timeout_s,
            show_progress=self.show_progress,
        )
        return BatchRunner(cache, settings)

    def _limiter(self, name: str) -> Any:
        """The shared limiter of endpoint ``name`` (a Ray shard's), or None: the client's own."""
        return None

    def _on_stop(self, run: _Run) -> Callable[[EndpointStoppedError], None]:
        def on_stop(err: EndpointStoppedError) -> None:
            # An endpoint failing every call stops the run: intake ends, calls in flight are
            # abandoned (a rerun sends them), every reply already received is kept.
            if run.failures.stop(err) and run.consumer is not None:
                run.consumer.cancel()

        return on_stop

    def _source_context(
        self, stack: AsyncExitStack, run: _Run, teacher: LLMClient
    ) -> SourceContext:
        """What the source gets: settings, teacher, its counters, the intake progress bar."""
        bar = self._bar(stack, run.total_units, "generate", run.source.unit)

        def on_slice(s: Slice) -> None:
            if run.opts.balance_by:
                run.slice_groups[s.id] = group_value(s.metadata, run.opts.balance_by)
                if len(run.metadata_fields) < 100:
                    run.metadata_fields.update(s.metadata)

        def on_bad_line(bad: BadLine) -> None:
            report_bad_line(ctx, bad)
            log.warning("%s %s", "skipped" if bad.skipped else "fixed", bad)

        ctx = SourceContext(
            config=self.config,
            teacher=teacher,
            stats=run.source_stats,
            on_failure=run.failures.add,
            on_bad_line=on_bad_line,
            progress=bar.update,
            on_slice=on_slice,
            strict=self.strict,
            bad_examples=run.bad_examples,
            output_dir=run.out,
            scrub_text=self._slice_scrubber(),
        )
        return ctx

    def _slice_scrubber(self) -> Callable[[str], tuple[str, dict[str, int]]] | None:
        """With ``pii_scrub_slices``: what replaces a slice's personal data (the pii gate's
        settings, or the defaults when the gate is off)."""
        if not self.config.pii_scrub_slices:
            return None
        return (self.pii or PiiGate()).scrub

    def _text_scrubber(self) -> Callable[[str], str] | None:
        """What replaces personal data in other text the run writes (failure details)."""
        gate = self.pii
        if gate is None or gate.mode == "tag":
            return None
        return lambda text: gate.scrub(text)[0]

    def _judge(
        self, samples: AsyncIterator[Sample], judges: Mapping[str, LLMClient], run: _Run
    ) -> AsyncIterator[ScoredSample]:
        """Gates, then every judge: each sample scored as soon as it is generated."""
        return evaluate_samples(
            samples,
            judges,
            self.config,
            counts=run.judge_counts,
            on_failure=run.failures.add,
            gates=run.gates,
        )

    async def _stream(
        self, judged: AsyncIterator[ScoredSample], collector: Collector, run: _Run
    ) -> None:
        """Every judged sample to the raw file, the index, the report and the deduplicator."""
        stack = AsyncExitStack()
        bar = self._bar(stack, 0, "evaluate", "sample")

        async def consume() -> None:
            async for sample in judged:
                run.scores.add(sample)
                collector.add(sample)  # judged under the config's settings
                bar.total = run.source_stats.samples_generated
                bar.update(1)

        # In a task of its own, so that a stopped endpoint can end it (on_stop) while it
        # waits for the next sample, and the run still writes what it has.
        run.consumer = asyncio.create_task(consume())
        async with stack:
            try:
                await run.consumer
            except asyncio.CancelledError:
                if run.failures.stopped is None or _cancelling():
                    raise  # interrupted (a signal), not stopped by an endpoint

    def _bar(self, stack: AsyncExitStack, total: int | None, desc: str, unit: str) -> tqdm:
        """A progress bar on stderr (off without ``show_progress`` or a terminal)."""
        bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            disable=None if self.show_progress else True,
            dynamic_ncols=True,
        )
        stack.callback(bar.close)
        return bar

    def _refuse_empty(self, run: _Run) -> None:
        """Nothing at all and no call failed: the input holds nothing usable.

        When calls failed (a dead teacher that never expanded a topic), it is a failed run
        (exit 3), not bad input.

        Raises:
            InputError: naming the input and why its lines were refused.
        """
        counts = run.source_stats
        if counts.slices or counts.samples_generated or run.failures.count:
            return
        (run.out / PARTIAL_RAW_FILE).unlink(missing_ok=True)
        why = ", ".join(f"{k} {v}" for k, v in sorted(counts.bad_line_reasons.items()))
        hint = ""
        if counts.bad_line_reasons.get("invalid_utf8", 0) == counts.bad_lines > 0:
            hint = "; the file is not UTF-8 (convert it, e.g. iconv -f GBK -t UTF-8)"
        raise InputError(
            f"{run.described.get('input')}: no usable {run.source.unit} "
            f"({plural(counts.bad_lines, 'bad line')}: {why or 'none'}){hint}"
        )

    def _finalize(
        self,
        run: _Run,
        cache: ResponseCache,
        collector: Collector,
        duplicates: dict[str, str],
        usage: dict[str, Any],
        endpoints: Mapping[str, EndpointConfig],
    ) -> tuple[dict[str, Any], list[str], StageCounts, int]:
        """Split, write every output, the report and metadata (in a worker thread)."""
        whole = self._whole_run(run, cache, usage)
        kept_set = write_kept_set(
            run.out,
            run.out / PARTIAL_RAW_FILE,
            collector.index,
            collector.report,
            duplicates,
            opts=run.opts,
            groups=run.slice_groups,
            fields=run.metadata_fields,
        )
        counts = StageCounts.assemble(run.source_stats, run.judge_counts, kept_set.funnel())
        run.mark("written")
        metadata = self._metadata(run, kept_set, whole, endpoints)
        problems = record_kept_set(
            run.out,
            kept_set,
            collector.report,
            config=self.config,
            opts=run.opts,
            counts=counts,
            metadata=metadata,
            groups=run.slice_groups,
            latencies=whole.latencies,
        )
        return metadata, problems, counts, kept_set.kept

    def _whole_run(self, run: _Run, cache: ResponseCache, usage: dict[str, Any]) -> WholeRun:
        """Every call of the run so far, this invocation's included (all are finished now)."""
        if self.engine == "ray":
            from .engine.driver import shards_whole_run

            return shards_whole_run(run, cache, usage)
        return whole_run(cache, cache.invocation, usage)

    def _metadata(
        self,
        run: _Run,
        kept_set: KeptSet,
        whole: WholeRun,
        endpoints: Mapping[str, EndpointConfig],
    ) -> dict[str, Any]:
        """What the run itself knows; ``record_kept_set`` adds what follows from the kept set."""
        metadata = run_metadata(
            described=run.described,
            lines=run.total_units,
            simulator=run.simulator,
            bad_lines=run.bad_examples,
            failures=run.failures,
            scores=run.scores,
            usage=whole.usage,
            timings=run.timings(),
            whole_run=whole.summary(run.times["written"] - run.t_start),
            gates=[g.name for g in run.gates],
        )
        if run.decontaminator is not None:
            metadata["decontamination"] = run.decontaminator.describe()
        if run.engine is not None:
            metadata["engine"] = run.engine
        err = run.failures.stopped
        if err is not None:
            metadata["stopped"] = {
                "endpoint": err.endpoint,
                "model": err.model,
                "url": display_url(endpoints[err.endpoint].api_base),
                "consecutive_failures": err.attempts,
                "reason": err.summary,
            }
        totals = getattr(run.source_stats, "article_totals", None)
        if totals:  # filled in from the kept set by record_kept_set (quality.coverage)
            slices = {sid: {"total": n} for sid, n in sorted(totals.items())}
            metadata.setdefault("quality", {})["coverage"] = {"slices": slices}
        metadata["pii"] = {
            "mode": self.pii.mode if self.pii is not None else "off",
            "scrub_slices": self.config.pii_scrub_slices,
            "slices": {
                "with_pii": run.source_stats.slices_with_pii,
                "found": dict(sorted(run.source_stats.pii_in_slices.items())),
            },
        }
        source_counts = getattr(run.source, "counts", None)
        if source_counts:  # e.g. topic expansions or rephrasings dropped before any call
            metadata["source_counts"] = dict(source_counts)
        source_prompt = getattr(run.source, "prompt_version", None)
        if source_prompt:
            metadata["prompt_versions"]["source"] = source_prompt
        return metadata


def _cancelling() -> bool:
    """Whether the current task itself was asked to stop (Python 3.11+; assumed not before)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False
