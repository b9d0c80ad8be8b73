"""``sft-distill refilter``: re-decide thresholds, dedup, caps and splits from recorded scores.

Reads ``generated_raw.jsonl`` and ``metadata.json`` of a finished run, applies new settings
(``min_score_threshold``, ``min_votes``, ``dimension_weights``, ``score_floors``, dedup, split,
formats…), and
rewrites everything a run writes from its kept set, through the same code a run ends with
(``finalize``): the raw decisions, the splits in every format, ``dataset_info.json``,
``manifest.json``, ``report.html`` and ``metadata.json``, so the directory then holds what a fresh
run at the new settings would write. It never builds an LLM client: no request leaves the
machine (an ``embed_fn`` is only called when you pass one for embedding dedup).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import difflib
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config.defaults import CONFIG_TEMPLATE
from ..config.merging import build_config, deep_merge
from ..config.models import DistillConfig
from ..errors import ConfigError, InputError, file_error
from ..llm.cache import CACHE_FILENAME, ResponseCache
from ..models import PathLike, ScoredSample, StageCounts
from ..outputs.datasets import OutputOptions, WrittenOutputs
from ..outputs.metadata import METADATA_FILE
from ..outputs.report import RAW_FILE, ReportBuilder
from ..outputs.writers import JsonlWriter, lock_output_dir
from ..sources.jsonl import iter_scored
from ..sources.reader import iter_slices
from ..stages.gates.base import GATE_PREFIX
from .collect import Collector
from .decontaminate import Decontaminator, sample_texts
from .dedup import make_deduplicator
from .dedup.base import Deduplicator
from .finalize import record_kept_set, write_kept_set
from .splitting import group_value
from .thresholds import DROP_CONTAMINATED, apply_thresholds

log = logging.getLogger(__name__)

__all__ = [
    "METADATA_FILE",
    "RefilterResult",
    "arefilter",
    "load_run_config",
    "refilter",
]

# Output settings refilter understands even before DistillConfig has them as fields.
_OUTPUT_KEYS = {
    "output_formats": "formats",
    "include_reasoning": "include_reasoning",
    "include_evidence": "include_evidence",
    "split_by": "split_by",
    "max_per_slice": "max_per_slice",
    "balance_by": "balance_by",
    "max_per_group": "max_per_group",
    "dataset_name": "dataset_name",
}


@dataclass
class RefilterResult:
    """What refilter decided: counts before and after, files written, the new metadata."""

    output_dir: Path
    counts: dict[str, Any]
    previous_counts: dict[str, Any]
    outputs: WrittenOutputs
    metadata: dict[str, Any]
    report: dict[str, Any]
    quality_problems: list[str] = dataclasses.field(default_factory=list)


def _read_metadata(out: Path) -> dict[str, Any]:
    path = out / METADATA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise file_error(
            path,
            exc,
            missing="not found; refilter needs a finished run's output",
            failed="cannot read metadata",
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read metadata: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise InputError(f"{path}: no recorded 'config'; is this an sft_distill output directory?")
    return data


def load_run_config(
    metadata: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    embed_fn: Callable[..., Any] | None = None,
) -> DistillConfig:
    """The run's recorded config (secrets were never recorded) with ``overrides`` merged over it.

    Raises:
        ConfigError: a recorded or overriding value is invalid.
    """
    recorded = copy.deepcopy(dict(metadata.get("config") or {}))
    recorded.pop("embed_fn", None)
    endpoints = [
        recorded.get("generator"),
        *(recorded.get("evaluators") or {}).values(),
        *(recorded.get("students") or {}).values(),
    ]
    for ep in endpoints:
        if isinstance(ep, dict):
            ep.pop("api_key", None)  # "***" or None: the key itself is never in metadata
    fields = DistillConfig.model_fields
    recorded = {k: v for k, v in recorded.items() if k in fields}
    merged = deep_merge(recorded, {k: v for k, v in (overrides or {}).items() if k in fields})
    if merged.get("max_per_group") is None and "balance_by" not in (overrides or {}):
        # Older runs recorded balance_by without max_per_group, where it did nothing.
        merged.pop("balance_by", None)
    # build_config merges over the template: drop template evaluators the run did not have.
    evaluators = merged.setdefault("evaluators", {})
    for name in CONFIG_TEMPLATE["evaluators"]:
        evaluators.setdefault(name, None)
    return build_config(merged, source="metadata.json config + overrides", embed_fn=embed_fn)


def _options(config: DistillConfig, overrides: Mapping[str, Any]) -> OutputOptions:
    opts = OutputOptions.from_config(config)
    extra = {
        _OUTPUT_KEYS[k]: v
        for k, v in overrides.items()
        if k in _OUTPUT_KEYS and k not in DistillConfig.model_fields
    }
    if "formats" in extra:
        from ..outputs.formats import parse_formats

        extra["formats"] = tuple(parse_formats(extra["formats"]))
    if extra.get("split_by", "sample") not in ("sample", "slice"):
        raise ConfigError(f"split_by must be 'sample' or 'slice', got {extra['split_by']!r}")
    return dataclasses.replace(opts, **extra)


def _slice_groups(metadata: Mapping[str, Any], field: str) -> dict[str, str | None]:
    """slice id -> metadata[field], recorded by the run or re-read from its input file."""
    rec = metadata.get("slice_groups") or {}
    if rec.get("field") == field and isinstance(rec.get("groups"), dict):
        return dict(rec["groups"])
    kind = (metadata.get("source") or {}).get("kind", "slices")
    if kind != "slices":
        # Only slice files can be re-read here; other modes keep their groups only when the
        # run itself was given balance_by.
        raise ConfigError(
            f"balance_by={field!r}: this {kind} run did not record it; run the {kind} command "
            f"again with --balance-by {field} (cached replies make that free)"
        )
    path = (metadata.get("input") or {}).get("path")
    if not path or not Path(path).is_file():
        raise ConfigError(
            f"balance_by={field!r} needs each slice's metadata: not recorded in metadata.json "
            f"and the input file {path!r} is not available"
        )
    return {s.id: group_value(s.metadata, field) for s in iter_slices(path)}


async def arefilter(
    out_dir: PathLike,
    *,
    overrides: Mapping[str, Any] | None = None,
    embed_fn: Callable[..., Any] | None = None,
) -> RefilterResult:
    """Re-apply thresholds, dedup, caps and split to a finished run; see the module docstring.

    Raises:
        InputError: the directory has no readable metadata.json or generated_raw.jsonl.
        ConfigError: a bad override, or embedding dedup without ``embed_fn``.
        OutputError: a file cannot be written.
    """
    with lock_output_dir(out_dir):
        return await _arefilter(out_dir, overrides=overrides, embed_fn=embed_fn)


async def _arefilter(
    out_dir: PathLike,
    *,
    overrides: Mapping[str, Any] | None = None,
    embed_fn: Callable[..., Any] | None = None,
) -> RefilterResult:
    out = Path(out_dir)
    overrides = dict(overrides or {})
    known = set(DistillConfig.model_fields) | set(_OUTPUT_KEYS) | {"prices"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"refilter: unknown setting(s) {unknown}{hint}")
    metadata = _read_metadata(out)
    config = load_run_config(metadata, overrides, embed_fn=embed_fn)
    was = (metadata.get("dedup") or {}).get("method")
    if config.enable_dedup and was == "embedding" and config.effective_dedup_method != was:
        log.warning("the run deduplicated by embedding; without embed_fn refilter uses jaccard")
    opts = _options(config, overrides)
    raw_path = out / RAW_FILE
    if not raw_path.is_file():
        raise InputError(f"{raw_path}: not found; nothing to refilter")
    groups = _slice_groups(metadata, opts.balance_by) if opts.balance_by else {}

    with contextlib.ExitStack() as stack:
        cache = None
        if config.enable_dedup and config.effective_dedup_method == "embedding":
            # The run's vectors are in its cache: refiltering embeds nothing it has seen.
            cache = stack.enter_context(ResponseCache(out / CACHE_FILENAME))
        dedup = (
            make_deduplicator(config, cache=cache, spill_dir=out) if config.enable_dedup else None
        )
        if dedup is not None:
            stack.callback(dedup.close)
        decontaminator = None
        if overrides.get("decontaminate"):
            # A new eval set after the run: its items are matched against every judged sample.
            decontaminator = await asyncio.to_thread(
                lambda: Decontaminator.from_config(config).build()
            )
            await decontaminator.prepare(cache)
            _record_eval_sets(metadata, decontaminator)
        return await _refilter_with(
            out, metadata, config, opts, raw_path, groups, dedup, overrides, decontaminator
        )


def _record_eval_sets(metadata: dict[str, Any], decontaminator: Decontaminator) -> None:
    """Add the eval sets refilter matched to those the run (or an earlier refilter) had."""
    described = decontaminator.describe()
    previous = metadata.get("decontamination") or {}
    sets = list(previous.get("eval_sets") or [])
    sets += [s for s in described["eval_sets"] if s not in sets]
    metadata["decontamination"] = {
        **described,
        "eval_sets": sets,
        "items": sum(int(s.get("items", 0)) for s in sets),
    }


async def _refilter_with(
    out: Path,
    metadata: dict[str, Any],
    config: DistillConfig,
    opts: OutputOptions,
    raw_path: Path,
    groups: dict[str, str | None],
    dedup: Deduplicator | None,
    overrides: Mapping[str, Any],
    decontaminator: Decontaminator | None = None,
) -> RefilterResult:
    """The refilter proper, once the deduplicator (and the cache it may use) is open."""
    staged = out / (RAW_FILE + ".refilter")
    report = ReportBuilder.from_metadata({"config": config.public_dict()})

    def add(sample: ScoredSample) -> None:
        collector.add(
            apply_thresholds(
                sample,
                min_score_threshold=config.min_score_threshold,
                min_votes=config.min_votes,
                weights=config.dimension_weights,
                floors=config.score_floors,
            )
        )

    try:
        with JsonlWriter(staged, atomic=True) as writer:
            collector = Collector(writer, report, dedup)
            batch: list[ScoredSample] = []
            for _, sample in iter_scored(raw_path, unique=True):
                if decontaminator is None:
                    add(sample)
                    continue
                batch.append(sample)
                if len(batch) >= _DECONTAMINATE_BATCH:
                    for s in await _decontaminated(batch, decontaminator):
                        add(s)
                    batch = []
            if batch and decontaminator is not None:
                for s in await _decontaminated(batch, decontaminator):
                    add(s)
        duplicates = await collector.duplicates()
        # The same code a run ends with: raw decisions, splits, manifest, report, metadata.
        kept_set = write_kept_set(
            out, staged, collector.index, report, duplicates, opts=opts, groups=groups
        )
    finally:
        staged.unlink(missing_ok=True)
    previous = dict(metadata.get("counts") or {})
    counts = StageCounts.assemble(previous, kept_set.funnel())
    _record_history(metadata, overrides, previous)
    problems = record_kept_set(
        out,
        kept_set,
        report,
        config=config,
        opts=opts,
        counts=counts,
        metadata=metadata,
        groups=groups,
    )
    log.info(
        "refilter: %d passed, %d after dedup, %d kept (%d train / %d val)",
        counts.passed_thresholds,
        counts.after_dedup,
        counts.train + counts.val,
        counts.train,
        counts.val,
    )
    return RefilterResult(
        output_dir=out,
        counts=counts.model_dump(),
        previous_counts=previous,
        outputs=kept_set.written,
        metadata=metadata,
        report=metadata["report"],
        quality_problems=problems,
    )


# Samples matched against new eval sets at once (their questions embedded in one batch).
_DECONTAMINATE_BATCH = 256


async def _decontaminated(
    samples: list[ScoredSample], decontaminator: Decontaminator
) -> list[ScoredSample]:
    """``samples`` with those repeating an eval item dropped as contaminated (as a run would)."""
    open_ = [
        i
        for i, s in enumerate(samples)
        if not (s.drop_reason or "").startswith(GATE_PREFIX) and s.drop_reason != DROP_CONTAMINATED
    ]
    hits = await decontaminator.match_many([sample_texts(samples[i]) for i in open_])
    out = list(samples)
    for i, hit in zip(open_, hits, strict=True):
        if hit is not None:
            s = samples[i]
            out[i] = s.model_copy(
                update={
                    "passed": False,
                    "drop_reason": DROP_CONTAMINATED,
                    "drop_detail": hit.detail(),
                    "duplicate_of": None,
                    "annotations": {**s.annotations, **hit.annotations()},
                }
            )
    return out


def _record_history(
    metadata: dict[str, Any], overrides: Mapping[str, Any], previous: Mapping[str, Any]
) -> None:
    """Add this refilter to ``metadata["refiltered"]`` (when, what changed, what was kept)."""
    history = list((metadata.get("refiltered") or {}).get("history", []))
    history.append(
        {
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "overrides": _jsonable(overrides),
            "previous_counts": {
                k: previous.get(k) for k in ("passed_thresholds", "after_dedup", "train", "val")
            },
        }
    )
    metadata["refiltered"] = {"count": len(history), "history": history}


def _jsonable(value: Any) -> Any:
    """Overrides as plain JSON (pydantic models dumped, callables named)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if callable(value):
        return getattr(value, "__name__", repr(value))
    return value


def refilter(
    out_dir: PathLike,
    *,
    overrides: Mapping[str, Any] | None = None,
    embed_fn: Callable[..., Any] | None = None,
) -> RefilterResult:
    """Blocking ``arefilter``; also works inside a running event loop (Jupyter)."""
    coro = arefilter(out_dir, overrides=overrides, embed_fn=embed_fn)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Inside a running loop (Jupyter): run on a private loop in a worker thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
