"""Writing the kept set: the one path a run and ``refilter`` both end with.

From every judged sample (a ``RunIndex`` over a streamed raw file, and the ``ReportBuilder``
fed as the samples went by) and the duplicates found, it applies the caps and the split, writes
``generated_raw.jsonl`` in its deterministic order with every late drop, the splits in every
format, ``dataset_info.json``, ``manifest.json``, ``report.html`` and ``metadata.json``. A
refiltered directory therefore holds what a fresh run at the same settings writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.models import DistillConfig
from ..models import StageCounts
from ..outputs.datasets import OutputOptions, WrittenOutputs, write_outputs
from ..outputs.manifest import build_manifest, license_summary, write_manifest
from ..outputs.metadata import METADATA_FILE
from ..outputs.report import RAW_FILE, ReportBuilder, coverage_summary, write_report
from ..outputs.writers import JsonlWriter, write_json_atomic
from .floors import check_run_gates, license_problems
from .run_index import RunIndex
from .splitting import DROP_CAPPED, SplitPlan, plan_split, usable_group_cap
from .thresholds import DROP_DUPLICATE

__all__ = ["KeptSet", "record_kept_set", "write_kept_set", "write_raw"]


@dataclass
class KeptSet:
    """What was decided and written: the split plan, the files, where the examples are."""

    plan: SplitPlan
    written: WrittenOutputs
    kept: int
    removed_duplicates: int
    example_offsets: tuple[list[int], list[int]]
    passed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def funnel(self) -> dict[str, Any]:
        """The final pass's part of the funnel (``metadata.json`` counts)."""
        return {
            "passed_thresholds": self.passed,
            "after_dedup": self.kept,
            "train": self.written.counts["train"],
            "val": self.written.counts["val"],
            "dropped": self.dropped,
        }


def write_kept_set(
    out: Path,
    streamed: Path,
    index: RunIndex,
    builder: ReportBuilder,
    duplicates: Mapping[str, str],
    *,
    opts: OutputOptions,
    groups: Mapping[str, str | None],
    fields: Iterable[str] | None = None,
) -> KeptSet:
    """Apply caps and split; write ``generated_raw.jsonl``, the splits and ``dataset_info.json``.

    ``streamed`` holds each sample's line at the offset ``index`` recorded; it is replaced by
    ``generated_raw.jsonl``. The result's ``funnel()`` has the passed, kept, split and drop
    figures.
    ``fields`` (the slices' metadata fields, when known) name a close match when no slice has
    ``balance_by``.

    Raises:
        OutputError: a file cannot be written.
    """
    passing = list(index.passed())
    kept = [(sid, sl, groups.get(sl), sc) for sid, sl, sc in passing if sid not in duplicates]
    plan = plan_split(kept, usable_group_cap(opts, groups, fields=fields))
    builder.drop_late(dict.fromkeys(duplicates, DROP_DUPLICATE))
    builder.drop_late(dict.fromkeys(plan.capped, DROP_CAPPED))
    kept_ids, dropped_ids = builder.example_ids(
        [(sc, sid) for sid, _, _, sc in kept if sid not in plan.capped]
    )
    wanted = plan.train | plan.val | set(kept_ids) | set(dropped_ids)
    placed = write_raw(out, streamed, index, duplicates, plan.capped, wanted)
    written = write_outputs(out / RAW_FILE, out, plan.train, plan.val, opts, offsets=placed)
    return KeptSet(
        plan=plan,
        written=written,
        kept=len(kept),
        removed_duplicates=len(duplicates),
        example_offsets=([placed[i] for i in kept_ids], [placed[i] for i in dropped_ids]),
        passed=len(passing),
        dropped=dict(sorted(builder.drops.items())),  # counted as samples went by
    )


def record_kept_set(
    out: Path,
    kept_set: KeptSet,
    builder: ReportBuilder,
    *,
    config: DistillConfig,
    opts: OutputOptions,
    counts: StageCounts,
    metadata: dict[str, Any],
    groups: Mapping[str, str | None],
    latencies: Mapping[str, Sequence[float]] | None = None,
) -> list[str]:
    """Check the run-level floors; write ``manifest.json``, ``report.html``, ``metadata.json``.

    ``metadata`` holds what the run itself knows (source, usage, timings...) and gets every
    section that follows from the settings and the kept set. Returns the floors that failed.

    Raises:
        OutputError: a file cannot be written.
    """
    _describe_kept_set(metadata, config, opts, counts, groups, kept_set)
    _describe_compliance(metadata, builder, kept_set)
    problems = _quality(metadata, config, counts, builder)
    _coverage(metadata, builder, kept_set)
    plan = kept_set.plan
    write_manifest(
        out,
        build_manifest(
            source=metadata.get("source") or {},
            config=config,
            train_ids=plan.train,
            val_ids=plan.val,
            simulator=bool(metadata.get("simulator")),
            source_prompt_version=(metadata.get("prompt_versions") or {}).get("source"),
            licenses=metadata["licenses"],
            eval_sets=(metadata.get("decontamination") or {}).get("eval_sets"),
        ),
    )
    metadata["report"] = write_report(
        out,
        metadata,
        latencies=latencies,
        prices=config.prices,
        builder=builder,
        example_offsets=kept_set.example_offsets,
    )
    # Other sections of "quality" (coverage...) are kept; the report's figures are updated.
    metadata.setdefault("quality", {}).update(metadata["report"]["quality"])
    write_json_atomic(out / METADATA_FILE, metadata)
    return problems


