"""early_drop (issue 13): a judge is not asked about a sample the judges before it have already
voted down. Against the simulator over loopback HTTP: the kept set is the one every judge would
give, the calls are fewer, refilter knows what it lacks and a rerun asks only that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.cli.refilter import format_refilter
from sft_distill.models import Judgement, ScoredSample
from sft_distill.planning.modes import estimate_source
from sft_distill.selection.calibration import calibration_report
from sft_distill.selection.refilter import refilter
from sft_distill.selection.thresholds import DROP_NOT_JUDGED, decide
from sft_distill.simulator.server import Simulator, SimulatorConfig
from sft_distill.sources.slices import SliceSource
from tests.helpers import make_input, read_jsonl, sim_config


def _config(sim: Simulator, out: Path, **kw: Any):
    # No gates: every sample reaches the judges.
    return sim_config(sim, gates=[], samples_per_slice=5, output_dir=str(out), **kw)


async def _run(sim: Simulator, out: Path, inp: Path, **kw: Any):
    cfg = _config(sim, out, **kw)
    return await DatasetDistillationPipeline(cfg, show_progress=False).run(inp)


def _raw(out: Path) -> dict[str, dict[str, Any]]:
    """The judged samples (a repeated question is dropped before any judge)."""
    return {r["id"]: r for r in read_jsonl(out / "generated_raw.jsonl") if r["judgements"]}


def _skipped(row: dict[str, Any]) -> list[str]:
    return [j["evaluator"] for j in row["judgements"] if j.get("skipped")]


def _votes(judgements: list[dict[str, Any]], cfg: Any) -> int:
    js = [Judgement(**j) for j in judgements]
    return decide(
        js, cfg.min_score_threshold, cfg.min_votes, cfg.dimension_weights, floors=cfg.score_floors
    ).votes


@pytest.mark.parametrize("batch_size", ["auto", 1])
async def test_early_drop_keeps_the_same_set_and_asks_fewer_calls(tmp_path, batch_size):
    inp = make_input(tmp_path / "in.jsonl", n=12)
    async with Simulator(SimulatorConfig()) as sim:
        cfg = _config(sim, tmp_path / "all")
        whole = await _run(
            sim, tmp_path / "all", inp, early_drop=False, judge_batch_size=batch_size
        )
        every = dict(sim.stats["by_model"])
        sim.reset_stats()
        early = await _run(sim, tmp_path / "early", inp, judge_batch_size=batch_size)
        fewer = dict(sim.stats["by_model"])
    # The files a user trains on are byte for byte the same: a kept sample was asked of all.
    for name in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / "early" / name).read_bytes() == (tmp_path / "all" / name).read_bytes()
    full, part = _raw(tmp_path / "all"), _raw(tmp_path / "early")
    assert full.keys() == part.keys()
    voted_down = {i for i, r in full.items() if _votes(r["judgements"][:1], cfg) == 0}
    assert voted_down and len(voted_down) < len(full), "the primary votes both ways here"
    for i, row in part.items():
        assert row["passed"] == full[i]["passed"]
        assert row["judgements"][0] == full[i]["judgements"][0]  # the primary: asked alike
        if i in voted_down:
            assert _skipped(row) == ["secondary"]
            assert row["judgements"][1]["scores"] == {}
            assert row["judgements"][1]["error"] is None
            assert row["drop_reason"] in ("low_votes", "below_floor")
        else:
            assert _skipped(row) == []
            assert row["judgements"][1] == full[i]["judgements"][1]
    # Only the secondary is spared work: one call per sample voted down when judged one by one,
    # the samples' share of its batches (and a chunk's whole call when it had no other) else.
    assert fewer["judge-a"] == every["judge-a"] and fewer["teacher-sim"] == every["teacher-sim"]
    if batch_size == 1:
        assert every["judge-b"] - fewer["judge-b"] == len(voted_down)
    else:
        assert fewer["judge-b"] <= every["judge-b"]
    used = {k: r.metadata["usage"]["secondary"] for k, r in (("all", whole), ("early", early))}
    for key in ("prompt_tokens", "completion_tokens"):
        assert used["early"][key] < used["all"][key]
    for key in ("calls", "prompt_tokens", "completion_tokens"):
        assert early.metadata["usage"]["primary"][key] == whole.metadata["usage"]["primary"][key]
    assert early.counts.judgements_skipped == len(voted_down)
    # A judgement not asked is written as such, and only then; the report says what it means.
    assert '"skipped":true' in (tmp_path / "early" / "generated_raw.jsonl").read_text("utf-8")
    assert "skipped" not in (tmp_path / "all" / "generated_raw.jsonl").read_text("utf-8")
    assert "not shown to every judge" in (tmp_path / "early" / "report.html").read_text("utf-8")
    assert "not shown to every judge" not in (tmp_path / "all" / "report.html").read_text("utf-8")


async def test_with_min_votes_1_every_judge_is_asked(tmp_path):
    # One vote of two carries a sample: no judge's "no" decides it, so nobody is spared.
    inp = make_input(tmp_path / "in.jsonl", n=8)
    async with Simulator(SimulatorConfig()) as sim:
        await _run(sim, tmp_path / "all", inp, early_drop=False, min_votes=1)
        every = dict(sim.stats["by_model"])
        sim.reset_stats()
        early = await _run(sim, tmp_path / "early", inp, min_votes=1)
        assert dict(sim.stats["by_model"]) == every
    assert early.counts.judgements_skipped == 0
    assert not any(_skipped(r) for r in _raw(tmp_path / "early").values())


async def test_three_judges_two_votes_the_third_is_asked_unless_both_said_no(tmp_path):
    inp = make_input(tmp_path / "in.jsonl", n=12)
    async with Simulator(SimulatorConfig()) as sim:
        ep = {"api_base": sim.url, "api_key_env": None, "max_retries": 2}
        evaluators = {
            "primary": {**ep, "model": "judge-a"},
            "secondary": {**ep, "model": "judge-b"},
            "tertiary": {**ep, "model": "judge-c"},
        }
        cfg = _config(sim, tmp_path / "out", evaluators=evaluators)
        await _run(sim, tmp_path / "out", inp, evaluators=evaluators)
    rows = _raw(tmp_path / "out")
    none = {i for i, r in rows.items() if _votes(r["judgements"][:2], cfg) == 0}
    assert none, "some sample gets no vote from the first two judges"
    for i, row in rows.items():
        # The first two are asked together (either alone cannot vote a sample down).
        assert _skipped(row) == (["tertiary"] if i in none else [])


async def test_refilter_names_what_a_judge_not_asked_could_change_and_a_rerun_asks_only_that(
    tmp_path,
):
    inp = make_input(tmp_path / "in.jsonl", n=12)
    out = tmp_path / "out"
    async with Simulator(SimulatorConfig()) as sim:
        await _run(sim, out, inp)
        skipped = sum(1 for r in _raw(out).values() if _skipped(r))
        assert skipped
        # Looser: a sample the primary voted down at 7 may carry its vote at 5, and then the
        # secondary's (never asked) decides it.
        looser = refilter(out, overrides={"min_score_threshold": 5.0})
        unknown = looser.counts["dropped"].get(DROP_NOT_JUDGED, 0)
        assert 0 < unknown <= skipped
        assert "not_judged" in format_refilter(looser) and "asks only those judges" in (
            format_refilter(looser)
        )
        # Stricter: nothing is unknown (a vote down stays down).
        stricter = refilter(out, overrides={"min_score_threshold": 8.0})
        assert DROP_NOT_JUDGED not in stricter.counts["dropped"]

        sim.reset_stats()
        again = await _run(sim, out, inp, min_score_threshold=5.0)
        asked = dict(sim.stats["by_model"])
        sim.reset_stats()
        await _run(sim, tmp_path / "all", inp, min_score_threshold=5.0, early_drop=False)
    # The rerun sent the secondary's calls the new threshold needs, and nothing else.
    assert set(asked) == {"judge-b"} and 0 < asked["judge-b"] <= unknown
    assert DROP_NOT_JUDGED not in again.counts.dropped
    for name in ("train.jsonl", "val.jsonl"):
        assert (out / name).read_bytes() == (tmp_path / "all" / name).read_bytes()


def test_the_estimate_says_later_judges_are_upper_bounds(tmp_path):
    inp = make_input(tmp_path / "in.jsonl", n=2)
    base = {"api_base": "http://127.0.0.1:9", "api_key_env": None}
    cfg = sim_config(type("S", (), {"url": base["api_base"]})())
    notes = estimate_source(SliceSource(inp), cfg).notes
    assert any(n.startswith("early_drop: secondary judges only") for n in notes)
    off = cfg.model_copy(update={"early_drop": False})
    assert not any("early_drop" in n for n in estimate_source(SliceSource(inp), off).notes)
    one = cfg.model_copy(update={"min_votes": 1})
    assert not any("early_drop" in n for n in estimate_source(SliceSource(inp), one).notes)


def test_calibration_warns_that_a_judge_did_not_see_every_labelled_sample():
    def sample(i: int, second: Judgement) -> ScoredSample:
        first = Judgement(
            evaluator="primary",
            model="a",
            scores={"accuracy": 3.0 + i % 6},
            weighted_mean=3.0 + i % 6,
        )
        return ScoredSample(
            id=f"s{i}", slice_id="x", instruction="q", output="a", judgements=[first, second]
        )

    seen = Judgement(evaluator="secondary", model="b", scores={"accuracy": 8.0}, weighted_mean=8)
    not_asked = Judgement(evaluator="secondary", model="b", skipped=True)
    samples = [sample(i, not_asked if i % 3 == 0 else seen) for i in range(30)]
    labels = {s.id: i % 2 == 0 for i, s in enumerate(samples)}
    report = calibration_report(samples, labels, threshold=7.0, min_votes=2)
    notes = [w for w in report["warnings"] if "early_drop" in w]
    assert notes and notes[0].startswith("10 labelled sample(s) were not shown to secondary")
