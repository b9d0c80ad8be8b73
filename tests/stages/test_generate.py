"""The teacher stage (gen-v2): chunks with their place, replies, question dedup, article coverage,
sequential chunks of a slice, two-stage generation; against the simulator over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sft_distill.cli import main
from sft_distill.config.merging import build_config
from sft_distill.llm.prompts import parse_generation_request
from sft_distill.llm.transport import ChatResult
from sft_distill.models import Slice
from sft_distill.pipeline import DatasetDistillationPipeline
from sft_distill.planning.estimate import estimate
from sft_distill.simulator.server import Simulator, SimulatorConfig
from sft_distill.sources.headings import article_coverage
from sft_distill.sources.reader import iter_slices
from sft_distill.stages.generate import (
    SliceArticles,
    SliceQuestions,
    chunk_requests,
    parse_answer,
    parse_questions,
    parse_samples,
    request_messages,
    slice_chunks,
)
from tests.helpers import SLICES, read_jsonl, read_metadata, sim_config

DENSITY = {"samples_per_article": 2}  # the density README recommends for laws


def reply(content: str) -> ChatResult:
    return ChatResult(content=content, reasoning=None, finish_reason="stop", model="m")


def slice_of(sid: str) -> Slice:
    return next(s for s in iter_slices(SLICES) if s.id == sid)


# --- replies ---------------------------------------------------------------------------------


def test_parse_samples_reads_the_new_shape_with_its_fields():
    content = json.dumps(
        {
            "samples": [
                {
                    "question_type": "calculation",
                    "difficulty": "Hard",
                    "instruction": "《保险法》第二十三条的核定期限如何计算？",
                    "input": "",
                    "evidence": ["情形复杂的，应当在三十日内作出核定"],
                    "output": "一般应及时核定，情形复杂的在三十日内核定。",
                },
                {"instruction": "", "output": "no question"},
            ]
        },
        ensure_ascii=False,
    )
    (item,) = parse_samples(reply(content))
    assert item["question_type"] == "calculation" and item["difficulty"] == "hard"
    assert item["evidence"] == ["情形复杂的，应当在三十日内作出核定"]
    assert item["_total"] == 2  # one item was not usable: counted as unparsable


def test_parse_samples_still_reads_old_cached_replies():
    legacy = json.dumps(
        [{"question": "Q1?", "answer": "A1."}, {"instruction": "Q2?", "output": "A2."}]
    )
    items = parse_samples(reply(legacy))
    assert [(i["instruction"], i["output"]) for i in items] == [("Q1?", "A1."), ("Q2?", "A2.")]
    assert all(i["evidence"] == [] and i["question_type"] is None for i in items)
    fenced = "```json\n" + json.dumps({"samples": [{"instruction": "Q", "output": "A"}]}) + "\n```"
    assert parse_samples(reply(fenced))[0]["instruction"] == "Q"
    with pytest.raises(ValueError):
        parse_samples(reply(json.dumps({"samples": [{"instruction": "only a question"}]})))


def test_parse_questions_and_answers():
    got = parse_questions(
        reply(json.dumps({"questions": [{"question_type": "case", "question": "Q1?"}, "Q2?"]}))
    )
    assert got == [
        {"question": "Q1?", "question_type": "case", "difficulty": None},
        {"question": "Q2?", "question_type": None, "difficulty": None},
    ]
    with pytest.raises(ValueError):
        parse_questions(reply('{"questions": []}'))
    answer = parse_answer(reply(json.dumps({"evidence": "第一句。", "answer": " A. "})))
    assert (answer["answer"], answer["evidence"]) == ("A.", ["第一句。"])
    assert parse_answer(reply("A plain-text answer.")) == {
        "answer": "A plain-text answer.",
        "evidence": [],
        "reasoning": None,
    }
    with pytest.raises(ValueError):
        parse_answer(reply(json.dumps({"answer": ""})))


# --- chunks ----------------------------------------------------------------------------------


def test_chunks_carry_the_title_and_heading_path_of_the_slice():
    cfg = build_config({})
    chunks = slice_chunks(slice_of("insurance-law"), cfg)
    assert [c.title for c in chunks] == ["保险法(2015-04-24)"] * len(chunks)
    assert chunks[0].heading_path == ["中华人民共和国保险法"]
    assert chunks[1].heading_path[-2:] == ["第二章 保险合同", "第二节 人身保险合同"]
    assert all(c.text == slice_of("insurance-law").content[c.start : c.start + len(c.text)]
               for c in chunks)  # fmt: skip
    header = parse_generation_request(
        request_messages(chunks[1], chunk_requests(chunks[1], cfg)[0], cfg)[1]["content"]
    ).header
    assert (
        header
        == "资料：《中华人民共和国保险法》(2015-04-24) › 第二章 保险合同 › 第二节 人身保险合同"
    )
    en = slice_chunks(slice_of("us-constitution-article-1"), cfg)
    assert en[1].heading_path[-1] == "Section 6"


def test_density_decides_each_chunks_samples_and_big_chunks_are_split():
    share = slice_chunks(slice_of("insurance-law"), build_config({"samples_per_slice": 3}))
    assert sum(c.n_samples for c in share) == 4  # shared, at least one per chunk
    cfg = build_config({"samples_per_article": True})
    chunks = slice_chunks(slice_of("insurance-law"), cfg)
    assert [c.n_samples for c in chunks] == [45, 47, 58, 36]
    parts = [chunk_requests(c, cfg) for c in chunks]
    assert [len(p) for p in parts] == [5, 5, 6, 4]
    assert all(p.n <= 10 for ps in parts for p in ps)
    per_1k = build_config({"samples_per_1k_chars": 2, "max_samples_per_request": 100})
    assert [
        len(chunk_requests(c, per_1k)) for c in slice_chunks(slice_of("insurance-law"), per_1k)
    ] == [1] * 4


# --- questions and articles of a slice -------------------------------------------------------


def test_questions_are_deduplicated_exactly_and_nearly_but_not_across_articles():
    q = SliceQuestions()
    q.add("《中华人民共和国保险法》第十六条规定了投保人的什么义务？", "a")
    assert q.duplicate_of("《中华人民共和国保险法》 第十六条规定了投保人的什么义务?") == "a"
    assert q.duplicate_of("请问《中华人民共和国保险法》第十六条规定了投保人的什么义务？") == "a"
    assert q.duplicate_of("《中华人民共和国保险法》第十七条规定了投保人的什么义务？") is None
    assert q.duplicate_of("投保人故意不履行如实告知义务，保险人可以怎么办？") is None
    assert q.texts == ["《中华人民共和国保险法》第十六条规定了投保人的什么义务？"]
    en = SliceQuestions()
    en.add("What does Section 6 of the US Constitution say about pay?", "b")
    assert en.duplicate_of("what does section 6 of the US constitution say about pay") == "b"
    assert en.duplicate_of("What does Section 7 of the US Constitution say about pay?") is None


def test_a_samples_articles_are_those_it_cites_or_quotes():
    law = slice_of("insurance-law").content
    arts = SliceArticles(law)
    assert arts.total == 185
    cited = arts.of(["依照第一百零五条和第16条，保险人应当……"], [])
    assert cited == ["第十六条", "第一百零五条"]
    quoted = arts.of(["问题"], ["保险活动当事人行使权利、履行义务应当遵循诚实信用原则。"])
    assert quoted == ["第五条"]
    assert arts.of(["问题"], ["保险"]) == []  # too short to say which article


# --- through the pipeline --------------------------------------------------------------------


def write_slices(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def smaller_examples(tmp_path: Path) -> Path:
    """The example slices with the Insurance Law cut to its first 7,000 characters (2 chunks)."""
    rows = read_jsonl(SLICES)
    rows[0]["content"] = rows[0]["content"][:7000]
    return write_slices(tmp_path / "slices.jsonl", rows)


@pytest.mark.slow
async def test_chunks_of_a_slice_run_in_order_and_see_the_earlier_questions(tmp_path):
    law = slice_of("insurance-law").content[:9000]
    rows = [
        {"id": f"s{i}", "content": f"{law}\n（第{i}份）", "metadata": {"title": f"法{i}"}}
        for i in range(3)
    ]
    inp = write_slices(tmp_path / "in.jsonl", rows)
    async with (
        Simulator(SimulatorConfig(latency_ms=40, keep_prompts=True)) as teacher,
        Simulator(SimulatorConfig()) as judges,
    ):
        cfg = sim_config(
            judges,
            output_dir=str(tmp_path / "out"),
            chunk_chars=2000,
            samples_per_slice=10,
            generator={"api_base": teacher.url, "model": "teacher-sim", "api_key_env": None},
        )
        result = await DatasetDistillationPipeline(cfg, show_progress=False).run(inp)
        prompts = [parse_generation_request(p) for p in teacher.prompts]
        peak = teacher.stats["peak_in_flight"]
    assert result.counts.chunks == 15
    # slices run at once, the chunks of each one after the other
    assert peak == 3
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    for sid in ("s0", "s1", "s2"):
        asked = [p for p in prompts if p.header.startswith(f"资料：《法{sid[1]}》")]
        assert len(asked) == 5 and not asked[0].previous
        # each chunk's request lists the questions kept from the chunks before it
        kept = [r for r in raw if r["slice_id"] == sid and r["drop_reason"] != "duplicate_question"]
        for k in range(1, 5):
            earlier = {r["instruction"] for r in kept if r["chunk_index"] < k}
            assert set(asked[k].previous) == earlier and len(asked[k].previous) == len(earlier)


@pytest.mark.slow
async def test_repeated_questions_are_dropped_counted_and_never_judged(sim, tmp_path):
    # One judge call per sample and every judge asked, so the calls count the samples judged.
    cfg = sim_config(
        sim,
        output_dir=str(tmp_path / "out"),
        samples_per_article=True,
        judge_batch_size=1,
        early_drop=False,
    )
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(
        smaller_examples(tmp_path)
    )
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    repeats = [r for r in raw if r["drop_reason"] == "duplicate_question"]
    assert repeats, "the simulator repeats a question now and then"
    by_id = {r["id"]: r for r in raw}
    for r in repeats:
        first = by_id[r["duplicate_of"]]
        assert first["slice_id"] == r["slice_id"] and first["drop_reason"] != "duplicate_question"
        assert r["judgements"] == [] and r["avg_score"] is None
    meta = read_metadata(result.output_dir)
    assert meta["counts"]["dropped"]["duplicate_question"] == len(repeats)
    gated = [r for r in raw if (r["drop_reason"] or "").startswith("gate:")]
    assert meta["counts"]["samples_evaluated"] == len(raw) - len(repeats) - len(gated)
    assert sim.stats["by_kind"]["evaluation"] == 2 * (len(raw) - len(repeats) - len(gated))
    # refilter keeps them dropped
    assert main(["refilter", "--output", str(result.output_dir), "--min-score-threshold", "6"]) == 0
    again = read_jsonl(result.output_dir / "generated_raw.jsonl")
    assert [r["id"] for r in again if r["drop_reason"] == "duplicate_question"] == [
        r["id"] for r in repeats
    ]


@pytest.mark.slow
async def test_estimate_plans_the_calls_the_run_makes(sim, tmp_path):
    # No gates: with gates the estimate's judge calls are an upper bound (gates drop samples).
    cfg = sim_config(
        sim,
        output_dir=str(tmp_path / "out"),
        samples_per_article=True,
        gates=[],
        judge_batch_size=1,  # batched: tests/stages/test_judge_batch.py
    )
    inp = smaller_examples(tmp_path)
    est = estimate(inp, cfg)
    assert est.detail["split_chunks"] > 0 and any("max_samples_per_request" in n for n in est.notes)
    assert est.detail["teacher_requests"] > est.chunks
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(inp)
    usage = result.metadata["usage"]
    gen = next(e for e in est.endpoints if e.endpoint == "generator")
    assert gen.calls == usage["generator"]["calls"] == est.detail["teacher_requests"]
    assert est.expected_samples == result.counts.samples_generated
    repeats = result.counts.dropped.get("duplicate_question", 0)
    judge = next(e for e in est.endpoints if e.endpoint == "primary")
    assert judge.calls == usage["primary"]["calls"] + repeats


@pytest.mark.slow
async def test_two_stage_asks_questions_checks_them_then_answers(sim, tmp_path):
    sim.config.keep_prompts = True
    cfg = sim_config(
        sim, output_dir=str(tmp_path / "out"), generation="two_stage", samples_per_slice=6
    )
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(SLICES)
    prompts = [parse_generation_request(p) for p in sim.prompts]
    kinds = [p.kind for p in prompts if p is not None]
    meta = read_metadata(result.output_dir)
    dropped = sum(meta["counts"]["questions_dropped"].values())
    asked = sum(p.n for p in prompts if p is not None and p.kind == "questions")
    assert kinds.count("questions") == result.counts.chunks
    assert kinds.count("answer") == asked - dropped == result.counts.samples_generated
    assert "samples" not in kinds
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    assert raw and all(r["evidence"] and r["question_type"] for r in raw)
    answered = {p.question for p in prompts if p is not None and p.kind == "answer"}
    assert {r["instruction"] for r in raw} == answered
    law = [r for r in raw if r["slice_id"] == "insurance-law"]
    assert all("《中华人民共和国保险法》" in r["instruction"] for r in law)
    # estimate: one question request per request, one answer per planned question (a bound)
    est = estimate(SLICES, cfg)
    gen = next(e for e in est.endpoints if e.endpoint == "generator")
    assert gen.calls == result.counts.chunks + asked
    assert gen.calls >= result.metadata["usage"]["generator"]["calls"]
    # a rerun replays every request from the cache
    sim.reset_stats()
    again = await DatasetDistillationPipeline(cfg, show_progress=False).run(SLICES)
    assert sim.stats["chat_requests"] == 0
    assert again.counts.samples_generated == result.counts.samples_generated


async def test_two_stage_drops_referential_and_repeated_questions(sim, tmp_path):
    from sft_distill.simulator.faults import Scripted

    doc = (
        "第一条 投保人应当如实告知。\n第二条 保险人应当说明合同条款。\n第三条 保险人应当及时赔付。"
    )
    inp = write_slices(
        tmp_path / "in.jsonl", [{"id": "x", "content": doc, "metadata": {"title": "某保险条款"}}]
    )
    questions = [
        "根据上述资料，投保人有什么义务？",  # referential
        "《某保险条款》第一条规定投保人有什么义务？",
        "《某保险条款》第一条规定投保人有什么义务?",  # a repeat
        "《某保险条款》第三条对赔付时间有什么要求？",
    ]
    sim.queue(Scripted(content=json.dumps({"questions": questions}, ensure_ascii=False)))
    cfg = sim_config(
        sim, output_dir=str(tmp_path / "out"), generation="two_stage", samples_per_slice=4
    )
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(inp)
    meta = read_metadata(result.output_dir)
    assert meta["counts"]["questions_dropped"] == {
        "duplicate_question": 1,
        "referential_question": 1,
    }
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    assert sorted(r["instruction"] for r in raw) == sorted([questions[1], questions[3]])
    cited = {r["instruction"]: r["articles"] for r in raw}
    assert cited[questions[3]] == ["第三条"]


@pytest.mark.slow
async def test_article_coverage_is_in_metadata_and_survives_a_refilter(sim, tmp_path):
    cfg = sim_config(sim, output_dir=str(tmp_path / "out"), samples_per_article=True)
    inp = smaller_examples(tmp_path)
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(inp)
    out = result.output_dir
    cov = read_metadata(out)["quality"]["coverage"]
    assert set(cov["slices"]) == {
        "insurance-law",
        "compulsory-motor-insurance",
        "insurance-law-interpretation-1",
        "civil-code-breach-of-contract",
        "us-constitution-article-1",
        "us-constitution-article-3",
    }  # the article-structured ones (3 articles or more)
    assert cov["slices"]["insurance-law"]["total"] == 52  # in its first 7,000 characters
    assert cov["articles"] == sum(s["total"] for s in cov["slices"].values())
    assert cov["covered"] == sum(s["covered"] for s in cov["slices"].values())
    kept = read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")
    raw = {r["id"]: r for r in read_jsonl(out / "generated_raw.jsonl")}
    law = {s.id: s.content for s in iter_slices(inp)}
    for sid, figures in cov["slices"].items():
        rows = [raw[r["id"]] for r in kept if r["slice_id"] == sid]
        texts = [r["instruction"] + "\n" + r["output"] for r in rows]
        cited = article_coverage(law[sid], texts).covered
        covered = {a for r in rows for a in r["articles"]}
        assert figures["covered"] == len(covered) >= cited
        assert figures["ratio"] == round(figures["covered"] / figures["total"], 4)
    assert read_metadata(out)["report"]["coverage"] == cov
    # a refilter recomputes it from the new kept set
    assert main(["refilter", "--output", str(out), "--min-score-threshold", "9.5"]) == 0
    after = read_metadata(out)["quality"]["coverage"]
    assert after["slices"].keys() == cov["slices"].keys() and after["covered"] < cov["covered"]


@pytest.mark.slow
def test_the_dry_run_covers_the_insurance_law_at_the_recommended_density(tmp_path, capsys):
    """Issue 12's target: >= 80% of the Insurance Law's 185 articles cited by kept samples."""
    config = tmp_path / "density.json"
    config.write_text(json.dumps(DENSITY))
    out = tmp_path / "out"
    argv = ["--input", str(SLICES), "--output", str(out), "--dry-run", "-q"]
    assert main([*argv, "--config", str(config)]) == 0
    kept = read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")
    texts = [
        t["value"] for r in kept if r["slice_id"] == "insurance-law" for t in r["conversations"]
    ]
    cov = article_coverage(slice_of("insurance-law").content, texts)
    assert cov.total == 185 and cov.ratio >= 0.8, cov.labels_missing
    meta = read_metadata(out)["quality"]["coverage"]["slices"]["insurance-law"]
    assert meta["ratio"] == pytest.approx(cov.ratio, abs=1e-4) and cov.ratio >= 0.8