def _describe_kept_set(
    metadata: dict[str, Any],
    config: DistillConfig,
    opts: OutputOptions,
    counts: StageCounts,
    groups: Mapping[str, str | None],
    kept_set: KeptSet,
) -> None:
    """The metadata sections that follow from the settings and the kept set."""
    metadata.update(
        {
            "counts": counts.model_dump(),
            "config": config.public_dict(),
            "output_format": opts.formats[0],
            "output_formats": list(opts.formats),
            "dedup": {
                "enabled": config.enable_dedup,
                "method": config.effective_dedup_method,
                "threshold": config.effective_dedup_threshold,
                "removed": kept_set.removed_duplicates,
            },
            "outputs": kept_set.written.summary(),
        }
    )
    metadata.pop("caps", None)
    if opts.max_per_slice is not None or (opts.balance_by and opts.max_per_group is not None):
        metadata["caps"] = {
            "max_per_slice": opts.max_per_slice,
            "balance_by": opts.balance_by,
            "max_per_group": opts.max_per_group,
            "removed": len(kept_set.plan.capped),
        }
    if opts.balance_by:
        metadata["slice_groups"] = {"field": opts.balance_by, "groups": dict(groups)}


def _describe_compliance(
    metadata: dict[str, Any], builder: ReportBuilder, kept_set: KeptSet
) -> None:
    """Personal data found in the samples, contamination, the kept samples' licences."""
    found = builder.compliance()
    pii = metadata.setdefault("pii", {})
    pii["samples"] = {"with_pii": found["pii"]["samples"], "found": found["pii"]["found"]}
    if "decontamination" in metadata or found["contaminated"]:
        decontamination = metadata.setdefault("decontamination", {})
        decontamination["contaminated"] = sum(found["contaminated"].values())
        decontamination["by_match"] = found["contaminated"]
    metadata["licenses"] = license_summary(kept_set.written.origins)


def _quality(
    metadata: dict[str, Any], config: DistillConfig, counts: StageCounts, builder: ReportBuilder
) -> list[str]:
    """Check the run-level floors; record the outcome in ``metadata["quality_gates"]``."""
    mean_score, exec_rate = builder.mean_score(), builder.exec_pass_rate()
    problems = check_run_gates(config, counts, mean_score=mean_score, exec_pass_rate=exec_rate)
    problems += license_problems(config, metadata.get("licenses") or {})
    metadata["quality_gates"] = {
        "passed": not problems,
        "problems": problems,
        "mean_score": None if mean_score is None else round(mean_score, 3),
        "exec_pass_rate": None if exec_rate is None else round(exec_rate, 4),
        # the per-sample gates the run had (refilter does not run them again)
        "gates": list((metadata.get("quality_gates") or {}).get("gates", [])),
    }
    return problems


def _coverage(metadata: dict[str, Any], builder: ReportBuilder, kept_set: KeptSet) -> None:
    """``quality.coverage``: each article-structured slice's articles the kept samples cover.

    The run records each such slice's article count there (``{"slices": {id: {"total": n}}}``);
    this fills in what the kept set covers, from the set alone, so a refilter recomputes it.
    """
    section = (metadata.get("quality") or {}).get("coverage")
    if not isinstance(section, dict) or not section.get("slices"):
        return
    totals = {sid: int(v["total"]) for sid, v in section["slices"].items()}
    kept = builder.kept_articles(kept_set.plan.train | kept_set.plan.val)
    metadata["quality"]["coverage"] = coverage_summary(totals, kept)


def write_raw(
    out: Path,
    streamed: Path,
    index: RunIndex,
    duplicates: Mapping[str, str],
    capped: set[str],
    wanted: set[str],
) -> dict[str, int]:
    """Write ``generated_raw.jsonl`` in a deterministic order with every drop reason.

    The streamed file is in completion order, which varies from run to run; records are read
    back by byte offset, grouped by slice and chunk, each read once. Returns where each of
    the ``wanted`` samples now starts, so the splits need no second scan.
    """
    placed: dict[str, int] = {}
    with open(streamed, "rb") as f, JsonlWriter(out / RAW_FILE, atomic=True) as raw:
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
    streamed.unlink(missing_ok=True)
    return placed
