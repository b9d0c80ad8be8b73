"""The command line as a user runs it: a real subprocess, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import EXAMPLES, REPO

SCRIPT = REPO / "scripts" / "run_pipeline.py"


def cli(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_dry_run_on_the_examples(tmp_path):
    out = tmp_path / "out"
    p = cli("--input", str(EXAMPLES / "slices.jsonl"), "--output", str(out), "--dry-run", "-q")
    assert p.returncode == 0, p.stderr
    assert "train" in p.stdout and "dry run" in p.stdout
    meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    assert meta["simulator"] is True and meta["counts"]["train"] > 0
    for name in ("train.jsonl", "val.jsonl", "generated_raw.jsonl"):
        assert (out / name).stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--input", "does-not-exist.jsonl"], "does-not-exist.jsonl"),
        (["--input", "."], "directory"),
        (["--input", "X", "--config", "missing.json"], "config file not found"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, args, fragment):
    p = cli(*args, "--dry-run", "--output", str(tmp_path / "o"), cwd=tmp_path)
    assert p.returncode == 2
    assert fragment in p.stderr
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_bad_config_value_exits_2(tmp_path):
    cfgp = tmp_path / "c.json"
    cfgp.write_text(json.dumps({"min_score_threshold": 42}))
    p = cli("--input", str(EXAMPLES / "slices.jsonl"), "--config", str(cfgp), "--dry-run")
    assert p.returncode == 2 and "min_score_threshold" in p.stderr and "Traceback" not in p.stderr


def test_help_and_version():
    assert cli("--help").returncode == 0
    p = cli("--version")
    assert p.returncode == 0 and "sft-distill" in p.stdout
