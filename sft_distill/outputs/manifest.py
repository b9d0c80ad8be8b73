"""``manifest.json``: what it takes to trace and re-create a dataset (no timestamps)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..config.models import DistillConfig
from ..ids import digest
from ..llm.prompts import EVAL_PROMPT_VERSION, GEN_PROMPT_VERSION
from .writers import write_json_atomic

MANIFEST_FILE = "manifest.json"


def config_digest(config: DistillConfig) -> str:
    """Hash of the settings that shape the data (secrets and the output directory left out)."""
    public = config.public_dict()
    public.pop("output_dir", None)
    public.pop("students", None)  # the models sft-distill eval tests do not shape the data
    blob = json.dumps(public, sort_keys=True, ensure_ascii=False, default=str)
    return digest(blob.encode("utf-8"), size=16).hex()


# A licence that forbids commercial use: CC BY-NC(-SA/-ND), "non-commercial", 非商业/禁止商用.
# "NC" must stand alone ("NCSA" is the University of Illinois/NCSA licence, which allows it).
_NON_COMMERCIAL_RE = re.compile(
    r"(?i)(?<![a-z])nc(?![a-z])|non[\s_-]?commercial|非商业|禁止商用|不得商用|不可商用"
)

# How a kept sample without a licence is counted.
NO_LICENSE = "(none)"


def is_non_commercial(license_: str) -> bool:
    """Whether a licence string forbids commercial use (``CC BY-NC 4.0``, "non-commercial")."""
    return _NON_COMMERCIAL_RE.search(license_) is not None


def license_summary(origins: Mapping[tuple[str | None, str | None], int]) -> dict[str, Any]:
    """The licences behind the kept samples: counts per licence and per named source, and the
    sources whose licence is non-commercial or missing (``None`` for samples naming no source).
    """
    counts: Counter[str] = Counter()
    sources: dict[str, Counter[str]] = {}
    flagged: dict[str, dict[str | None, int]] = {"non_commercial": {}, "unlicensed": {}}
    for (license_, source), n in origins.items():
        key = license_ or NO_LICENSE
        counts[key] += n
        if source is not None:
            sources.setdefault(source, Counter())[key] += n
        flag = "unlicensed" if license_ is None else None
        if license_ is not None and is_non_commercial(license_):
            flag = "non_commercial"
        if flag is not None:
            flagged[flag][source] = flagged[flag].get(source, 0) + n
    return {
        "samples": dict(sorted(counts.items())),
        "sources": {name: dict(sorted(c.items())) for name, c in sorted(sources.items())},
        **{
            flag: {
                "samples": sum(by_source.values()),
                "sources": sorted(s for s in by_source if s is not None),
                "without_source": by_source.get(None, 0),
            }
            for flag, by_source in flagged.items()
        },
    }


def build_manifest(
    *,
    source: dict[str, Any],
    config: DistillConfig,
    train_ids: Iterable[str],
    val_ids: Iterable[str],
    simulator: bool,
    source_prompt_version: str | None = None,
    licenses: dict[str, Any] | None = None,
    eval_sets: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest: sample ids are hashes of each sample's canonical content and slice.

    ``licenses`` (``license_summary`` of the kept samples) and ``eval_sets`` (the files the run
    was decontaminated against, with their hashes) are written when given.
    """
    extra: dict[str, Any] = {}
    if licenses is not None:
        extra["licenses"] = licenses
    if eval_sets:
        extra["decontaminated_against"] = eval_sets
    return {
        "package": "sft_distill",
        "version": __version__,
        "prompt_versions": {
            "generation": GEN_PROMPT_VERSION,
            "evaluation": EVAL_PROMPT_VERSION,
            **({"source": source_prompt_version} if source_prompt_version else {}),
        },
        "source": source,
        "simulator": simulator,
        "config_blake2b": config_digest(config),
        **extra,
        "samples": {"train": sorted(train_ids), "val": sorted(val_ids)},
    }


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically."""
    path = Path(out_dir) / MANIFEST_FILE
    write_json_atomic(path, manifest)
    return path
