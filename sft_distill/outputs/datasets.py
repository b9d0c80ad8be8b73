"""Write the kept samples in every requested format, plus LLaMA-Factory's ``dataset_info.json``.

Shared by the pipeline and ``refilter`` so both produce byte-identical splits from the same
decisions. Rows follow the seeded hash order of ``selection.splitting.split_key`` (a
deterministic shuffle).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..models import PathLike, ScoredSample
from ..selection.splitting import split_key, split_train_val
from ..sources.jsonl import iter_scored
from ..text import plural
from .formats import (
    DATASET_INFO_FILE,
    SIDECAR_FORMATS,
    SPLITS,
    all_split_file_names,
    dataset_info,
    llamafactory_files,
    llamafactory_row,
    parse_formats,
    provenance,
    provenance_file,
    row_for,
    split_files,
    to_sharegpt,
)
from .writers import JsonlWriter, write_json_atomic

log = logging.getLogger(__name__)

__all__ = [
    "OutputOptions",
    "WrittenOutputs",
    "remove_stale",
    "write_outputs",
]

DEFAULT_DATASET_NAME = "sft_distill"


@dataclass(frozen=True)
class OutputOptions:
    """How kept samples are split and written (read from a DistillConfig by ``from_config``)."""

    formats: tuple[str, ...] = ("sharegpt",)
    include_reasoning: bool = False
    include_evidence: bool = False
    system: str | None = None
    split_by: str = "sample"
    train_val_split: float = 0.9
    seed: int = 42
    max_per_slice: int | None = None
    balance_by: str | None = None
    max_per_group: int | None = None
    dataset_name: str = DEFAULT_DATASET_NAME

    @classmethod
    def from_config(cls, config: Any) -> OutputOptions:
        """Options from a ``DistillConfig``; keys it does not have yet take their defaults."""
        d = cls()
        return cls(
            formats=tuple(parse_formats(getattr(config, "output_formats", None))),
            include_reasoning=bool(getattr(config, "include_reasoning", d.include_reasoning)),
            include_evidence=bool(getattr(config, "include_evidence", d.include_evidence)),
            system=getattr(config, "system_prompt", None) or None,
            split_by=getattr(config, "split_by", d.split_by),
            train_val_split=getattr(config, "train_val_split", d.train_val_split),
            seed=getattr(config, "seed", d.seed),
            max_per_slice=getattr(config, "max_per_slice", None),
            balance_by=getattr(config, "balance_by", None),
            max_per_group=getattr(config, "max_per_group", None),
            dataset_name=getattr(config, "dataset_name", None) or d.dataset_name,
        )


@dataclass
class WrittenOutputs:
    """What ``write_outputs`` wrote: files per format and split, sidecars, row counts."""

    files: dict[str, dict[str, str]]
    provenance_files: dict[str, dict[str, str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    dataset_info: dict[str, Any] = field(default_factory=dict)
    llamafactory_files: dict[str, dict[str, str]] = field(default_factory=dict)
    # (licence, source) -> rows written: the manifest's licences
    origins: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready record for metadata.json (``outputs``)."""
        return {
            "formats": list(self.files),
            "files": self.files,
            "provenance_files": self.provenance_files,
            "llamafactory_files": self.llamafactory_files,
            "dataset_info": DATASET_INFO_FILE,
            "datasets": sorted(self.dataset_info),
            "counts": self.counts,
        }


def _offsets(raw_path: PathLike, wanted: set[str], seed: int) -> list[tuple[bytes, str, int]]:
    """(split key, id, byte offset) of the first line of each wanted id, in split order."""
    found: dict[str, tuple[bytes, str, int]] = {}
    with open(raw_path, "rb") as f:
        offset = 0
        for line in f:
            start, offset = offset, offset + len(line)
            try:
                sid = json.loads(line).get("id")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                continue  # a line cut by a crash; reported by sources.jsonl.iter_jsonl elsewhere
            if isinstance(sid, str) and sid in wanted and sid not in found:
                found[sid] = (split_key(seed, sid), sid, start)
    return sorted(found.values())


def remove_stale(out_dir: PathLike, keep: Iterable[str]) -> list[str]:
    """Delete split and sidecar files of formats no longer written; returns the names removed."""
    out = Path(out_dir)
    removed = []
    for name in sorted(all_split_file_names() - set(keep)):
        p = out / name
        if p.is_file():
            p.unlink()
            removed.append(name)
    return removed


