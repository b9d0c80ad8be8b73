"""``sft-distill refilter`` and ``--estimate`` command-line pieces: exit codes and output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sft_distill.cli.estimate import EXIT_OK, print_estimate
from sft_distill.cli.flags import add_output_arguments, output_overrides
from sft_distill.cli.refilter import EXIT_USAGE, refilter_main
from sft_distill.config.merging import build_config
from tests.helpers import SLICES, read_jsonl, read_metadata, sim_config
from tests.raw_factory import scored, write_run


@pytest.fixture
async def run(sim, tmp_path: Path) -> Path:
    samples = [scored(f"s{i}", f"slice{i % 3}", (5.0 + i / 2, 6.0 + i / 3)) for i in range(9)]
    return write_run(tmp_path / "out", samples, sim_config(sim))


def test_output_flags_become_overrides():
    p = argparse.ArgumentParser()
    add_output_arguments(p)
    args = p.parse_args(
        ["--format", "sharegpt,openai", "--include-reasoning", "--split-by", "slice"]
    )
    assert output_overrides(args) == {
        "output_formats": "sharegpt,openai",
        "include_reasoning": True,
        "split_by": "slice",
    }
    assert output_overrides(p.parse_args([])) == {}


async def test_refilter_command(sim, run, capsys):
    code = refilter_main(
        ["--output", str(run), "--min-score-threshold", "8", "--format", "alpaca", "-q"]
    )
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "no LLM call" in out and "kept" in out and "(alpaca)" in out
    assert set(read_jsonl(run / "train.jsonl")[0]) >= {"instruction", "output"}
    meta = read_metadata(run)
    assert meta["config"]["min_score_threshold"] == 8.0
    assert sim.stats["requests"] == 0


async def test_refilter_command_config_file_and_errors(run, tmp_path, capsys):
    cfg = tmp_path / "changes.json"
    cfg.write_text(json.dumps({"dimension_weights": {"accuracy": 1}, "min_votes": 1}), "utf-8")
    assert refilter_main(["-o", str(run), "-c", str(cfg), "--min-votes", "2", "-q"]) == EXIT_OK
    meta = read_metadata(run)
    assert meta["config"]["min_votes"] == 2  # the flag wins over the file
    assert meta["config"]["dimension_weights"] == {"accuracy": 1.0}

    capsys.readouterr()
    assert refilter_main(["-o", str(tmp_path / "nope"), "-q"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("sft-distill refilter: error:") and "metadata.json" in err
    assert "Traceback" not in err
    cfg.write_text("[1, 2]", "utf-8")
    assert refilter_main(["-o", str(run), "-c", str(cfg), "-q"]) == EXIT_USAGE
    assert "must be a JSON object" in capsys.readouterr().err


async def test_print_estimate(sim, capsys):
    assert print_estimate(SLICES, sim_config(sim)) == EXIT_OK
    out = capsys.readouterr().out
    assert "13 chunks" in out and "teacher-sim" in out and "judge-a" in out
    assert sim.stats["requests"] == 0


def test_estimate_table_lines_up():
    from sft_distill.cli.estimate import format_estimate
    from sft_distill.planning.estimate import estimate

    text = format_estimate(estimate(SLICES, build_config({})))
    table = [
        line for line in text.splitlines() if line.startswith(("endpoint", "generator", "total"))
    ]
    assert len(table) == 3
    header, generator, total = table
    end = header.index("calls") + len("calls")
    assert generator[end - 3 : end] == " 13"  # numbers right-aligned under their heading
    assert total[end - 3 : end] == " 39"  # 13 teacher calls + 13 batched calls per judge
