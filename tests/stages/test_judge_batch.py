"""Issue 13: prompts laid out for prefix caches, cache_control markers, and batched judging
(several samples of one chunk per judge call) against the simulator over loopback HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.llm.prompts import (
    BatchItem,
    answer_messages,
    evaluation_batch_messages,
    evaluation_messages,
    generation_messages,
    iset_answer_messages,
    parse_evaluation_batch_prompt,
    question_messages,
)
from sft_distill.simulator.server import Simulator, SimulatorConfig
from tests.helpers import cli_config, make_input, read_jsonl, read_metadata, sim_config

DOC = (
    "《中华人民共和国保险法》第十六条：订立保险合同，保险人就保险标的或者被保险人的有关情况提出询问的，投保人应当如实告知。"
    * 3
)


# --- layout: static, then the chunk, then what varies -----------------------------------------


def _user(messages: list[dict[str, Any]]) -> str:
    return next(m["content"] for m in messages if m["role"] == "user")


@pytest.mark.parametrize(
    ("build", "variable"),
    [
        (lambda: evaluation_messages(DOC, "问题甲？", "", "回答甲。"), "问题甲？"),
        (
            lambda: evaluation_batch_messages(
                DOC,
                [BatchItem("1", "问题甲？", "", "回答甲。"), BatchItem("2", "问题乙？", "", "乙")],
            ),
            "问题甲？",
        ),
        (lambda: generation_messages(DOC, 3, previous=["以前的问题？"]), "以前的问题？"),
        (lambda: question_messages(DOC, 3, previous=["以前的问题？"]), "以前的问题？"),
        (lambda: answer_messages(DOC, "问题甲？"), "问题甲？"),
        (lambda: iset_answer_messages("问题甲？", document=DOC, reference="参考"), "问题甲？"),
    ],
    ids=["judge", "judge_batch", "generation", "questions", "answer", "iset_answer"],
)
def test_layout_puts_the_chunk_before_the_sample_or_task(build, variable):
    messages = build()
    user = _user(messages)
    assert user.index(DOC[:40]) < user.index(variable)
    # Nothing per request before the chunk: the system message holds none of it either.
    assert variable not in messages[0]["content"] or messages[0]["role"] == "user"


def test_judge_requests_of_one_chunk_share_everything_up_to_the_sample():
    a = evaluation_messages(DOC, "问题甲？", "", "回答甲。")
    b = evaluation_messages(DOC, "问题乙？", "", "回答乙。")
    assert a[0] == b[0]
    cut = _user(a).index("<sample>")
    assert _user(a)[:cut] == _user(b)[:cut] and DOC[:40] in _user(a)[:cut]


def test_batch_prompt_reads_back_and_ignores_a_sample_inside_the_document():
    doc = DOC + '\n<sample id="9">\n<instruction>\n假的\n</instruction>'
    items = [
        BatchItem("1", "问题甲？", "", "回答甲。"),
        BatchItem("2", "问题乙？", "x", "乙", "参考"),
    ]
    document, samples = parse_evaluation_batch_prompt(_user(evaluation_batch_messages(doc, items)))
    assert document == doc
    assert [(s["id"], s["instruction"], s["reference"]) for s in samples] == [
        ("1", "问题甲？", ""),
        ("2", "问题乙？", "参考"),
    ]


# --- cache_control ------------------------------------------------------------------------------


async def test_cache_control_marks_the_shared_block_and_keeps_replies_and_keys(tmp_path):
    cfg = SimulatorConfig(keep_prompts=True, prefix_cache_min_tokens=256)
    async with Simulator(cfg) as sim:
        ep = {"api_base": sim.url, "api_key": "sk-test-0000", "api_key_env": None}
        ep = {**ep, "cache_control": True}
        config = sim_config(
            sim,
            generator={**ep, "model": "teacher-sim"},
            evaluators={"primary": {**ep, "model": "judge-a"}, "secondary": None},
            min_votes=1,
            gates=[],
            judge_batch_size=1,
            output_dir=str(tmp_path / "out"),
        )
        inp = make_input(tmp_path / "in.jsonl", n=4)
        result = await DatasetDistillationPipeline(config).run(inp)
        assert result.counts.samples_evaluated > 0
        bodies = [json.loads(b) for b in sim.bodies]
        judged = [b for b in bodies if b["model"] == "judge-a"]
        assert judged
        for body in judged:
            parts = body["messages"][-1]["content"]
            assert isinstance(parts, list) and len(parts) == 2
            assert parts[0]["cache_control"] == {"type": "ephemeral"}
            assert parts[0]["text"].endswith("</document>\n")
            assert "cache_control" not in parts[1] and parts[1]["text"].startswith("<sample>")
        generated = [b for b in bodies if b["model"] == "teacher-sim"]
        assert all(b["messages"][-1]["content"][0]["cache_control"] for b in generated)
        # The judges' calls about one chunk hit the simulator's prefix cache.
        assert sim.stats["cached_prompt_tokens"] > 0
        sent = sim.stats["chat_requests"]
        # Stable keys: the same run again is served from the cache.
        await DatasetDistillationPipeline(config).run(inp)
        assert sim.stats["chat_requests"] == sent


def test_dry_run_judges_report_cached_prompt_tokens(cli, tmp_path):
    inp = make_input(tmp_path / "in.jsonl", n=6)
    assert cli("-i", str(inp), "-o", str(tmp_path / "out"), "--dry-run", "-q").returncode == 0
    usage = read_metadata(tmp_path / "out")["usage"]
    for judge in ("primary", "secondary"):
        assert usage[judge]["calls"] > 0
        assert usage[judge]["cached_prompt_tokens"] > 0
    assert usage["generator"]["prompt_tokens"] > 0


# --- batched judging --------------------------------------------------------------------------


def _config(sim: Simulator, out: Path, **kw: Any):
    # Every judge asked about every sample: these tests count and compare each judge's calls
    # (early_drop: tests/stages/test_early_drop.py).
    kw.setdefault("early_drop", False)
    return sim_config(sim, gates=[], samples_per_slice=5, output_dir=str(out), **kw)


def _judged(out: Path) -> dict[str, dict[str, Any]]:
    """Each judged sample's scores per evaluator, and its decision."""
    rows = read_jsonl(out / "generated_raw.jsonl")
    return {
        r["id"]: {
            "scores": {j["evaluator"]: j["scores"] for j in r["judgements"]},
            "passed": r["passed"],
        }
        for r in rows
        if r["judgements"]
    }


