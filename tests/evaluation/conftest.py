"""Runs to evaluate, made once per module: a dry run of 24 slices split by slice, half in val."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sft_distill.cli import main
from tests.helpers import make_input


def make_run(root: Path, *extra: str, split: float = 0.5) -> Path:
    """A finished dry run in ``root/run`` (24 slices, ``split`` of the kept samples in train)."""
    root.mkdir(parents=True, exist_ok=True)
    inp = make_input(root / "in.jsonl", 24)
    cfg = root / "c.json"
    cfg.write_text(json.dumps({"train_val_split": split}), encoding="utf-8")
    out = root / "run"
    args = ["--input", str(inp), "--output", str(out), "--config", str(cfg), "--dry-run", "-q"]
    assert main([*args, *extra]) == 0
    return out


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run split by slice; copy it (``run_copy``) before evaluating it."""
    return make_run(tmp_path_factory.mktemp("eval-run"), "--split-by", "slice")


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Callable[[], Path]:
    """``run_copy()``: a fresh copy of the finished run (its own eval/ and cache)."""
    count = 0

    def copy() -> Path:
        nonlocal count
        count += 1
        dest = tmp_path / f"run{count}"
        shutil.copytree(finished_run, dest, ignore=shutil.ignore_patterns("eval"))
        return dest

    return copy
