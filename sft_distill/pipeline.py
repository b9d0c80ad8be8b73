"""``DatasetDistillationPipeline``: read -> generate -> evaluate -> filter -> write, streamed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from tqdm.auto import tqdm

from . import __version__
from .config.defaults import DIMENSIONS
from .config.merging import build_config
from .config.models import DistillConfig, EndpointConfig, display_url
from .errors import ConfigError, EndpointStoppedError, InputError, OutputError
from .llm.cache import CACHE_FILENAME, ResponseCache
from .llm.client import LLMClient
from .llm.prompts import EVAL_PROMPT_VERSION, GEN_PROMPT_VERSION
from .llm.run_usage import finish_invocation, restore_meta, start_invocation, whole_run
from .models import Failure, ScoredSample, Slice, StageCounts
from .outputs.datasets import OutputOptions
from .outputs.formats import DATASET_INFO_FILE, all_split_file_names
from .outputs.manifest import MANIFEST_FILE
from .outputs.report import REPORT_FILE, ReportBuilder
from .outputs.writers import JsonlWriter, lock_output_dir, prepare_output_dir
from .selection.dedup import make_deduplicator
from .selection.finalize import METADATA_FILE, record_kept_set, write_kept_set
from .selection.run_index import RunIndex
from .selection.splitting import group_value
from .sources.base import SampleSource, SourceContext, report_bad_line
from .sources.reader import BadLine
from .sources.slices import SliceSource
from .stages.gates.base import Gate
from .stages.gates.registry import build_gates
from .stages.judge import evaluate_samples
from .text import plural

log = logging.getLogger(__name__)

TRAIN_FILE = "train.jsonl"
VAL_FILE = "val.jsonl"
RAW_FILE = "generated_raw.jsonl"
FAILURES_FILE = "failures.jsonl"
PARTIAL_RAW_FILE = RAW_FILE + ".partial"  # the raw file in completion order, while streaming
OUTPUT_FILES = (
    *sorted(all_split_file_names()),
    RAW_FILE,
    METADATA_FILE,
    FAILURES_FILE,
    DATASET_INFO_FILE,
    REPORT_FILE,
    MANIFEST_FILE,
    CACHE_FILENAME,
)
# Everything a run may leave in its output directory (what --fresh deletes).
RUN_FILES = (*OUTPUT_FILES, PARTIAL_RAW_FILE, CACHE_FILENAME + "-wal", CACHE_FILENAME + "-shm")

# The fake key sent to the simulator; it must never be mistaken for a real one.
SIMULATOR_KEY = "sk-simulator-not-a-real-key"


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


def same_run(previous: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether two run identities are one run: same content and mode, wherever the input lives.

    ``input`` (the path, or a description) is for messages only: the same bytes moved to
    another path, mounted elsewhere or in another checkout still resume.
    """

    def key(identity: dict[str, Any]) -> dict[str, Any]:
        k = {name: value for name, value in identity.items() if name != "input"}
        k.setdefault("kind", "slices")  # identities written before modes existed
        return k

    return key(previous) == key(current)