async def _judge_calls(sim: Simulator) -> int:
    return sum(n for m, n in sim.stats["by_model"].items() if m.startswith("judge"))


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_batched_judging_one_call_per_chunk_same_scores_as_one_by_one(tmp_path):
    inp = make_input(tmp_path / "in.jsonl", n=8)
    async with Simulator(SimulatorConfig()) as sim:
        one = await DatasetDistillationPipeline(
            _config(sim, tmp_path / "one", judge_batch_size=1)
        ).run(inp)
        single_calls = await _judge_calls(sim)
        sim.reset_stats()
        many = await DatasetDistillationPipeline(_config(sim, tmp_path / "auto")).run(inp)
        batch_calls = await _judge_calls(sim)
    a, b = _judged(tmp_path / "one"), _judged(tmp_path / "auto")
    assert a == b and len(a) == one.counts.samples_evaluated == many.counts.samples_evaluated
    assert many.counts.evaluation_failures == 0
    rows = read_jsonl(tmp_path / "auto" / "generated_raw.jsonl")
    chunks = {(r["slice_id"], r["chunk_index"]) for r in rows if r["judgements"]}
    assert single_calls == 2 * len(a)
    assert batch_calls == 2 * len(chunks) < single_calls


async def test_batch_with_a_missing_and_a_malformed_entry_reasks_only_those(tmp_path):
    inp = make_input(tmp_path / "in.jsonl", n=4)
    async with Simulator(SimulatorConfig()) as sim:
        await DatasetDistillationPipeline(_config(sim, tmp_path / "one", judge_batch_size=1)).run(
            inp
        )
    cfg = SimulatorConfig(judge_batch_faults=True, keep_prompts=True)
    async with Simulator(cfg) as sim:
        result = await DatasetDistillationPipeline(
            _config(
                sim,
                tmp_path / "auto",
                evaluators={"primary": _ep(sim, "judge-a"), "secondary": None},
                min_votes=1,
            )
        ).run(inp)
        prompts = [p for p in sim.prompts if '<sample id="' in p]
    assert result.counts.evaluation_failures == 0
    by_chunk: dict[str, list[list[str]]] = {}
    for p in prompts:
        document, samples = parse_evaluation_batch_prompt(p)
        by_chunk.setdefault(document, []).append([s["instruction"] for s in samples])
    big = [asked for asked in by_chunk.values() if len(asked[0]) >= 3]
    assert big, "the job must give batches of 3 or more"
    for asked in by_chunk.values():
        if len(asked[0]) < 3:
            assert len(asked) == 1  # answered in full: nothing asked again
            continue
        # One entry left out, one spoiled: exactly those two are asked again, together (a
        # batch of two, which the simulator answers in full), and nothing more.
        first, *again = asked
        assert len(again) == 1 and len(again[0]) == 2 and set(again[0]) < set(first)
    # Every sample judged once in the end, with the scores one-by-one judging gives.
    one, auto = _judged(tmp_path / "one"), _judged(tmp_path / "auto")
    assert {k: v["scores"]["primary"] for k, v in auto.items()} == {
        k: v["scores"]["primary"] for k, v in one.items()
    }


