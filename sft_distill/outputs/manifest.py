"""``manifest.json``: what it takes to trace and re-create a dataset (no timestamps)."""

from __future__ import annotations

import json
from collections.abc import Iterable
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


def build_manifest(
    *,
    source: dict[str, Any],
    config: DistillConfig,
    train_ids: Iterable[str],
    val_ids: Iterable[str],
    simulator: bool,
    source_prompt_version: str | None = None,
) -> dict[str, Any]:
    """The manifest: sample ids are hashes of each sample's canonical content and slice."""
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
        "samples": {"train": sorted(train_ids), "val": sorted(val_ids)},
    }


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically."""
    path = Path(out_dir) / MANIFEST_FILE
    write_json_atomic(path, manifest)
    return path
