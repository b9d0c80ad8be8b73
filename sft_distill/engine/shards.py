"""The shards of a run in ``OUTPUT/shards/``: layout, per-shard files, markers, summaries.

``OUTPUT/shards/layout.json`` records how many shards the input was cut into (a rerun keeps it,
whatever ``--workers`` says). ``OUTPUT/shards/<k>/`` is shard k's own run directory: its lock,
``cache.sqlite3``, ``failures.jsonl``, and once it is finished ``samples.jsonl`` (every judged
sample, before dedup), ``shard.json`` (its counts and usage) and the ``done`` marker, written
last. With Jaccard dedup, ``signatures.npz`` holds the MinHash index of its samples that
passed, made as they were judged, so the driver's merge does not sketch them again.
A shard with a marker is never run again; one without is rerun from its cache.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..outputs.writers import write_json_atomic

SHARDS_DIR = "shards"
LAYOUT_FILE = "layout.json"
SAMPLES_FILE = "samples.jsonl"
SIGNATURES_FILE = "signatures.npz"  # the MinHash index of the samples that passed
SUMMARY_FILE = "shard.json"
DONE_FILE = "done"
PID_FILE = "worker.pid"


def shard_dir(out: Path, k: int) -> Path:
    """Shard ``k``'s run directory."""
    return out / SHARDS_DIR / str(k)


def is_done(out: Path, k: int) -> bool:
    """Whether shard ``k`` finished with nothing left to retry."""
    return (shard_dir(out, k) / DONE_FILE).is_file()


def shard_count(out: Path, wanted: int | None, workers: int, *, fresh: bool) -> int:
    """How many shards this run has: the recorded count, else ``wanted``, else ``workers``.

    With ``fresh`` the shard directories are deleted first.

    Raises:
        ConfigError: ``wanted`` differs from the count the directory's shards were made with.
    """
    root = out / SHARDS_DIR
    if fresh and root.exists():
        shutil.rmtree(root)
    layout = root / LAYOUT_FILE
    if layout.is_file():
        recorded = int(json.loads(layout.read_text(encoding="utf-8"))["shards"])
        if wanted is not None and wanted != recorded:
            raise ConfigError(
                f"--shards {wanted}: {root} holds {recorded} shards of this run; rerun with "
                f"--shards {recorded} (or without it) to resume, or --fresh to start over"
            )
        return recorded
    count = wanted or workers
    if count < 1:
        raise ConfigError(f"--shards must be at least 1, got {count}")
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(layout, {"shards": count})
    return count


def write_summary(directory: Path, summary: Mapping[str, Any], *, done: bool) -> None:
    """``shard.json``, then (when nothing is left to retry) the ``done`` marker."""
    write_json_atomic(directory / SUMMARY_FILE, dict(summary))
    if done:
        (directory / DONE_FILE).write_text("done\n", encoding="utf-8")


def read_summary(directory: Path) -> dict[str, Any]:
    """A finished shard's ``shard.json``."""
    data: dict[str, Any] = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
    return data


def add_counts(total: Any, part: Mapping[str, Any]) -> None:
    """Add one shard's counters (numbers, or dicts of numbers) to the dataclass ``total``."""
    for f in fields(total):
        value = part.get(f.name)
        if value is None:
            continue
        mine = getattr(total, f.name)
        if isinstance(mine, dict):
            for key, n in value.items():
                mine[key] = mine.get(key, 0) + n
        else:
            setattr(total, f.name, mine + value)


def counts_dict(counts: Any) -> dict[str, Any]:
    """A counters dataclass as JSON (the inverse of ``add_counts`` onto an empty one)."""
    return {f.name: getattr(counts, f.name) for f in fields(counts)}


def merge_usage(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-endpoint usage summed over shards: numbers added, ``models`` merged, the rest kept."""
    total: dict[str, Any] = {}
    for part in parts:
        for name, usage in part.items():
            total[name] = _add(total.get(name), usage)
    return total


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return json.loads(json.dumps(b))  # a copy
    if isinstance(a, bool) or isinstance(b, bool):
        return a
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return round(a + b, 6) if isinstance(a, float) or isinstance(b, float) else a + b
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [*a, *(k for k in b if k not in a)]
        return {k: _add(a.get(k), b[k]) if k in b else a[k] for k in keys}
    return a


def iter_done(out: Path, count: int) -> Iterator[int]:
    """The finished shards."""
    return (k for k in range(count) if is_done(out, k))