def _ep(sim: Simulator, model: str) -> dict[str, Any]:
    return {"api_base": sim.url, "api_key": "sk-test-0000", "api_key_env": None, "model": model}


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_batched_replies_are_kept_per_sample_rerun_and_batch_size_change_send_nothing(
    tmp_path,
):
    inp = make_input(tmp_path / "in.jsonl", n=6)
    async with Simulator(SimulatorConfig()) as sim:
        first = await DatasetDistillationPipeline(_config(sim, tmp_path / "out")).run(inp)
        assert first.counts.samples_evaluated > 0
        for size in ("auto", 1, 2):
            sim.reset_stats()
            await DatasetDistillationPipeline(
                _config(sim, tmp_path / "out", judge_batch_size=size)
            ).run(inp)
            assert sim.stats["chat_requests"] == 0, size
        # A third evaluator sends its own calls only, in batches.
        sim.reset_stats()
        three = {
            "primary": _ep(sim, "judge-a"),
            "secondary": _ep(sim, "judge-b"),
            "third": _ep(sim, "judge-c"),
        }
        await DatasetDistillationPipeline(_config(sim, tmp_path / "out", evaluators=three)).run(inp)
        assert set(sim.stats["by_model"]) == {"judge-c"}
        rows = read_jsonl(tmp_path / "out" / "generated_raw.jsonl")
        chunks = {(r["slice_id"], r["chunk_index"]) for r in rows if r["judgements"]}
        assert sim.stats["by_model"]["judge-c"] == len(chunks)


async def test_per_evaluator_batch_size_overrides_the_run(tmp_path):
    inp = make_input(tmp_path / "in.jsonl", n=4)
    async with Simulator(SimulatorConfig()) as sim:
        evaluators = {
            "primary": _ep(sim, "judge-a"),
            "secondary": {**_ep(sim, "judge-b"), "judge_batch_size": 1},
        }
        result = await DatasetDistillationPipeline(
            _config(sim, tmp_path / "out", evaluators=evaluators)
        ).run(inp)
        by_model = sim.stats["by_model"]
    assert by_model["judge-b"] == result.counts.samples_evaluated > by_model["judge-a"]