class _ScoreStats:
    """Running means of every evaluator's scores per dimension."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.models: dict[str, str] = {}

    def add(self, sample: ScoredSample) -> None:
        for j in sample.judgements:
            if not j.ok:
                continue
            self.models[j.evaluator] = j.model
            for dim, score in j.scores.items():
                self.sums[j.evaluator][dim] += score
                self.counts[j.evaluator][dim] += 1
            if j.weighted_mean is not None:
                self.sums[j.evaluator]["weighted_mean"] += j.weighted_mean
                self.counts[j.evaluator]["weighted_mean"] += 1

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, sums in self.sums.items():
            counts = self.counts[name]
            dims = [*DIMENSIONS, "weighted_mean"]
            out[name] = {
                "model": self.models.get(name),
                "judged": counts.get("weighted_mean", 0),
                "mean": {d: round(sums[d] / counts[d], 3) for d in dims if counts.get(d)},
            }
        return out


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
    ) -> None:
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
        # Gates given here run after those configured under "gates" in the config.
        self.gates: list[Gate] = [*build_gates(self.config), *(gates or [])]

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
            from .simulator.server import Simulator, SimulatorConfig

            async with Simulator(SimulatorConfig(latency_ms=2.0, messy=True)) as sim:
                return await self._run(source, output_dir, simulator_url=sim.url)
        return await self._run(source, output_dir, simulator_url=None)

    def _endpoints(self, simulator_url: str | None) -> dict[str, EndpointConfig]:
        eps = self.config.endpoints()
        if simulator_url is None:
            return eps
        return {
            name: ep.model_copy(
                update={
                    "api_base": simulator_url,
                    "api_key": SecretStr(SIMULATOR_KEY),
                    "api_key_env": None,
                }
            )
            for name, ep in eps.items()
        }

    async def _run(
        self,
        source: SampleSource,
        output_dir: str | os.PathLike[str] | None,
        *,
        simulator_url: str | None,
    ) -> RunResult:
        cfg = self.config
        t_start = time.perf_counter()
        endpoints = self._endpoints(simulator_url)
        for name, ep in endpoints.items():
            if ep.api_key is None and ep.api_key_env and not os.environ.get(ep.api_key_env):
                # Every call would get a 401; say so once, before anything is sent.
                raise ConfigError(
                    f"{name}: environment variable {ep.api_key_env} (api_key_env) is not set; "
                    "export it, set api_key, or use --dry-run"
                )
        total_units = source.total()  # also raises InputError for a missing or unreadable input
        out = prepare_output_dir(Path(output_dir or cfg.output_dir))
        described = source.describe()
        identity = {**described, "simulator": simulator_url is not None}
        with lock_output_dir(out) as locked:
            if self.fresh:  # only once the lock is ours: never another job's cache or outputs
                for name in RUN_FILES:
                    (out / name).unlink(missing_ok=True)
            found = {name for name in RUN_FILES if (out / name).exists()}
            worked = False
            try:
                # Exclusive when locked: no other run can write to this cache meanwhile.
                with ResponseCache(
                    out / CACHE_FILENAME, exclusive=locked, repair=self.repair
                ) as cache:
                    undo = self._claim_output_dir(out, cache, identity)
                    try:
                        return await self._run_claimed(
                            source,
                            out,
                            cache,
                            endpoints,
                            total_units=total_units,
                            described=described,
                            simulator_url=simulator_url,
                            t_start=t_start,
                        )
                    except BaseException:
                        worked = cache.writes > 0 or cache.calls_logged > 0
                        if not worked:
                            undo()
                        raise
            except BaseException:
                if not worked:
                    # Failed before any work (empty or unusable input, refused directory...):
                    # leave the directory as it was, so the next run does not need --overwrite.
                    for name in RUN_FILES:
                        if name not in found:
                            (out / name).unlink(missing_ok=True)
                raise

    async def _run_claimed(
        self,
        source: SampleSource,
        out: Path,
        cache: ResponseCache,
        endpoints: Mapping[str, EndpointConfig],
        *,
        total_units: int | None,
        described: dict[str, Any],
        simulator_url: str | None,
        t_start: float,
    ) -> RunResult:
        """The run proper, once the output directory is locked and claimed."""
        cfg = self.config
        stats = StageCounts()
        bad_examples: list[str] = []
        failures = 0
        failure_causes: Counter[str] = Counter()
        stopped: list[EndpointStoppedError] = []  # the endpoint that stopped the run, if one did
        score_stats = _ScoreStats()
        opts = OutputOptions.from_config(cfg)
        slice_groups: dict[str, str | None] = {}
        metadata_fields: set[str] = set()  # named when balance_by matches none of them
        # id, slice, chunk, raw offset, score and passed of each sample: the final pass sorts
        # the raw file and splits the kept samples from this alone (about 40 bytes a sample).
        index = RunIndex()
        # The report's figures are gathered as samples stream by: no second pass at the end.
        report = ReportBuilder.from_metadata({"config": cfg.public_dict()})
        passed = 0
        namespace = "simulator" if simulator_url else None
        partial = out / PARTIAL_RAW_FILE

        async with AsyncExitStack() as stack:
            # Texts for exact verification spill to a temporary file in the output directory;
            # embeddings are cached beside the replies, so a rerun does not embed again.
            dedup = make_deduplicator(cfg, cache=cache, spill_dir=out) if cfg.enable_dedup else None
            if dedup is not None:
                stack.callback(dedup.close)
            fail_log = stack.enter_context(JsonlWriter(out / FAILURES_FILE))
            # Rebuilt from the response cache by a rerun, and read only after it is closed.
            raw_log = stack.enter_context(JsonlWriter(partial, flush_lines=False))

            def on_failure(failure: Failure) -> None:
                nonlocal failures
                failures += 1
                if failure.cause:
                    failure_causes[failure.cause] += 1
                fail_log.write(failure.model_dump(mode="json"))

            consumer: asyncio.Task[None] | None = None

            def on_stop(err: EndpointStoppedError) -> None:
                # An endpoint failing every call stops the run: intake ends, calls in flight are
                # abandoned (a rerun sends them), every reply already received is kept.
                if stopped:
                    return
                stopped.append(err)
                on_failure(Failure.from_error(err, "endpoint"))
                if consumer is not None:
                    consumer.cancel()

            gen_client = await stack.enter_async_context(
                LLMClient(
                    "generator",
                    endpoints["generator"],
                    cache=cache,
                    cache_namespace=namespace,
                    on_stop=on_stop,
                )
            )
            judges = {
                name: await stack.enter_async_context(
                    LLMClient(name, ep, cache=cache, cache_namespace=namespace, on_stop=on_stop)
                )
                for name, ep in endpoints.items()
                if name != "generator"
            }
            slice_bar = tqdm(
                total=total_units,
                desc="generate",
                unit=source.unit,
                disable=None if self.show_progress else True,
                dynamic_ncols=True,
            )
            eval_bar = tqdm(
                total=0,
                desc="evaluate",
                unit="sample",
                disable=None if self.show_progress else True,
                dynamic_ncols=True,
            )
            stack.callback(slice_bar.close)
            stack.callback(eval_bar.close)

            def on_slice(s: Slice) -> None:
                if opts.balance_by:
                    slice_groups[s.id] = group_value(s.metadata, opts.balance_by)
                    if len(metadata_fields) < 100:
                        metadata_fields.update(s.metadata)

            ctx = SourceContext(
                config=cfg,
                teacher=gen_client,
                stats=stats,
                on_failure=on_failure,
                on_bad_line=lambda bad: None,
                progress=slice_bar.update,
                on_slice=on_slice,
                strict=self.strict,
                bad_examples=bad_examples,
                output_dir=out,
            )

            def on_bad_line(bad: BadLine) -> None:
                report_bad_line(ctx, bad)
                log.warning("%s %s", "skipped" if bad.skipped else "fixed", bad)

            ctx.on_bad_line = on_bad_line
            samples = source.samples(ctx)
            # Closed explicitly before the clients and the cache, not whenever it is collected.
            scored = await stack.enter_async_context(
                aclosing(
                    evaluate_samples(
                        samples, judges, cfg, stats=stats, on_failure=on_failure, gates=self.gates
                    )
                )
            )

            async def consume() -> None:
                nonlocal passed
                async for sample in scored:
                    score_stats.add(sample)
                    report.add(sample, decided=True)  # judged under the config's settings
                    if sample.passed:
                        passed += 1
                        if dedup is not None:
                            dedup.add(sample.id, sample.text_for_dedup, sample.avg_score or 0.0)
                    offset = raw_log.write(sample.model_dump(mode="json"))
                    index.add(sample, offset)
                    eval_bar.total = stats.samples_generated
                    eval_bar.update(1)

            # In a task of its own, so that a stopped endpoint can end it (on_stop) while it
            # waits for the next sample, and the run still writes what it has.
            consumer = asyncio.create_task(consume())
            try:
                await consumer
            except asyncio.CancelledError:
                if not stopped or _cancelling():
                    raise  # interrupted (a signal), not stopped by an endpoint
            t_generated = time.perf_counter()
            duplicates: dict[str, str] = {}
            if dedup is not None and passed:
                duplicates = await dedup.aresolve()
            t_deduped = time.perf_counter()

        # Nothing at all and no call failed: the input holds nothing usable. When calls failed
        # (a dead teacher that never expanded a topic), it is a failed run (exit 3), not bad input.
        if stats.slices == 0 and stats.samples_generated == 0 and not failures:
            partial.unlink(missing_ok=True)
            why = ", ".join(f"{k} {v}" for k, v in sorted(stats.bad_line_reasons.items()))
            hint = ""
            if stats.bad_line_reasons.get("invalid_utf8", 0) == stats.bad_lines > 0:
                hint = "; the file is not UTF-8 (convert it, e.g. iconv -f GBK -t UTF-8)"
            raise InputError(
                f"{described.get('input')}: no usable {source.unit} "
                f"({plural(stats.bad_lines, 'bad line')}: {why or 'none'}){hint}"
            )

        t_closed = time.perf_counter()
        mine = {n: c.usage_report() for n, c in {"generator": gen_client, **judges}.items()}

        def conclude() -> tuple[dict[str, Any], list[str], int]:
            """Split, write every output, the report and metadata (in a worker thread)."""
            # Every call of the run so far, this invocation's included (all are finished now).
            whole = whole_run(cache, cache.invocation, mine)
            kept_set = write_kept_set(
                out,
                partial,
                index,
                report,
                duplicates,
                opts=opts,
                counts=stats,
                groups=slice_groups,
                fields=metadata_fields,
            )
            t_end = time.perf_counter()
            metadata: dict[str, Any] = {
                "package": "sft_distill",
                "version": __version__,
                "simulator": simulator_url is not None,
                "source": described,
                "input": {
                    "path": described.get("input"),
                    "lines": total_units,
                    "blake2b": described.get("input_blake2b"),
                },
                # None: filled in from the kept set by record_kept_set (the keys keep this order)
                "output_format": None,
                "output_formats": None,
                "prompt_versions": {
                    "generation": GEN_PROMPT_VERSION,
                    "evaluation": EVAL_PROMPT_VERSION,
                },
                "counts": None,
                "bad_lines": bad_examples,
                "failures": failures,
                "failure_causes": dict(sorted(failure_causes.items())),
                "scores": score_stats.summary(),
                # the whole run's calls and tokens; "this_invocation" for this command alone
                "usage": whole.usage,
                "dedup": None,
                "timings_s": {  # this invocation
                    "generate_and_evaluate": round(t_generated - t_start, 3),
                    "dedup": round(t_deduped - t_generated, 3),
                    "close_clients": round(t_closed - t_deduped, 3),
                    "write_outputs": round(t_end - t_closed, 3),
                    "total": round(t_end - t_start, 3),
                },
                "whole_run": whole.summary(t_end - t_start),
                "config": None,
                "quality_gates": {"gates": [g.name for g in self.gates]},
            }
            if stopped:
                err = stopped[0]
                metadata["stopped"] = {
                    "endpoint": err.endpoint,
                    "model": err.model,
                    "url": display_url(endpoints[err.endpoint].api_base),
                    "consecutive_failures": err.attempts,
                    "reason": err.summary,
                }
            source_counts = getattr(source, "counts", None)
            if source_counts:  # e.g. topic expansions or rephrasings dropped before any call
                metadata["source_counts"] = dict(source_counts)
            source_prompt = getattr(source, "prompt_version", None)
            if source_prompt:
                metadata["prompt_versions"]["source"] = source_prompt
            problems = record_kept_set(
                out,
                kept_set,
                report,
                config=cfg,
                opts=opts,
                counts=stats,
                metadata=metadata,
                groups=slice_groups,
                latencies=whole.latencies,
            )
            return metadata, problems, kept_set.kept

        # Off the event loop, so a signal during the final writes is still handled at once.
        metadata, problems, n_kept = await asyncio.to_thread(conclude)
        finish_invocation(cache, cache.invocation, time.perf_counter() - t_start)
        log.info(
            "done: %d slices, %d samples, %d passed, %d after dedup, %d kept (%d train / %d val), "
            "%d failures",
            stats.slices,
            stats.samples_generated,
            stats.passed_thresholds,
            n_kept,
            stats.train + stats.val,
            stats.train,
            stats.val,
            failures,
        )
        return RunResult(
            output_dir=out,
            counts=stats,
            metadata=metadata,
            failures=failures,
            paths={
                name: out / name
                for name in (
                    TRAIN_FILE,
                    VAL_FILE,
                    RAW_FILE,
                    METADATA_FILE,
                    FAILURES_FILE,
                    MANIFEST_FILE,
                )
            },
            quality_problems=problems,
        )

    def _claim_output_dir(
        self, out: Path, cache: ResponseCache, identity: dict[str, Any]
    ) -> Callable[[], None]:
        """Refuse to replace another run's results silently; record this run as the owner.

        Returns what puts the claim back as it was (for a run that then fails before any work).

        Raises:
            OutputError: the directory holds results of a different input (or mode).
        """
        stored = cache.get_meta("run_identity")
        previous: dict[str, Any] | None = None
        if stored is not None:
            previous = json.loads(stored)
        elif any((out / name).exists() for name in OUTPUT_FILES if name != CACHE_FILENAME):
            try:
                meta = json.loads((out / METADATA_FILE).read_text(encoding="utf-8"))
                previous = {**meta["source"], "simulator": meta.get("simulator")}
            except (OSError, ValueError, KeyError, TypeError):
                previous = {"input": "unknown (not written by sft_distill?)"}
        same = previous is not None and same_run(previous, identity)
        if previous is not None and not same and not self.overwrite:
            raise OutputError(
                f"output directory {out} {_holds(previous, identity)}; use --overwrite to "
                "replace them (cached replies are reused), --fresh to start over, or choose "
                "another --output"
            )
        cache.set_meta("run_identity", json.dumps(identity, sort_keys=True))
        _, saved = start_invocation(cache, new_run=not same)

        def undo() -> None:
            restore_meta(cache, {**saved, "run_identity": stored})

        return undo


def _holds(previous: dict[str, Any], identity: dict[str, Any]) -> str:
    """What the directory holds, said by what differs from this run."""
    was_sim, is_sim = previous.get("simulator"), identity.get("simulator")
    what = previous.get("input")
    if was_sim is not None and was_sim != is_sim:
        data = {k: v for k, v in previous.items() if k != "simulator"}
        mine = {k: v for k, v in identity.items() if k != "simulator"}
        kind = "a real run" if was_sim is False else "a dry run on the simulator"
        if same_run(data, mine):  # only real vs simulated replies differ
            return f"holds {kind} of the same input ({what})"
        return f"holds {kind} of another input ({what})"
    if what is not None and what == identity.get("input"):
        what = f"{what} as it was before it changed"
    return f"holds the results of another run (input {what})"


def _cancelling() -> bool:
    """Whether the current task itself was asked to stop (Python 3.11+; assumed not before)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False
