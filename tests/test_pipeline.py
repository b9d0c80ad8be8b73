"""The whole pipeline against the simulator over loopback HTTP, as the README describes it."""

from __future__ import annotations

import json

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.errors import InputError
from sft_distill.simulator.server import Simulator, SimulatorConfig, run_in_thread
from tests.helpers import SLICES, read_jsonl, read_metadata, sim_config


async def run(sim, tmp_path, input_path=SLICES, **overrides):
    cfg = sim_config(sim, output_dir=str(tmp_path / "out"), **overrides)
    return await DatasetDistillationPipeline(cfg, show_progress=False).run(input_path)


async def test_example_job_writes_valid_outputs(sim, tmp_path):
    result = await run(sim, tmp_path, gates=[])  # every sample judged (see the test below)
    out = result.output_dir
    train, val, raw = (
        read_jsonl(out / f) for f in ("train.jsonl", "val.jsonl", "generated_raw.jsonl")
    )
    meta = read_metadata(out)
    c = meta["counts"]
    assert c["slices"] == 8 and c["chunks"] > c["slices"]  # long slices were split
    # a question repeating an earlier one of its slice is dropped unjudged (gen-v2)
    repeats = c["dropped"].get("duplicate_question", 0)
    assert len(raw) == c["samples_generated"] == c["samples_evaluated"] + repeats > 0
    assert len(train) == c["train"] and len(val) == c["val"]
    assert c["train"] + c["val"] == c["after_dedup"] <= c["passed_thresholds"]
    assert sum(c["dropped"].values()) == len(raw) - c["after_dedup"]
    assert abs(c["train"] / c["after_dedup"] - 0.9) < 0.1
    for row in train + val:
        assert [t["from"] for t in row["conversations"]] == ["human", "gpt"]
        assert all(t["value"].strip() for t in row["conversations"])
        assert row["avg_score"] >= 7.0
        assert set(row["dimension_scores"]) == {"judge-a", "judge-b"}
        assert row["slice_id"]
    ids = [r["id"] for r in raw]
    assert len(ids) == len(set(ids))
    judged = [r for r in raw if r["drop_reason"] != "duplicate_question"]
    assert len(judged) == c["samples_evaluated"] and all(len(r["judgements"]) == 2 for r in judged)
    # usage per model agrees with what the server saw
    calls = sum(u["calls"] for u in meta["usage"].values())
    assert calls == sim.stats["chat_requests"]
    assert meta["usage"]["generator"]["calls"] == c["chunks"]
    assert meta["scores"]["primary"]["model"] == "judge-a"
    assert 0 < meta["scores"]["primary"]["mean"]["accuracy"] <= 10
    assert meta["simulator"] is False and meta["version"]


async def test_near_duplicates_are_dropped_naming_the_kept_sample(sim, tmp_path):
    # Dedup alone: with the default score floors, the planted pairs of this input happen to ask
    # about "the material" (standalone 2) and are dropped before dedup sees them.
    result = await run(sim, tmp_path, score_floors=None, gates=[])
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    kept = {r["id"] for r in read_jsonl(result.output_dir / "train.jsonl")} | {
        r["id"] for r in read_jsonl(result.output_dir / "val.jsonl")
    }
    dups = [r for r in raw if r["drop_reason"] == "duplicate"]
    assert dups, "the simulator plants near-duplicates; dedup should find some"
    by_id = {r["id"]: r for r in raw}
    for d in dups:
        assert d["duplicate_of"] in kept
        assert by_id[d["duplicate_of"]]["avg_score"] >= d["avg_score"]
    assert result.counts.dropped["duplicate"] == len(dups)


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_rerun_pays_nothing_twice_and_gives_the_same_dataset(sim, tmp_path):
    first = await run(sim, tmp_path)
    calls = sim.stats["chat_requests"]
    train1 = (first.output_dir / "train.jsonl").read_bytes()
    second = await run(sim, tmp_path)
    assert sim.stats["chat_requests"] == calls
    assert (second.output_dir / "train.jsonl").read_bytes() == train1
    assert second.metadata["usage"]["generator"]["this_invocation"]["cached"] == first.counts.chunks


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_changed_threshold_rerun_makes_zero_calls(sim, tmp_path):
    first = await run(sim, tmp_path)
    calls = sim.stats["chat_requests"]
    second = await run(sim, tmp_path, min_score_threshold=8.5)
    assert sim.stats["chat_requests"] == calls
    assert second.counts.passed_thresholds < first.counts.passed_thresholds


async def test_api_key_never_reaches_any_output(sim, tmp_path):
    key = "sk-LEAKCHECK-7f3a9b"
    ep = {"api_base": sim.url, "api_key": key, "max_retries": 0}
    cfg = sim_config(
        sim,
        output_dir=str(tmp_path / "out"),
        generator={**ep, "model": "teacher-sim"},
        evaluators={
            "primary": {**ep, "model": "judge-a"},
            "secondary": {
                "api_base": "http://127.0.0.1:9/v1",
                "api_key": key,
                "model": "judge-down",
                "max_retries": 0,
            },
        },
        min_votes=1,
    )
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(SLICES)
    assert result.failures > 0  # the unreachable judge produced error text
    files = [p for p in result.output_dir.rglob("*") if p.is_file()]
    assert len(files) >= 5
    for p in files:
        assert key.encode() not in p.read_bytes(), p.name
    assert sim.stats["auth_headers_seen"] > 0  # the key was sent, just never written