@pytest.mark.parametrize("bad", [0, -1, "big", 1.5, True])
def test_a_bad_judge_batch_size_is_a_one_line_config_error(cli, tmp_path, bad):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(cli_config("http://127.0.0.1:9", judge_batch_size=bad)))
    inp = make_input(tmp_path / "in.jsonl", n=1)
    run = cli("-i", str(inp), "-o", str(tmp_path / "out"), "-c", str(cfg), "--dry-run", "-q")
    assert run.returncode == 2
    assert "judge_batch_size" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


async def test_simulator_scores_a_sample_in_a_batch_as_it_scores_it_alone():
    from sft_distill.llm.client import LLMClient
    from sft_distill.stages.judge import parse_judgement, parse_judgement_batch
    from tests.helpers import endpoint

    items = [
        BatchItem(str(i), f"问题{i}：如实告知义务是什么？", "", f"回答{i}：投保人应当如实告知。")
        for i in range(1, 4)
    ]
    async with (
        Simulator(SimulatorConfig()) as sim,
        LLMClient("primary", endpoint(sim, "judge-a"), cache=None) as client,
    ):
        batch, _ = await client.chat(
            evaluation_batch_messages(DOC, items), parse_judgement_batch, kind="judge_batch"
        )
        for item in items:
            alone, _ = await client.chat(
                evaluation_messages(DOC, item.instruction, item.input, item.output),
                parse_judgement,
                kind="judge",
            )
            assert batch.by_id()[item.id].score_dict() == alone.score_dict()


# --- the estimate plans batched judging -------------------------------------------------------


def test_estimate_counts_one_judge_call_per_request_with_its_samples(tmp_path):
    import math

    from sft_distill.config.merging import build_config
    from sft_distill.planning.estimate import estimate, estimate_tokens, messages_tokens

    doc = "保险合同是投保人与保险人约定保险权利义务关系的协议。" * 4
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "x", "content": doc}, ensure_ascii=False) + "\n", "utf-8")
    cfg = build_config({"samples_per_slice": 3, "evaluators": {"secondary": None}, "min_votes": 1})
    _, judge = estimate(path, cfg).endpoints
    template = messages_tokens(evaluation_batch_messages("", []))
    assert judge.calls == 1
    assert judge.prompt_tokens == template + math.ceil(len(doc) / 1.6) + 3 * 250
    assert judge.completion_tokens == 3 * 400 and judge.completion_tokens_max == 3 * 1024
    assert estimate_tokens(doc) == math.ceil(len(doc) / 1.6)


async def test_batched_estimate_matches_the_run(sim, tmp_path):
    from sft_distill.planning.estimate import estimate
    from tests.helpers import SLICES

    cfg = sim_config(sim, gates=[], output_dir=str(tmp_path / "out"), early_drop=False)
    est = estimate(SLICES, cfg)
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(SLICES)
    usage = result.metadata["usage"]
    by_name = {e.endpoint: e for e in est.endpoints}
    # A repeated question leaves its batch one sample short, not one call short: the estimate
    # is exact unless a request's samples were all repeats.
    for judge in ("primary", "secondary"):
        assert by_name[judge].calls == usage[judge]["calls"]
    assert by_name[judge].calls < est.expected_samples


# --- resume ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_during_batched_judging_then_rerun_gives_the_same_dataset(tmp_path):
    import os
    import signal
    import time

    from sft_distill.cli import main
    from sft_distill.simulator.server import run_in_thread
    from tests.helpers import outputs, run_args, start_cli, write_config

    with run_in_thread(SimulatorConfig(latency_ms=25, jitter_ms=15, seed=7)) as sim:
        inp = make_input(tmp_path / "in.jsonl")
        cfg = write_config(tmp_path / "c.json", sim.url, gates=[])
        sim.reset_stats()
        assert main(run_args(inp, tmp_path / "ref", cfg)) == 0
        reference = sim.stats()["chat_requests"]
        out = tmp_path / "out"
        sim.reset_stats()
        p = start_cli(*run_args(inp, out, cfg))
        deadline = time.monotonic() + 60
        while sim.stats()["chat_requests"] < reference // 2 and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=10)
        sim.reset_stats()
        assert main(run_args(inp, out, cfg)) == 0
        resent = sim.stats()["chat_requests"]
        assert 0 < resent < reference
        assert outputs(out) == outputs(tmp_path / "ref")
        sim.reset_stats()
        assert main(run_args(inp, out, cfg)) == 0
        assert sim.stats()["chat_requests"] == 0


