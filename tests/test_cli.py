"""The command line as a user runs it: a real subprocess, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import EXAMPLES, NO_SHARED, SCRIPT, SHARED_DATA, run_cli

cli = run_cli


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


def test_empty_input_file_is_a_one_line_error(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    p = cli("--input", str(tmp_path / "empty.jsonl"), "--dry-run", "--output", str(tmp_path / "o"))
    assert p.returncode == 2 and "is empty" in p.stderr and "Traceback" not in p.stderr


def test_non_utf8_file_says_so(tmp_path):
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes('{"content": "第一条 为了规范保险活动，制定本法。"}\n'.encode("gbk"))
    p = cli("--input", str(gbk), "--dry-run", "--output", str(tmp_path / "o"))
    assert p.returncode == 2 and "not UTF-8" in p.stderr and "gbk.jsonl" in p.stderr
    assert len(p.stderr.strip().splitlines()) <= 2  # the skipped-line warning and the error


def test_unwritable_output_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = cli("--input", str(EXAMPLES / "slices.jsonl"), "--dry-run", "--output", str(blocker / "o"))
    assert p.returncode == 2 and "Traceback" not in p.stderr and str(blocker) in p.stderr


def test_strict_fails_on_the_first_bad_line(tmp_path):
    src = tmp_path / "s.jsonl"
    src.write_text(
        '{"content": "第一条 保险。"}\n{broken\n{"content": "第二条 合同。"}\n', encoding="utf-8"
    )
    p = cli("--input", str(src), "--dry-run", "--strict", "--output", str(tmp_path / "o"))
    assert p.returncode == 2 and "s.jsonl:2:" in p.stderr and "Traceback" not in p.stderr
    p = cli("--input", str(src), "--dry-run", "--output", str(tmp_path / "o2"), "-q")
    assert p.returncode == 0 and "skipped 1 bad input line" in p.stdout


@pytest.mark.skipif(not (SHARED_DATA / "slices_nasty.jsonl").exists(), reason=NO_SHARED)
def test_real_nasty_file_runs_the_good_lines_and_counts_the_bad(tmp_path):
    out = tmp_path / "o"
    p = cli(
        "--input", str(SHARED_DATA / "slices_nasty.jsonl"), "--dry-run", "-q", "--output", str(out)
    )
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    c = meta["counts"]
    assert c["slices"] == 8 and c["bad_lines"] == 10 and c["duplicate_slices"] == 2
    assert c["bad_line_reasons"]["invalid_json"] == 1
    assert any("slices_nasty.jsonl:4:" in b for b in meta["bad_lines"])
    raw = [json.loads(x) for x in (out / "generated_raw.jsonl").read_text().splitlines()]
    assert {r["slice_id"] for r in raw} >= {"n-002", "12"}


def test_missing_key_variable_is_a_config_error_before_any_call(tmp_path):
    cfgp = tmp_path / "c.json"
    cfgp.write_text(json.dumps({"generator": {"api_key_env": "SFT_DISTILL_TEST_UNSET_KEY"}}))
    env = {k: v for k, v in os.environ.items() if k != "SFT_DISTILL_TEST_UNSET_KEY"}
    p = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--input",
            str(EXAMPLES / "slices.jsonl"),
            "--config",
            str(cfgp),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert p.returncode == 2 and "SFT_DISTILL_TEST_UNSET_KEY" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "o" / "cache.sqlite3").exists()