@pytest.mark.slow
async def test_failed_evaluator_casts_no_vote_and_is_recorded(sim, tmp_path):
    ep = {"api_base": sim.url, "api_key": "k", "max_retries": 0}
    down = {
        "api_base": "http://127.0.0.1:9/v1",
        "api_key": "k",
        "model": "judge-down",
        "max_retries": 1,
        "timeout": 2,
        # Every call fails here; the judge must not stop the run (which it would by default
        # after 5 in a row, see test_faults) for its failed votes to be seen on every sample.
        "max_consecutive_failures": 0,
    }
    cfg = sim_config(
        sim,
        output_dir=str(tmp_path / "out"),
        generator={**ep, "model": "teacher-sim"},
        evaluators={"primary": {**ep, "model": "judge-a"}, "secondary": down},
        min_votes=1,
        gates=[],  # every sample judged
    )
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(SLICES)
    # a question repeating an earlier one of its slice is dropped as generated, unjudged (gen-v2)
    raw = [
        r
        for r in read_jsonl(result.output_dir / "generated_raw.jsonl")
        if r["drop_reason"] != "duplicate_question"
    ]
    for r in raw:
        failed = next(j for j in r["judgements"] if j["evaluator"] == "secondary")
        ok = next(j for j in r["judgements"] if j["evaluator"] == "primary")
        assert failed["error"] and "connection error" in failed["error"]
        assert r["avg_score"] == pytest.approx(ok["weighted_mean"])  # not lowered by the failure
        floors_met = ok["scores"]["accuracy"] >= 6 and ok["scores"]["standalone"] >= 5
        assert r["votes"] == (1 if ok["weighted_mean"] >= 7.0 and floors_met else 0)
    failures = read_jsonl(result.output_dir / "failures.jsonl")
    assert len(failures) == len(raw) == result.failures
    assert {f["endpoint"] for f in failures} == {"secondary"}
    assert all(f["attempts"] == 2 and f["sample_id"] for f in failures)
    assert result.counts.train + result.counts.val > 0


@pytest.mark.slow
async def test_generation_and_evaluation_overlap(tmp_path):
    lines = [
        json.dumps(
            {"id": f"s{i}", "content": f"第{i}条 保险人应当及时赔付。投保人应当如实告知第{i}项。"},
            ensure_ascii=False,
        )
        for i in range(30)
    ]
    src = tmp_path / "s.jsonl"
    src.write_text("\n".join(lines), encoding="utf-8")
    async with Simulator(SimulatorConfig(latency_ms=20)) as sim:
        cfg = sim_config(sim, output_dir=str(tmp_path / "out"), samples_per_slice=1)
        cfg = cfg.model_copy(
            update={"generator": cfg.generator.model_copy(update={"max_concurrent": 2})}
        )
        await DatasetDistillationPipeline(cfg, show_progress=False).run(src)
        kinds = [k for k, _model, _status in sim.requests_log]
    first_eval = kinds.index("evaluation")
    last_gen = len(kinds) - 1 - kinds[::-1].index("generation")
    assert first_eval < last_gen / 2  # judging started long before generation ended


async def test_bad_lines_are_skipped_and_counted(sim, tmp_path):
    src = tmp_path / "mixed.jsonl"
    src.write_text(
        '{"id": "a", "content": "第一条 为了规范保险活动，制定本法。"}\n'
        "{broken\n"
        '{"id": "b"}\n'
        '{"content": "Article V. The Congress shall propose Amendments to this Constitution."}\n',
        encoding="utf-8",
    )
    result = await run(sim, tmp_path, input_path=src)
    assert result.counts.slices == 2 and result.counts.bad_lines == 2
    meta = result.metadata
    assert any("mixed.jsonl:2" in b for b in meta["bad_lines"])
    assert any("mixed.jsonl:3" in b for b in meta["bad_lines"])


