"""The command line: exit codes and one-line errors (in process; the README's command as a user
runs it, in a real subprocess)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import SHARED_DATA, SLICES, needs_shared, read_jsonl, read_metadata, run_cli


@pytest.mark.slow
def test_dry_run_on_the_examples(tmp_path):
    out = tmp_path / "out"
    p = run_cli("--input", str(SLICES), "--output", str(out), "--dry-run", "-q")
    assert p.returncode == 0, p.stderr
    assert "train" in p.stdout and "dry run" in p.stdout
    meta = read_metadata(out)
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
def test_usage_errors_exit_2_with_one_line(tmp_path, monkeypatch, cli, args, fragment):
    monkeypatch.chdir(tmp_path)
    p = cli(*args, "--dry-run", "--output", str(tmp_path / "o"))
    assert p.returncode == 2
    assert fragment in p.stderr
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_bad_config_value_exits_2(tmp_path, cli):
    cfgp = tmp_path / "c.json"
    cfgp.write_text(json.dumps({"min_score_threshold": 42}))
    p = cli("--input", str(SLICES), "--config", str(cfgp), "--dry-run")
    assert p.returncode == 2 and "min_score_threshold" in p.stderr and "Traceback" not in p.stderr


def test_help_and_version(cli):
    assert cli("--help").returncode == 0
    p = cli("--version")
    assert p.returncode == 0 and "sft-distill" in p.stdout


def test_empty_input_file_is_a_one_line_error(tmp_path, cli):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    p = cli("--input", str(tmp_path / "empty.jsonl"), "--dry-run", "--output", str(tmp_path / "o"))
    assert p.returncode == 2 and "is empty" in p.stderr and "Traceback" not in p.stderr


def test_non_utf8_file_says_so(tmp_path, cli):
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes('{"content": "第一条 为了规范保险活动，制定本法。"}\n'.encode("gbk"))
    p = cli("--input", str(gbk), "--dry-run", "--output", str(tmp_path / "o"))
    assert p.returncode == 2 and "not UTF-8" in p.stderr and "gbk.jsonl" in p.stderr
    assert len(p.stderr.strip().splitlines()) <= 2  # the skipped-line warning and the error


def test_unwritable_output_is_a_one_line_error(tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = cli("--input", str(SLICES), "--dry-run", "--output", str(blocker / "o"))
    assert p.returncode == 2 and "Traceback" not in p.stderr and str(blocker) in p.stderr


def test_strict_fails_on_the_first_bad_line(tmp_path, cli):
    src = tmp_path / "s.jsonl"
    src.write_text(
        '{"content": "第一条 保险。"}\n{broken\n{"content": "第二条 合同。"}\n', encoding="utf-8"
    )
    p = cli("--input", str(src), "--dry-run", "--strict", "--output", str(tmp_path / "o"))
    assert p.returncode == 2 and "s.jsonl:2:" in p.stderr and "Traceback" not in p.stderr
    p = cli("--input", str(src), "--dry-run", "--output", str(tmp_path / "o2"), "-q")
    assert p.returncode == 0 and "skipped 1 bad input line" in p.stdout


@needs_shared("slices_nasty.jsonl")
@pytest.mark.slow
def test_real_nasty_file_runs_the_good_lines_and_counts_the_bad(tmp_path, cli):
    out = tmp_path / "o"
    p = cli(
        "--input", str(SHARED_DATA / "slices_nasty.jsonl"), "--dry-run", "-q", "--output", str(out)
    )
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    meta = read_metadata(out)
    c = meta["counts"]
    assert c["slices"] == 8 and c["bad_lines"] == 10 and c["duplicate_slices"] == 2
    assert c["bad_line_reasons"]["invalid_json"] == 1
    assert any("slices_nasty.jsonl:4:" in b for b in meta["bad_lines"])
    raw = read_jsonl(out / "generated_raw.jsonl")
    assert {r["slice_id"] for r in raw} >= {"n-002", "12"}


def test_missing_key_variable_is_a_config_error_before_any_call(tmp_path, monkeypatch, cli):
    cfgp = tmp_path / "c.json"
    cfgp.write_text(json.dumps({"generator": {"api_key_env": "SFT_DISTILL_TEST_UNSET_KEY"}}))
    monkeypatch.delenv("SFT_DISTILL_TEST_UNSET_KEY", raising=False)
    p = cli("--input", str(SLICES), "--config", str(cfgp), "--output", str(tmp_path / "o"))
    assert p.returncode == 2 and "SFT_DISTILL_TEST_UNSET_KEY" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "o" / "cache.sqlite3").exists()
