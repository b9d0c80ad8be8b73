"""manifest.json (replayable data) and the run-level quality floors."""

from __future__ import annotations

import json

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.simulator.server import SimulatorConfig, run_in_thread
from tests.helpers import SLICES, cli_config, read_jsonl, run_args, sim_config


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_manifest_is_identical_across_two_identical_runs(sim, tmp_path):
    results = []
    for name in ("a", "b"):
        cfg = sim_config(sim, output_dir=str(tmp_path / name))
        results.append(await DatasetDistillationPipeline(cfg, show_progress=False).run(SLICES))
    a, b = (r.output_dir / "manifest.json" for r in results)
    assert a.read_bytes() == b.read_bytes()
    manifest = json.loads(a.read_text(encoding="utf-8"))
    train_ids = {r["id"] for r in read_jsonl(results[0].output_dir / "train.jsonl")}
    assert set(manifest["samples"]["train"]) == train_ids
    assert manifest["source"]["input_blake2b"] and manifest["config_blake2b"]
    assert manifest["prompt_versions"]["generation"] and manifest["version"]
    assert "sk-test" not in a.read_text(encoding="utf-8")


@pytest.mark.slow
async def test_manifest_changes_when_the_config_does(sim, tmp_path):
    digests = []
    for name, threshold in (("a", 7.0), ("b", 8.0)):
        cfg = sim_config(sim, output_dir=str(tmp_path / name), min_score_threshold=threshold)
        r = await DatasetDistillationPipeline(cfg, show_progress=False).run(SLICES)
        digests.append(json.loads((r.output_dir / "manifest.json").read_text())["config_blake2b"])
    assert digests[0] != digests[1]


@pytest.mark.parametrize(
    ("floor", "fragment"),
    [
        ({"min_keep_rate": 0.99}, "keep rate"),
        ({"min_mean_score": 9.9}, "mean score"),
        ({"min_exec_pass_rate": 0.5}, "no SQL was executed"),
    ],
)
@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_quality_floors_fail_the_run_and_say_why(sim, tmp_path, floor, fragment):
    cfg = sim_config(sim, output_dir=str(tmp_path / "o"), **floor)
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(SLICES)
    assert len(result.quality_problems) == 1 and fragment in result.quality_problems[0]
    assert result.metadata["quality_gates"]["passed"] is False


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_quality_floors_that_hold_pass(sim, tmp_path):
    cfg = sim_config(sim, output_dir=str(tmp_path / "o"), min_keep_rate=0.1, min_mean_score=5)
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(SLICES)
    assert result.quality_problems == [] and result.metadata["quality_gates"]["passed"] is True
    assert 5 < result.metadata["quality_gates"]["mean_score"] <= 10


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_cli_exits_4_when_a_quality_floor_fails(tmp_path, cli):
    with run_in_thread(SimulatorConfig()) as sim:
        (tmp_path / "c.json").write_text(json.dumps(cli_config(sim.url, min_keep_rate=0.99)))
        p = cli("run", *run_args(SLICES, tmp_path / "o", tmp_path / "c.json"))
    assert p.returncode == 4, p.stderr
    assert "quality gate failed: keep rate" in p.stderr