async def test_input_without_any_usable_slice_is_an_input_error(sim, tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text("{broken\n[1]\n", encoding="utf-8")
    with pytest.raises(InputError, match="no usable slice"):
        await run(sim, tmp_path, input_path=src)


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_dry_run_uses_the_builtin_simulator(tmp_path):
    pipeline = DatasetDistillationPipeline({"output_dir": str(tmp_path / "o")}, show_progress=False)
    result = await pipeline.run(SLICES, dry_run=True)
    assert result.metadata["simulator"] is True
    assert result.counts.train > 0


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_custom_embed_fn_is_used_for_dedup(sim, tmp_path):
    import numpy as np

    calls = []

    def embed(texts):
        calls.append(len(texts))
        # identical vectors for texts sharing their first 12 characters
        return np.array([[hash(t[:12]) % 97 + 1.0, len(t[:12])] for t in texts])

    cfg = sim_config(sim, output_dir=str(tmp_path / "out"), embed_batch_size=16)
    result = await DatasetDistillationPipeline(cfg, embed_fn=embed, show_progress=False).run(SLICES)
    assert result.metadata["dedup"]["method"] == "embedding"
    assert sum(calls) == result.counts.passed_thresholds and max(calls) <= 16


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_run_sync_works_inside_a_running_loop(tmp_path):
    import asyncio

    with run_in_thread(SimulatorConfig()) as sim:
        cfg = sim_config(sim, output_dir=str(tmp_path / "out"))

        async def notebook_cell():
            return DatasetDistillationPipeline(cfg, show_progress=False).run_sync(SLICES)

        result = asyncio.run(notebook_cell())
    assert result.counts.train > 0


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        (
            {"accuracy": 8, "completeness": 7, "logicality": 9, "helpfulness": 8, "safety": 10},
            {"accuracy": 8.0, "safety": 10.0},
        ),
        (
            {
                "accuracy": "4.5/5",
                "completeness": "8/10",
                "logicality": "9分",
                "helpfulness": 8,
                "safety": 10,
            },
            {"accuracy": 9.0, "completeness": 8.0, "logicality": 9.0},
        ),
        (
            {
                "accuracy": 85,
                "completeness": 70,
                "logicality": 90,
                "helpfulness": 80,
                "safety": 100,
            },
            {"accuracy": 8.5, "safety": 10.0},
        ),
    ],
)
def test_judge_scores_are_read_on_a_0_to_10_scale(scores, expected):
    from sft_distill.llm.transport import ChatResult
    from sft_distill.stages.judge import parse_scores

    got, _ = parse_scores(
        ChatResult(content=json.dumps(scores), reasoning=None, finish_reason="stop", model="m")
    )
    for dim, value in expected.items():
        assert got[dim] == pytest.approx(value)


@pytest.mark.parametrize(
    "scores",
    [
        {"safety": 10},  # the other dimensions are missing: this must not cast a vote
        {"accuracy": 800, "completeness": 7, "logicality": 9, "helpfulness": 8, "safety": 10},
    ],
)
def test_judge_replies_missing_dimensions_or_out_of_range_are_rejected(scores):
    from sft_distill.llm.transport import ChatResult
    from sft_distill.stages.judge import parse_scores

    with pytest.raises(ValueError):
        parse_scores(
            ChatResult(content=json.dumps(scores), reasoning=None, finish_reason="stop", model="m")
        )


@pytest.mark.slow
async def test_rerun_does_not_embed_again(sim, tmp_path):
    import numpy as np

    calls = []

    async def embed(texts):
        calls.append(len(texts))
        return np.array([[len(t) % 7 + 1.0, t.count("的") + 1.0, 1.0] for t in texts])

    cfg = sim_config(sim, output_dir=str(tmp_path / "out"))
    first = await DatasetDistillationPipeline(cfg, embed_fn=embed, show_progress=False).run(SLICES)
    embedded = sum(calls)
    assert embedded == first.counts.passed_thresholds > 0
    second = await DatasetDistillationPipeline(cfg, embed_fn=embed, show_progress=False).run(SLICES)
    assert sum(calls) == embedded  # every vector came from the cache
    assert second.counts.after_dedup == first.counts.after_dedup
    assert not list((tmp_path / "out").glob("*.spill*"))  # spill files are cleaned up


@pytest.mark.slow
async def test_report_gathered_while_streaming_equals_a_recount_of_the_raw_file(sim, tmp_path):
    """The pipeline builds the report as samples arrive; refilter recounts the final raw file."""
    from sft_distill.outputs.report import REPORT_FILE, collect_examples, compute_report
    from sft_distill.outputs.report_html import render_html

    # 8 samples a slice: with the default score floors fewer samples reach dedup, and at 3 a
    # slice none of the planted near-duplicates of this input does.
    result = await run(sim, tmp_path, max_per_slice=1, samples_per_slice=8, gates=[])
    out = result.output_dir
    meta = read_metadata(out)
    # low scores, near-duplicates and the per-slice cap all drop samples after judging
    assert {"duplicate", "capped", "low_votes"} <= set(meta["report"]["drop_reasons"])
    recount = compute_report(out / "generated_raw.jsonl", meta)
    streamed = meta["report"]
    assert streamed["kept"] == meta["counts"]["after_dedup"] - meta["counts"]["dropped"]["capped"]
    # per-call latencies exist only in the run; the recount falls back to the stored figures
    assert {k: v for k, v in streamed.items() if k != "latency"} == {
        k: v for k, v in recount.items() if k != "latency"
    }
    examples = collect_examples(out / "generated_raw.jsonl", 3)
    assert {e["drop_reason"] for e in examples["dropped"]} >= {"duplicate", "capped"}
    html = (out / REPORT_FILE).read_text(encoding="utf-8")
    assert html == render_html(streamed, examples)