def write_outputs(
    raw_path: PathLike,
    out_dir: PathLike,
    train_ids: set[str],
    val_ids: set[str],
    opts: OutputOptions,
    *,
    offsets: Mapping[str, int] | None = None,
) -> WrittenOutputs:
    """Write every format's train/val files, sidecars and ``dataset_info.json`` from ``raw_path``.

    Every split file is created (atomically) even when empty; ``dataset_info.json`` registers
    only non-empty ones. Split files of formats not requested any more are removed.

    Raises:
        InputError, OutputError: the raw file cannot be read or an output cannot be written.
    """
    out = Path(out_dir)
    files = split_files(opts.formats)
    sidecars = {
        fmt: {s: provenance_file(n) for s, n in by_split.items()}
        for fmt, by_split in files.items()
        if fmt in SIDECAR_FORMATS
    }
    companions = llamafactory_files(files, include_reasoning=opts.include_reasoning)
    wanted = train_ids | val_ids
    if offsets is None:  # refilter: find them in the raw file
        order = _offsets(raw_path, wanted, opts.seed)
    else:  # the pipeline knows where it wrote each sample
        order = sorted((split_key(opts.seed, s), s, offsets[s]) for s in wanted if s in offsets)
    origins: Counter[tuple[str | None, str | None]] = Counter()
    counts = _write_rows(
        raw_path, out, order, train_ids, opts, (files, sidecars, companions), origins
    )
    counts["missing"] = len(train_ids | val_ids) - counts["train"] - counts["val"]
    if counts["missing"]:
        log.warning("%s not found in %s", plural(counts["missing"], "kept sample"), raw_path)
    info = dataset_info(
        opts.dataset_name,
        files,
        system=bool(opts.system),
        rows={s: counts[s] for s in SPLITS},
        lf_files=companions,
    )
    write_json_atomic(out / DATASET_INFO_FILE, info)
    names = [
        n for by in (*files.values(), *sidecars.values(), *companions.values()) for n in by.values()
    ]
    for name in remove_stale(out, names):
        log.info("removed %s (format no longer written)", name)
    return WrittenOutputs(
        files=files,
        provenance_files=sidecars,
        counts=counts,
        dataset_info=info,
        llamafactory_files=companions,
        origins=origins,
    )


def _write_rows(
    raw_path: PathLike,
    out: Path,
    order: list[tuple[bytes, str, int]],
    train_ids: set[str],
    opts: OutputOptions,
    names: tuple[dict[str, dict[str, str]], ...],
    origins: Counter[tuple[str | None, str | None]] | None = None,
) -> dict[str, int]:
    """Each kept sample's row in every format (and its sidecar and companion rows), in order.

    ``names`` are the split files, provenance sidecars and LLaMA-Factory companions by format
    and split; ``origins`` counts each written sample's (licence, source). Returns the rows
    written per split.
    """
    counts = {"train": 0, "val": 0, "missing": 0}
    with ExitStack() as stack, open(raw_path, "rb") as raw:
        writers, side, lf = (
            {
                (fmt, split): stack.enter_context(JsonlWriter(out / name, atomic=True))
                for fmt, by_split in files.items()
                for split, name in by_split.items()
            }
            for files in names
        )
        for _key, sid, offset in order:
            raw.seek(offset)
            try:
                sample = ScoredSample.model_validate(json.loads(raw.readline()))
            except (ValidationError, ValueError) as exc:
                log.warning("%s: sample %s is not a scored sample, skipped: %s", raw_path, sid, exc)
                continue
            split = "train" if sid in train_ids else "val"
            for fmt in opts.formats:
                row = row_for(
                    sample,
                    fmt,
                    system=opts.system,
                    include_reasoning=opts.include_reasoning,
                    include_evidence=opts.include_evidence,
                )
                writers[fmt, split].write(row)
                if (fmt, split) in side:
                    side[fmt, split].write(provenance(sample, evidence=opts.include_evidence))
                if (fmt, split) in lf:
                    lf[fmt, split].write(
                        llamafactory_row(sample, fmt, system=opts.system, include_reasoning=True)
                    )
            counts[split] += 1
            if origins is not None:
                origins[sample.license, sample.source] += 1
    return counts


def write_splits(
    raw_path: PathLike,
    out_dir: PathLike,
    keep_ids: set[str],
    ratio: float,
    seed: int,
    *,
    system: str | None = None,
) -> dict[str, int]:
    """Stream ``raw_path`` (ScoredSample lines) into ShareGPT ``train.jsonl`` and ``val.jsonl``.

    Only ``keep_ids`` are written, each once (its first line), in raw-file order; both files are
    always created (atomically). Returns ``{"train", "val", "missing"}`` counts, where
    ``missing`` is kept ids never found in the raw file.

    Raises:
        InputError: the raw file is missing or unreadable.
        OutputError: an output file cannot be written.
    """
    train_ids, _ = split_train_val(sorted(keep_ids), ratio, seed)
    out = Path(out_dir)
    counts = {"train": 0, "val": 0, "missing": 0}
    written: set[str] = set()
    with (
        JsonlWriter(out / "train.jsonl", atomic=True) as train,
        JsonlWriter(out / "val.jsonl", atomic=True) as val,
    ):
        for _, sample in iter_scored(raw_path, ids=keep_ids, unique=True):
            record = to_sharegpt(sample, system=system)
            if sample.id in train_ids:
                train.write(record)
                counts["train"] += 1
            else:
                val.write(record)
                counts["val"] += 1
            written.add(sample.id)
    counts["missing"] = len(keep_ids) - len(written)
    if counts["missing"]:
        log.warning("%d kept sample(s) not found in %s", counts["missing"], raw_path)
    return counts
