"""The global step of ``--engine ray``: every shard's samples and counters into the one run.

Each finished shard's judged samples go to the run's own ``Collector`` (raw file, index, report,
deduplicator) as soon as the shard is done; its counters, failures and usage are added to the
run's. The order shards arrive in does not matter: the final pass sorts the raw file and the
deduplicator keeps the best-scored of each group whatever the order, as for a local run's
samples, which arrive in completion order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models import Failure
from ..outputs.failures import FAILURES_FILE
from ..selection.collect import Collector
from ..selection.dedup.jaccard import JaccardDeduplicator
from ..sources.jsonl import iter_jsonl, iter_scored
from .shards import (
    SAMPLES_FILE,
    SIGNATURES_FILE,
    add_counts,
    is_done,
    merge_usage,
    read_summary,
    shard_dir,
)

if TYPE_CHECKING:
    from ..pipeline import _Run


class ShardMerge:
    """Finished shards into ``run`` and ``collector``, one at a time, in any order."""

    def __init__(self, run: _Run, collector: Collector, *, ran_now: set[int]) -> None:
        self.run = run
        self.collector = collector
        self.ran_now = ran_now  # the shards this invocation runs (the others were done before)
        self.per_shard: dict[int, dict[str, Any]] = {}
        self.whole: list[dict[str, Any]] = []
        self.now: list[dict[str, Any]] = []
        self.latencies: dict[str, list[float]] = {}

    def add(self, k: int) -> None:
        """Shard ``k``'s samples to the collector, its counters and usage to the run."""
        run = self.run
        directory = shard_dir(run.out, k)
        summary = read_summary(directory)
        dedup = self.collector.dedup
        signatures = directory / SIGNATURES_FILE
        sketched = isinstance(dedup, JaccardDeduplicator) and signatures.is_file()
        for _, sample in iter_scored(directory / SAMPLES_FILE):
            run.scores.add(sample)
            self.collector.add(sample, sketched=sketched)
        if sketched:
            dedup.add_saved(signatures)  # type: ignore[union-attr]
        add_counts(run.source_stats, summary["source_stats"])
        add_counts(run.judge_counts, summary["judge_counts"])
        run.bad_examples.extend(summary["bad_examples"][: 100 - len(run.bad_examples)])
        run.slice_groups.update(summary["slice_groups"])
        run.metadata_fields.update(summary["metadata_fields"])
        _add_source_counts(run, summary.get("source_counts") or {})
        if k in self.ran_now and summary["failures"]:
            _copy_failures(run, directory / FAILURES_FILE)
        usage = summary["usage"]
        self.whole.append({n: {**u, "this_invocation": None} for n, u in usage.items()})
        if k in self.ran_now:
            self.now.append({n: u["this_invocation"] for n, u in usage.items()})
        for name, values in summary["latencies"].items():
            self.latencies.setdefault(name, []).extend(values)
        self.per_shard[k] = {
            "ran_this_invocation": k in self.ran_now,
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

    def finish(
        self, *, workers: int, address: str | None, limits: dict[str, Any]
    ) -> Callable[[], dict[str, Any]]:
        """Record ``metadata.engine``; returns what gives this invocation's usage per endpoint."""
        run = self.run
        run.engine = {
            "name": "ray",
            "address": address or "local",
            "workers": workers,
            "shards": len(self.per_shard),
            "per_shard": {str(k): self.per_shard[k] for k in sorted(self.per_shard)},
            "limits": limits,
        }
        run.shard_usage = (merge_usage(self.whole), self.latencies)
        this = merge_usage(self.now)
        for name, figures in this.items():  # concurrency is the global budget's, not a sum
            if name in limits:
                figures["peak_in_flight"] = limits[name]["peak_in_flight"]
                figures["concurrency_limit"] = limits[name]["limit"]
                figures["limit_decreases"] = limits[name]["limit_decreases"]
        return lambda: this


def _add_source_counts(run: _Run, counts: Mapping[str, int]) -> None:
    """A shard's mode counters (rephrasings, not-kept rows...) into the source's own."""
    mine = getattr(run.source, "counts", None)
    if isinstance(mine, dict):
        for key, n in counts.items():
            mine[key] = mine.get(key, 0) + n


def _copy_failures(run: _Run, path: Path) -> None:
    """A shard's failures into the run's ``failures.jsonl`` (already scrubbed there)."""
    if not path.is_file():
        return
    for _, record in iter_jsonl(path):
        run.failures.add(Failure.model_validate(record))