@pytest.mark.parametrize("server", ["openai", "llamacpp", "json_object", "none"])
@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_batched_judging_through_every_structured_output_form(tmp_path, server):
    inp = make_input(tmp_path / "in.jsonl", n=4)
    async with Simulator(SimulatorConfig()) as sim:
        await DatasetDistillationPipeline(_config(sim, tmp_path / "one", judge_batch_size=1)).run(
            inp
        )
    async with Simulator(SimulatorConfig(structured_output=server, messy=True)) as sim:
        result = await DatasetDistillationPipeline(_config(sim, tmp_path / "auto")).run(inp)
        reasks = sim.stats["reasks"]
    assert result.counts.evaluation_failures == 0 and reasks == 0
    assert _judged(tmp_path / "auto") == _judged(tmp_path / "one")
    usage = result.metadata["usage"]["primary"]["this_invocation"]
    assert (
        usage["structured_output"]
        == {
            "openai": "json_schema",
            "llamacpp": "json_object_schema",
            "json_object": "json_object",
            "none": "none",
        }[server]
    )


async def test_a_batch_asks_for_reply_room_within_the_known_context(tmp_path):
    # vLLM-like: a prompt plus max_tokens over the context is refused with HTTP 400. A batch of 5
    # at 5 x 1,024 reply tokens would not fit; its max_tokens is cut to what the context leaves.
    inp = make_input(tmp_path / "in.jsonl", n=3)
    async with Simulator(SimulatorConfig(context_tokens=7000)) as sim:
        judge = {**_ep(sim, "judge-a"), "max_tokens": 1024, "context_tokens": 7000}
        result = await DatasetDistillationPipeline(
            _config(
                sim, tmp_path / "out", evaluators={"primary": judge, "secondary": None}, min_votes=1
            )
        ).run(inp)
        statuses = dict(sim.stats["by_status"])
        judge_calls = sim.stats["by_model"]["judge-a"]
    assert result.counts.evaluation_failures == 0
    assert set(statuses) == {"200"}
    rows = read_jsonl(tmp_path / "out" / "generated_raw.jsonl")
    assert (
        max(
            sum(
                1
                for r in rows
                if r["chunk_index"] == c["chunk_index"] and r["slice_id"] == c["slice_id"]
            )
            for c in rows
        )
        == 5
    )
    assert judge_calls == len({(r["slice_id"], r["chunk_index"]) for r in rows})


def test_auto_batches_keep_their_reply_within_8192_tokens():
    from sft_distill.config.merging import build_config

    cfg = build_config({"evaluators": {"primary": {"max_tokens": 2048}}})
    assert cfg.judge_batch_limits(cfg.evaluators["primary"]) == (4, 6000)
    assert cfg.judge_batch_limits(cfg.evaluators["secondary"]) == (8, 6000)
    cfg = build_config({"judge_batch_size": 3, "evaluators": {"primary": {"judge_batch_size": 1}}})
    assert cfg.judge_batch_limits(cfg.evaluators["primary"]) == (1, None)
    assert cfg.judge_batch_limits(cfg.evaluators["secondary"]) == (3, None)


def test_simulator_command_line_takes_judge_batch_faults():
    from sft_distill.simulator.cli import config_from_args, parse_args

    assert config_from_args(parse_args(["--judge-batch-faults"])).judge_batch_faults is True
    assert config_from_args(parse_args([])).judge_batch_faults is False
