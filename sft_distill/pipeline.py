"""``DatasetDistillationPipeline``: read -> generate -> evaluate -> filter -> write, streamed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from tqdm.auto import tqdm

from . import __version__
from .cache import CACHE_FILENAME, ResponseCache
from .config import DIMENSIONS, DistillConfig, EndpointConfig, build_config
from .data_io import (
    BadLine,
    JsonlWriter,
    lock_output_dir,
    prepare_output_dir,
    write_json_atomic,
)
from .dedup import make_deduplicator
from .errors import ConfigError, InputError, OutputError
from .evaluator import evaluate_samples
from .filtering import DROP_DUPLICATE
from .formats import DATASET_INFO_FILE, all_split_file_names
from .gates import Gate, build_gates
from .llm_client import LLMClient
from .manifest import MANIFEST_FILE, build_manifest, write_manifest
from .models import Failure, ScoredSample, Slice, StageCounts
from .outputs import DROP_CAPPED, OutputOptions, plan_split, write_outputs
from .prompts import EVAL_PROMPT_VERSION, GEN_PROMPT_VERSION
from .quality import check_run_gates
from .report import REPORT_FILE, ReportBuilder, write_report
from .run_index import RunIndex
from .sources import SampleSource, SliceSource, SourceContext, report_bad_line
from .splitting import group_value

log = logging.getLogger(__name__)

TRAIN_FILE = "train.jsonl"
VAL_FILE = "val.jsonl"
RAW_FILE = "generated_raw.jsonl"
METADATA_FILE = "metadata.json"
FAILURES_FILE = "failures.jsonl"
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
            from .simulator import Simulator, SimulatorConfig

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
        if self.fresh:
            for name in (*OUTPUT_FILES, CACHE_FILENAME + "-wal", CACHE_FILENAME + "-shm"):
                (out / name).unlink(missing_ok=True)
        described = source.describe()
        identity = {**described, "simulator": simulator_url is not None}

        stats = StageCounts()
        bad_examples: list[str] = []
        failures = 0
        score_sum, score_n, exec_ok, exec_n = 0.0, 0, 0, 0
        score_stats = _ScoreStats()
        opts = OutputOptions.from_config(cfg)
        slice_groups: dict[str, str | None] = {}
        # id, slice, chunk, raw offset, score and passed of each sample: the final pass sorts
        # the raw file and splits the kept samples from this alone (about 40 bytes a sample).
        index = RunIndex()
        # The report's figures are gathered as samples stream by: no second pass at the end.
        report = ReportBuilder.from_metadata({"config": cfg.public_dict()})
        namespace = "simulator" if simulator_url else None
        partial = out / (RAW_FILE + ".partial")

        async with AsyncExitStack() as stack:
            locked = stack.enter_context(lock_output_dir(out))
            # Exclusive when locked: no other run can write to this cache meanwhile.
            cache = stack.enter_context(
                ResponseCache(out / CACHE_FILENAME, exclusive=locked, repair=self.repair)
            )
            # Texts for exact verification spill to a temporary file in the output directory;
            # embeddings are cached beside the replies, so a rerun does not embed again.
            dedup = make_deduplicator(cfg, cache=cache, spill_dir=out) if cfg.enable_dedup else None
            if dedup is not None:
                stack.callback(dedup.close)
            self._claim_output_dir(out, cache, identity)
            fail_log = stack.enter_context(JsonlWriter(out / FAILURES_FILE))
            # Rebuilt from the response cache by a rerun, and read only after it is closed.
            raw_log = stack.enter_context(JsonlWriter(partial, flush_lines=False))

            def on_failure(failure: Failure) -> None:
                nonlocal failures
                failures += 1
                fail_log.write(failure.model_dump(mode="json"))

            gen_client = await stack.enter_async_context(
                LLMClient(
                    "generator", endpoints["generator"], cache=cache, cache_namespace=namespace
                )
            )
            judges = {
                name: await stack.enter_async_context(
                    LLMClient(name, ep, cache=cache, cache_namespace=namespace)
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
            async for sample in scored:
                score_stats.add(sample)
                report.add(sample, decided=True)  # judged under the config's settings
                if sample.avg_score is not None:
                    score_sum += sample.avg_score
                    score_n += 1
                if "exec_pass" in sample.annotations:
                    exec_n += 1
                    exec_ok += bool(sample.annotations["exec_pass"])
                if sample.passed:
                    stats.passed_thresholds += 1
                    if dedup is not None:
                        dedup.add(sample.id, sample.text_for_dedup, sample.avg_score or 0.0)
                offset = raw_log.write(sample.model_dump(mode="json"))
                index.add(sample, offset)
                eval_bar.total = stats.samples_generated
                eval_bar.update(1)
            t_generated = time.perf_counter()
            duplicates: dict[str, str] = {}
            if dedup is not None and stats.passed_thresholds:
                duplicates = await dedup.aresolve()
            t_deduped = time.perf_counter()

        if stats.slices == 0 and stats.samples_generated == 0:
            partial.unlink(missing_ok=True)
            why = ", ".join(f"{k} {v}" for k, v in sorted(stats.bad_line_reasons.items()))
            hint = ""
            if stats.bad_line_reasons.get("invalid_utf8", 0) == stats.bad_lines > 0:
                hint = "; the file is not UTF-8 (convert it, e.g. iconv -f GBK -t UTF-8)"
            raise InputError(
                f"{described.get('input')}: no usable {source.unit} "
                f"({stats.bad_lines} bad line(s): {why or 'none'}){hint}"
            )

        t_closed = time.perf_counter()

        def conclude() -> tuple[dict[str, Any], list[str], int]:
            """Split, write every output, the report and metadata (in a worker thread)."""
            kept = [
                (sid, sl, slice_groups.get(sl), sc)
                for sid, sl, sc in index.passed()
                if sid not in duplicates
            ]
            plan = plan_split(kept, opts)
            report.drop_late(dict.fromkeys(duplicates, DROP_DUPLICATE))
            report.drop_late(dict.fromkeys(plan.capped, DROP_CAPPED))
            kept_ids, dropped_ids = report.example_ids(
                [(sc, sid) for sid, _, _, sc in kept if sid not in plan.capped]
            )
            placed = self._finalize(
                out,
                partial,
                index,
                duplicates,
                plan.capped,
                plan.train | plan.val | set(kept_ids) | set(dropped_ids),
            )
            written = write_outputs(out / RAW_FILE, out, plan.train, plan.val, opts, offsets=placed)
            stats.after_dedup = len(kept)
            stats.train, stats.val = written.counts["train"], written.counts["val"]
            stats.dropped = dict(sorted(report.drops.items()))  # counted as samples streamed by
            t_end = time.perf_counter()

            metadata = {
                "package": "sft_distill",
                "version": __version__,
                "simulator": simulator_url is not None,
                "source": described,
                "input": {
                    "path": described.get("input"),
                    "lines": total_units,
                    "blake2b": described.get("input_blake2b"),
                },
                "output_format": opts.formats[0],
                "output_formats": list(opts.formats),
                "prompt_versions": {
                    "generation": GEN_PROMPT_VERSION,
                    "evaluation": EVAL_PROMPT_VERSION,
                },
                "counts": stats.model_dump(),
                "bad_lines": bad_examples,
                "failures": failures,
                "scores": score_stats.summary(),
                "usage": {
                    name: c.usage_report()
                    for name, c in [("generator", gen_client), *judges.items()]
                },
                "dedup": {
                    "enabled": cfg.enable_dedup,
                    "method": cfg.effective_dedup_method,
                    "threshold": cfg.effective_dedup_threshold,
                    "removed": len(duplicates),
                },
                "timings_s": {
                    "generate_and_evaluate": round(t_generated - t_start, 3),
                    "dedup": round(t_deduped - t_generated, 3),
                    "close_clients": round(t_closed - t_deduped, 3),
                    "write_outputs": round(t_end - t_closed, 3),
                    "total": round(t_end - t_start, 3),
                },
                "config": cfg.public_dict(),
            }
            source_counts = getattr(source, "counts", None)
            if source_counts:  # e.g. topic expansions or rephrasings dropped before any call
                metadata["source_counts"] = dict(source_counts)
            source_prompt = getattr(source, "prompt_version", None)
            if source_prompt:
                metadata["prompt_versions"]["source"] = source_prompt
            metadata["outputs"] = written.summary()
            problems = check_run_gates(
                cfg,
                stats,
                mean_score=score_sum / score_n if score_n else None,
                exec_pass_rate=exec_ok / exec_n if exec_n else None,
            )
            metadata["quality_gates"] = {
                "passed": not problems,
                "problems": problems,
                "mean_score": round(score_sum / score_n, 3) if score_n else None,
                "exec_pass_rate": round(exec_ok / exec_n, 4) if exec_n else None,
                "gates": [g.name for g in self.gates],
            }
            write_manifest(
                out,
                build_manifest(
                    source=described,
                    config=cfg,
                    train_ids=plan.train,
                    val_ids=plan.val,
                    simulator=simulator_url is not None,
                    source_prompt_version=source_prompt,
                ),
            )
            if opts.balance_by:
                metadata["slice_groups"] = {"field": opts.balance_by, "groups": slice_groups}
            metadata["report"] = write_report(
                out,
                metadata,
                latencies={n: c.latencies for n, c in [("generator", gen_client), *judges.items()]},
                prices=cfg.prices,
                builder=report,
                example_offsets=(
                    [placed[i] for i in kept_ids],
                    [placed[i] for i in dropped_ids],
                ),
            )
            write_json_atomic(out / METADATA_FILE, metadata)
            return metadata, problems, len(kept)

        # Off the event loop, so a signal during the final writes is still handled at once.
        metadata, problems, n_kept = await asyncio.to_thread(conclude)
        log.info(
            "done: %d slices, %d samples, %d passed, %d kept (%d train / %d val), %d failures",
            stats.slices,
            stats.samples_generated,
            stats.passed_thresholds,
            n_kept,
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

    def _claim_output_dir(self, out: Path, cache: ResponseCache, identity: dict[str, Any]) -> None:
        """Refuse to replace another run's results silently; record this run as the owner.

        Raises:
            OutputError: the directory holds results of a different input (or mode).
        """
        previous: dict[str, Any] | None = None
        stored = cache.get_meta("run_identity")
        if stored is not None:
            previous = json.loads(stored)
        elif any((out / name).exists() for name in OUTPUT_FILES if name != CACHE_FILENAME):
            try:
                meta = json.loads((out / METADATA_FILE).read_text(encoding="utf-8"))
                previous = {**meta["source"], "simulator": meta.get("simulator")}
            except (OSError, ValueError, KeyError, TypeError):
                previous = {"input": "unknown (not written by sft_distill?)"}
        if previous is not None and not same_run(previous, identity) and not self.overwrite:
            what = previous.get("input")
            if previous.get("input") == identity.get("input"):
                what = f"{what} as it was before it changed"
            if previous.get("simulator") is True and not identity["simulator"]:
                what = f"{what}, a dry run on the simulator"
            raise OutputError(
                f"output directory {out} holds the results of another run (input {what}); "
                "use --overwrite to replace them (cached replies are reused), --fresh to start "
                "over, or choose another --output"
            )
        cache.set_meta("run_identity", json.dumps(identity, sort_keys=True))

    @staticmethod
    def _finalize(
        out: Path,
        partial: Path,
        index: RunIndex,
        duplicates: Mapping[str, str],
        capped: set[str],
        wanted: set[str],
    ) -> dict[str, int]:
        """Write ``generated_raw.jsonl`` in a deterministic order with every drop reason.

        The streamed file is in completion order, which varies from run to run; records are read
        back by byte offset, grouped by slice and chunk, each read once. Returns where each of
        the ``wanted`` (kept) samples now starts, so the splits need no second scan.
        """
        placed: dict[str, int] = {}
        with open(partial, "rb") as f, JsonlWriter(out / RAW_FILE, atomic=True) as raw:
            for sid, offset in index.in_raw_order():
                f.seek(offset)
                line = f.readline()
                if sid in duplicates or sid in capped:
                    record = json.loads(line)
                    record["passed"] = False
                    if sid in duplicates:
                        record["drop_reason"] = DROP_DUPLICATE
                        record["duplicate_of"] = duplicates[sid]
                    else:
                        record["drop_reason"] = DROP_CAPPED
                    at = raw.write(record)
                else:  # unchanged: the line the same writer wrote, copied as it is
                    at = raw.write_line(line)
                if sid in wanted:
                    placed[sid] = at
        partial.unlink(missing_ok=True)
        return placed
